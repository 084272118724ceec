// End-to-end test of the real Sumi app, driven over WebDriver (WebKitWebDriver, as tauri-driver
// does on Linux). Run under Xvfb:  xvfb-run -a -s '-screen 0 1280x800x24' node tests/e2e/app.e2e.mjs
// Needs the app built with its UI (`npm run build` in ui/, then `cargo build -p sumi-app`).
// Skips (exit 0) with a message when there is no display or no WebKitWebDriver.

import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const targetDir = process.env.CARGO_TARGET_DIR ? path.resolve(root, process.env.CARGO_TARGET_DIR) : path.join(root, "target");
const app = process.env.SUMI_APP ?? path.join(targetDir, "debug", "sumi-app");
const shots = process.env.SUMI_SCREENSHOTS ?? path.join(root, "target", "e2e-screenshots");

function skip(why) {
  // CI sets SUMI_E2E_REQUIRED so that a missing display or driver fails instead of skipping.
  if (process.env.SUMI_E2E_REQUIRED) {
    console.error(`FAIL e2e: ${why}`);
    process.exit(1);
  }
  console.log(`SKIP e2e: ${why}`);
  process.exit(0);
}
if (process.platform !== "linux") skip("the WebDriver e2e test runs on Linux only");
if (!process.env.DISPLAY && !process.env.WAYLAND_DISPLAY) skip("no display (run it under xvfb-run)");
const driverBin = spawnSync("sh", ["-c", "command -v WebKitWebDriver"], { encoding: "utf8" }).stdout.trim();
if (!driverBin) skip("WebKitWebDriver not found (apt-get install webkit2gtk-driver)");
if (!fs.existsSync(app)) {
  console.error(`FAIL e2e: app binary ${app} not found; build it first`);
  process.exit(1);
}

const home = fs.mkdtempSync(path.join(os.tmpdir(), "sumi-e2e-"));
fs.mkdirSync(shots, { recursive: true });
// A LoRA and an embedding in the app's own folders.
fs.mkdirSync(path.join(home, "loras"));
fs.copyFileSync(path.join(root, "tests/fixtures/lora/sd15_kohya.safetensors"), path.join(home, "loras/ink.safetensors"));
fs.mkdirSync(path.join(home, "embeddings"));
fs.copyFileSync(
  path.join(root, "tests/fixtures/prompt/embeddings/sumired.safetensors"),
  path.join(home, "embeddings/sumired.safetensors"),
);

const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

// Starts WebKitWebDriver in its own process group, so it and the app it starts can be stopped
// together with SIGTERM; `env` is added to the app's environment.
async function startDriver(env) {
  const port = await freePort();
  const proc = spawn(driverBin, [`--port=${port}`, "--host=127.0.0.1"], {
    detached: true,
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, TAURI_WEBVIEW_AUTOMATION: "true", SUMI_HOME: home, ...env },
  });
  return { proc, base: `http://127.0.0.1:${port}` };
}
function stopDriver(d) {
  try {
    process.kill(-d.proc.pid, "SIGTERM");
  } catch {}
}

// The model the first images are made with is a copy, so that it can move away later: the
// gallery records where each image's model was, and a re-run looks there first.
const models = fs.mkdtempSync(path.join(os.tmpdir(), "sumi-e2e-models-"));
const sd15 = path.join(models, "sd15");
fs.cpSync(path.join(root, "tests/fixtures/sd15"), sd15, { recursive: true });
let driver = await startDriver({ SUMI_MODEL: sd15 });
let session = null;
let base = driver.base;

async function wd(method, url, body) {
  const res = await fetch(base + url, {
    method,
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(`${method} ${url}: ${res.status} ${JSON.stringify(json.value ?? json)}`);
  return json.value;
}
const s = (u) => `/session/${session}${u}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ELEMENT = "element-6066-11e4-a07c-4e6dcd7b0ab0";

async function find(css) {
  const all = await wd("POST", s("/elements"), { using: "css selector", value: css });
  return all.map((e) => e[ELEMENT] ?? e.ELEMENT ?? Object.values(e)[0]);
}
async function waitFor(css, what, timeoutMs = 60000, count = 1) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const found = await find(css);
    if (found.length >= count) return found;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what} (${css})`);
    await sleep(50);
  }
}
const text = (el) => wd("GET", s(`/element/${el}/text`));
const attr = (el, name) => wd("GET", s(`/element/${el}/attribute/${name}`));
const click = (el) => wd("POST", s(`/element/${el}/click`), {});
const clear = (el) => wd("POST", s(`/element/${el}/clear`), {});
const type = (el, t) => wd("POST", s(`/element/${el}/value`), { text: t });
const js = (script, args = []) => wd("POST", s("/execute/sync"), { script, args });
async function one(css, what) {
  return (await waitFor(css, what))[0];
}
async function setField(css, value) {
  const el = await one(css, css);
  await clear(el);
  await type(el, String(value));
}
async function screenshot(name) {
  const png = await wd("GET", s("/screenshot"));
  fs.writeFileSync(path.join(shots, `${name}.png`), Buffer.from(png, "base64"));
}
async function openSession() {
  // The driver needs a moment to listen.
  for (let i = 0; ; i++) {
    try {
      await wd("GET", "/status");
      break;
    } catch (e) {
      if (i > 100) throw e;
      await sleep(100);
    }
  }
  const created = await wd("POST", "/session", {
    capabilities: { alwaysMatch: { "webkitgtk:browserOptions": { binary: app, args: [] } } },
  });
  session = created.sessionId;
  await wd("POST", s("/window/rect"), { width: 1280, height: 800 }).catch(() => {});
}
// Closes the session and starts the app again with `env` added.
async function restart(env) {
  await wd("DELETE", s(""));
  session = null;
  stopDriver(driver);
  driver = await startDriver(env);
  base = driver.base;
  await openSession();
}
function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
  console.log(`ok - ${msg}`);
}

const PROMPT = 'a red fox in snow <img src=x onerror="document.title=1">';
let failed = false;
try {
  await openSession();

  // 1. The fixture model loads and the Generate view appears.
  const prompt = await one('[data-testid="prompt"]', "the Generate view with the fixture model loaded");
  check(true, "model loaded, Generate view shown");

  // 1b. Prompt helpers: a LoRA inserted from the panel, the token counter, Ctrl+Up weights.
  await type(prompt, "a red fox");
  const value = () => js('return document.querySelector("[data-testid=prompt]").value');
  const counted = async (want) => {
    const until = Date.now() + 10000;
    for (;;) {
      const c = await find('[data-testid="token-count"]');
      const t = c.length ? await text(c[0]) : "";
      if ((want === null ? t !== "" : t === want) || Date.now() > until) return t;
      await sleep(50);
    }
  };
  const before = Number((await counted(null)).split("/")[0]);
  check(before > 0, `the token counter counts the prompt (${before})`);
  await click(await one('[data-testid="lora-panel"] summary', "LoRA panel"));
  const item = await one('[data-testid="lora-item"]', "a LoRA in the panel");
  check((await text(item)).includes("ink"), "the LoRA panel lists the home's LoRA");
  await click(item);
  check((await value()) === "a red fox, <lora:ink:1>", `clicking it inserts its tag (${await value()})`);
  // The tag is not prompt text: only the comma before it counts.
  const shownCount = await counted(`${before + 1}/75`);
  check(shownCount === `${before + 1}/75`, `the token counter leaves the tag out (${shownCount})`);
  await js('const p = document.querySelector("[data-testid=prompt]"); p.focus(); p.setSelectionRange(3, 3);');
  const ctrl = (key) =>
    wd("POST", s("/actions"), {
      actions: [
        {
          type: "key",
          id: "keyboard",
          actions: [
            { type: "keyDown", value: "\uE009" },
            { type: "keyDown", value: key },
            { type: "keyUp", value: key },
            { type: "keyUp", value: "\uE009" },
          ],
        },
      ],
    });
  await ctrl("\uE013");
  await sleep(100);
  check((await value()) === "a (red:1.1) fox, <lora:ink:1>", `Ctrl+Up weighs the word at the cursor (${await value()})`);
  await ctrl("\uE015");
  await sleep(100);
  check((await value()) === "a red fox, <lora:ink:1>", `Ctrl+Down takes the weight back off (${await value()})`);
  await js('const p = document.querySelector("[data-testid=prompt]"); p.setSelectionRange(p.value.length, p.value.length);');
  await type(prompt, " sumired");
  const withEmbedding = await counted(`${before + 4}/75`);
  check(withEmbedding === `${before + 4}/75`, `an embedding counts its 3 vectors (${withEmbedding})`);
  await click(await one('[data-testid="advanced"] summary', "advanced settings"));
  check((await find('[data-testid="clip-skip"]')).length === 1, "advanced settings show clip skip");
  await screenshot("0-prompt-tools");
  await clear(prompt);

  // 2. Generate with enough steps to see several previews (at the fixture's own 64x64 size).
  await type(prompt, PROMPT);
  await setField('[data-testid="steps"]', 30);
  await setField('[data-testid="seed"]', 1234);
  await click(await one('[data-testid="generate"]', "generate button"));
  const seen = new Set();
  let arrived = 0;
  const until = Date.now() + 120000;
  for (;;) {
    // One round trip per look, so that fast generations still show a few of their previews.
    const shown = await js(
      'const p = document.querySelector("[data-testid=preview]"); return p ? [p.src, p.dataset.count] : null',
    );
    if (shown) {
      if (shown[0]) seen.add(shown[0]);
      arrived = Math.max(arrived, Number(shown[1]) || 0);
    }
    if ((await find('[data-testid="result"]')).length) break;
    if ((await find('[data-testid="failed"]')).length) throw new Error(await text((await find('[data-testid="failed"]'))[0]));
    if (Date.now() > until) throw new Error("generation did not finish");
    await sleep(15);
  }
  // The page counts the previews it received; polling sees only some of them on a fast machine.
  check(arrived >= 3, `at least three previews arrived (${arrived} counted by the page)`);
  check(seen.size >= 2, `preview changed on screen (${seen.size} distinct previews seen)`);
  check((await text(await one('[data-testid="used-seed"]', "used seed"))) === "1234", "used seed shown");
  check((await js("return document.title")) !== "1", "prompt markup was not executed");
  await screenshot("1-generate");

  // 3. The image is in the gallery with its parameters.
  await click(await one('[data-testid="nav-gallery"]', "gallery tab"));
  const thumbs = await waitFor('[data-testid="thumb"]', "a gallery thumbnail");
  await click(thumbs[0]);
  const shownPrompt = await text(await one('[data-testid="detail-prompt"]', "detail prompt"));
  check(shownPrompt === PROMPT, "gallery detail shows the prompt as plain text");
  check((await find('[data-testid="detail-prompt"] img')).length === 0, "no element was made from the prompt");
  check((await text(await one('[data-testid="detail-seed"]', "seed"))) === "1234", "gallery detail shows the seed");
  const params = await text(await one('[data-testid="params"]', "params"));
  check(/30/.test(params) && /64×64/.test(params) && /sd15/.test(params), "detail lists steps, size and model");
  const loaded = await js(
    "const i = document.querySelector('[data-testid=detail-image]'); return i.complete && i.naturalWidth;",
  );
  check(loaded === 64, "full image served through the sumi:// protocol");

  // 4. Re-run gives the identical image, side by side.
  await click(await one('[data-testid="rerun"]', "re-run button"));
  await one('[data-testid="identical"], [data-testid="different"]', "re-run result", 120000);
  check((await find('[data-testid="identical"]')).length === 1, "re-run produced identical pixels");
  await screenshot("2-gallery-rerun");

  // 5. Search.
  const search = await one('[data-testid="search"]', "search box");
  await type(search, "fox");
  await sleep(400);
  check((await find('[data-testid="thumb"]')).length === 2, "search 'fox' finds both images");
  await clear(search);
  await type(search, "zebra");
  await waitFor('[data-testid="gallery-count"]', "count");
  const until2 = Date.now() + 5000;
  while ((await find('[data-testid="thumb"]')).length > 0 && Date.now() < until2) await sleep(50);
  check((await find('[data-testid="thumb"]')).length === 0, "search 'zebra' finds nothing");
  await clear(search);
  await type(search, " ");

  // 6. Compare over two axes (2 samplers x 2 step counts): one group, four labelled results.
  await click(await one('[data-testid="nav-compare"]', "compare tab"));
  await setField('[data-testid="compare-prompt"]', "a blue lighthouse");
  await setField('[data-testid="compare-seed"]', 7);
  await setField('[data-testid="compare-steps"]', "3, 6");
  await click(await one('input[data-sampler="Euler a"]', "Euler a checkbox"));
  // Too many cells is refused with a message before anything runs.
  await setField('[data-testid="compare-cfg"]', "1, 2, 3, 4, 5");
  const problem = await text(await one('[data-testid="compare-problem"]', "the cap message"));
  check(/20 images/.test(problem) && /at most 16/.test(problem), `more than 16 cells refused (${problem})`);
  check((await attr(await one('[data-testid="compare-run"]', "run"), "disabled")) !== null, "run disabled over the cap");
  await setField('[data-testid="compare-cfg"]', 7);
  await click(await one('[data-testid="compare-run"]', "compare run"));
  await waitFor('[data-testid="compare-image"]', "four compare images", 120000, 4);
  const labels = await Promise.all((await find('[data-testid="compare-label"]')).map(text));
  check(
    JSON.stringify([...labels].sort()) ===
      JSON.stringify(["DPM++ 2M · 3 steps", "DPM++ 2M · 6 steps", "Euler · 3 steps", "Euler · 6 steps"]),
    `four results labelled with what varies (${labels.join(", ")})`,
  );
  const times = await Promise.all((await find('[data-testid="compare-cell"] .time')).map(text));
  check(times.length === 4 && times.every((t) => /^\d+\.\d\d s$/.test(t)), `time per image shown (${times.join(", ")})`);
  const groupText = await text(await one('[data-testid="compare-group"]', "group"));
  check(/Comparison group \d+/.test(groupText), "results saved as one comparison group");
  // Export the grid as one PNG.
  await click(await one('[data-testid="export-grid"]:not([disabled])', "enabled export button"));
  const exported = await text(await one('[data-testid="exported-path"]', "exported path", 30000));
  check(fs.existsSync(exported) && exported.startsWith(home), `grid exported into the gallery's exports folder`);
  const head = fs.readFileSync(exported);
  const [gw, gh] = [head.readUInt32BE(16), head.readUInt32BE(20)];
  // Two columns of 64 px pictures enlarged to 128, 8 px margins and a 4 px gap.
  check(head.subarray(1, 4).toString() === "PNG" && gw === 8 + 128 + 4 + 128 + 8 && gh > 2 * 128, `grid PNG is ${gw}x${gh}`);
  await sleep(300);
  await screenshot("3-compare");
  // The group reopens from the gallery.
  await click(await one('[data-testid="nav-gallery"]', "gallery tab"));
  await click((await waitFor('[data-testid="thumb"]', "thumbs", 10000, 6))[0]);
  await click(await one('[data-testid="open-group"]', "open comparison button"));
  await waitFor('[data-testid="compare-image"]', "reopened group", 10000, 4);
  check((await find('[data-testid="compare-cell"]')).length === 4, "saved group reopens with 4 images");
  const reopened = await Promise.all((await find('[data-testid="compare-label"]')).map(text));
  check(JSON.stringify(reopened) === JSON.stringify(labels), "reopened group has the same labels");
  // "Compare…" on a gallery image opens Compare with its settings.
  await click(await one('[data-testid="nav-gallery"]', "gallery tab"));
  const all = await waitFor('[data-testid="thumb"]', "thumbs", 10000, 6);
  await click(all[all.length - 1]);
  await click(await one('[data-testid="compare-from"]', "compare from image"));
  const startPrompt = await js("return document.querySelector('[data-testid=compare-prompt]').value");
  const startSeed = await js("return document.querySelector('[data-testid=compare-seed]').value");
  check(startPrompt === PROMPT && startSeed === "1234", "Compare… starts from the image's prompt and seed");

  // 7. Cancel a long run mid-way with Esc.
  await click(await one('[data-testid="nav-generate"]', "generate tab"));
  await setField('[data-testid="steps"]', 400);
  await click(await one('[data-testid="generate"]', "generate"));
  await one('[data-testid="progress"]', "progress of the long run");
  await screenshot("4-generate-running");
  await wd("POST", s("/actions"), {
    actions: [{ type: "key", id: "kb", actions: [{ type: "keyDown", value: "\uE00C" }, { type: "keyUp", value: "\uE00C" }] }],
  });
  await one('[data-testid="cancelled"]', "cancelled state", 30000);
  check(true, "a run was cancelled mid-way with Esc");
  await click(await one('[data-testid="nav-gallery"]', "gallery tab"));
  await sleep(500);
  check((await find('[data-testid="thumb"]')).length === 6, "the cancelled run saved nothing (6 images)");
  await screenshot("5-gallery");

  // 8. Without SUMI_MODEL the app opens the last model that loaded (the fixture)...
  await restart({ SUMI_MODEL: "" });
  await one('[data-testid="prompt"]', "the Generate view with the remembered model", 60000);
  const lastModel = await js("const s = document.querySelector('[data-testid=model-select]'); return s.options[s.selectedIndex].value;");
  check(lastModel.endsWith("sd15"), `the last model used opens at restart (${lastModel})`);

  // ... and with nothing remembered the built-in demo model loads by itself, with its progress
  // shown, and makes a picture at its own defaults.
  fs.rmSync(path.join(home, "app-settings.json"));
  await restart({ SUMI_MODEL: "" });
  let sawLoading = null;
  for (const until = Date.now() + 60000; ; ) {
    const progress = await find('[data-testid="model-loading"] [data-testid="model-progress"]');
    if (progress.length && !sawLoading) {
      sawLoading = await text(progress[0]).catch(() => null);
      if (sawLoading) await screenshot("6-demo-loading").catch(() => {});
    }
    if ((await find('[data-testid="prompt"]')).length) break;
    if ((await find('[data-testid="no-model"]')).length) throw new Error("the no-model screen came up instead of the demo model");
    if (Date.now() > until) throw new Error("the demo model did not load");
    await sleep(20);
  }
  // The load may finish before the page has drawn; when it was seen, it showed a stage.
  check(sawLoading === null || /Starting|Reading|Loading/.test(sawLoading), `demo model loaded at start (progress seen: ${sawLoading ?? "too quick to see"})`);
  // When the load ends between the page's event subscription and its first model list, the
  // picker names the model by its folder until that list arrives (slow machines hit this).
  let selected = "";
  for (const until = Date.now() + 10000; Date.now() < until; await sleep(50)) {
    selected = await js("const s = document.querySelector('[data-testid=model-select]'); return s.options[s.selectedIndex].text;");
    if (selected.startsWith("Demo model (built in)")) break;
  }
  check(selected.startsWith("Demo model (built in)"), `model picker shows the demo model (${selected})`);
  check((await js("return document.querySelector('[data-testid=width]').value")) === "32", "form takes the demo model's 32 px size");
  const demoCfg = JSON.parse(fs.readFileSync(path.join(root, "assets/demo-model/sumi.json"), "utf8")).defaults.cfg;
  const formCfg = Number(await js("return document.querySelector('[data-testid=cfg]').value"));
  check(formCfg === demoCfg, `form takes the CFG the demo model recommends (${formCfg}, sumi.json says ${demoCfg})`);
  await type(await one('[data-testid="prompt"]', "prompt"), "a yellow star on a purple background");
  await setField('[data-testid="seed"]', 3);
  await click(await one('[data-testid="generate"]', "generate button"));
  await one('[data-testid="result"]', "the demo model's picture", 120000);
  let demoWidth = 0;
  for (const until = Date.now() + 10000; demoWidth === 0 && Date.now() < until; await sleep(50)) {
    demoWidth = await js("const i = document.querySelector('[data-testid=result]'); return i && i.complete ? i.naturalWidth : 0;");
  }
  check(demoWidth === 32, `the demo model made a 32 px picture (${demoWidth})`);
  await sleep(300);
  await screenshot("6-demo-model");

  // A re-run of an image that another model made: when Sumi cannot find that model (sd15 was
  // named by SUMI_MODEL, which is gone, the folder it was loaded from has moved, and no folder
  // Sumi searches holds it) the re-run uses the loaded model and says why its pixels will differ.
  fs.renameSync(sd15, path.join(models, "moved"));
  const selectedModel = () =>
    js("const s = document.querySelector('[data-testid=model-select]'); return s.options[s.selectedIndex].text;");
  // Opens the oldest fox (the first image, made with sd15) in the gallery, out of `count`.
  async function openFirstFox(count) {
    await click(await one('[data-testid="nav-gallery"]', "gallery tab"));
    await type(await one('[data-testid="search"]', "search box"), "fox");
    let foxes = [];
    for (const until = Date.now() + 10000; foxes.length !== count; await sleep(50)) {
      if (Date.now() > until) throw new Error(`search 'fox' shows ${foxes.length} images, not ${count}`);
      foxes = await find('[data-testid="thumb"]');
    }
    await click(foxes[foxes.length - 1]);
    check((await text(await one('[data-testid="detail-prompt"]', "detail prompt"))) === PROMPT, "a fox image is open");
    const made = await js(
      "const dt = [...document.querySelectorAll('[data-testid=params] dt')].find((d) => d.textContent === 'Model'); return dt.nextElementSibling.textContent;",
    );
    check(made === "sd15", `it was made with sd15 (${made})`);
  }
  await openFirstFox(2);
  await click(await one('[data-testid="rerun"]', "re-run button"));
  const otherModel = await text(await one('[data-testid="rerun-note"]', "the other-model note"));
  check(
    otherModel.startsWith("Made with sd15; this re-run uses demo-model"),
    `a re-run with its model not found says the loaded one is used (${otherModel})`,
  );
  await one('[data-testid="different"]', "the re-run's pixel check", 120000);
  check((await find('[data-testid="identical"]')).length === 0, "and its pixels differ");
  check((await selectedModel()).startsWith("Demo model (built in)"), "the demo model stays loaded");
  await screenshot("7-rerun-other-model");

  // When sd15 is among the models Sumi finds (here through SUMI_MODEL_DIRS), the re-run loads
  // it first, says so, and makes the image exactly. The demo model opens again at restart.
  await restart({ SUMI_MODEL: "", SUMI_MODEL_DIRS: path.join(root, "tests/fixtures") });
  await one('[data-testid="prompt"]', "the Generate view with the demo model", 60000);
  for (const until = Date.now() + 10000; !(await selectedModel()).startsWith("Demo model (built in)"); await sleep(50)) {
    if (Date.now() > until) throw new Error(`the demo model is not the loaded one (${await selectedModel()})`);
  }
  await openFirstFox(3);
  await click(await one('[data-testid="rerun"]', "re-run button"));
  const loadingNote = await text(await one('[data-testid="rerun-note"]', "the loading note"));
  check(
    /^Loading sd15, the model that made #\d+, for this re-run\.$/.test(loadingNote),
    `a re-run of an sd15 image with sd15 findable says it loads it (${loadingNote})`,
  );
  await one('[data-testid="identical"], [data-testid="different"]', "the re-run's pixel check", 120000);
  check((await find('[data-testid="identical"]')).length === 1, "the re-run on sd15 has identical pixels");
  const switched = await selectedModel();
  check(/^sd15\b/.test(switched), `the model picker switched to sd15 (${switched})`);
  await sleep(300);
  await screenshot("8-rerun-loads-model");

  // 9. When nothing is usable (here a demo model without its UNet weights) the app opens on the
  // "no usable model" screen with the reason; adding a folder loads it.
  const broken = fs.mkdtempSync(path.join(os.tmpdir(), "sumi-e2e-demo-"));
  fs.cpSync(path.join(root, "assets/demo-model"), broken, { recursive: true });
  fs.rmSync(path.join(broken, "unet/diffusion_pytorch_model.safetensors"));
  fs.rmSync(path.join(home, "app-settings.json"));
  await restart({ SUMI_MODEL: "", SUMI_DEMO_MODEL: broken });
  await one('[data-testid="no-model"]', "the no-model screen");
  const why = await text(await one('[data-testid="model-error"]', "why the demo model failed"));
  check(why.includes(broken), `no-model screen says why the demo model failed (${why.slice(0, 80)}…)`);
  const entries = await Promise.all((await waitFor('[data-testid="model-entry"]', "model list")).map(text));
  check(entries.some((e) => e.includes("Demo model (built in)") && e.includes("SD 1.x")), "model picker lists the demo model");
  await sleep(300);
  await screenshot("0-no-model");
  await type(await one('[data-testid="model-path"]', "model path field"), path.join(root, "tests/fixtures/sd15"));
  await click(await one('[data-testid="model-add"]', "add folder button"));
  await one('[data-testid="prompt"]', "the Generate view after adding the model", 60000);
  check(true, "no-model screen, then adding the fixture folder loads it");
  fs.rmSync(broken, { recursive: true, force: true });

  // 10. Image to image: a gallery image sent to the Generate view as init image, a mask painted
  // over it (pointer events, as mouse, pen and touch send them), generated; the gallery shows
  // what the new image was made from. Then hires fix from the Generate form.
  async function runToEnd(what) {
    await click(await one('[data-testid="generate"]', "generate button"));
    await sleep(200);
    const end = await one('[data-testid="done"], [data-testid="failed"]', what, 120000);
    const t = await text(end);
    if (!t.startsWith("Done")) throw new Error(`${what} failed: ${t}`);
    return Number(t.match(/#(\d+)/)[1]);
  }
  await setField('[data-testid="prompt"]', "a red circle");
  await setField('[data-testid="steps"]', 3);
  const made = await runToEnd("the picture to start from");
  await click(await one('[data-testid="nav-gallery"]', "gallery tab"));
  await click((await waitFor('[data-testid="thumb"]', "thumbs"))[0]);
  const sourceId = Number((await text(await one('[data-testid="detail"] h2', "detail title"))).replace(/\D/g, ""));
  check(sourceId === made, `the newest gallery image is the one just made (#${made})`);
  await click(await one('[data-testid="use-as-init"]', "use as init image button"));
  await one('[data-testid="init-image"]', "the init image in the Generate view");
  const painted = await js(`
    const c = document.querySelector('[data-testid=mask-canvas]');
    const r = c.getBoundingClientRect();
    const ev = (t, x, y) => c.dispatchEvent(new PointerEvent(t, { clientX: r.left + x * r.width, clientY: r.top + y * r.height, pointerId: 7, pointerType: 'pen', bubbles: true }));
    ev('pointerdown', 0.3, 0.3); ev('pointermove', 0.5, 0.4); ev('pointermove', 0.7, 0.6); ev('pointerup', 0.7, 0.6);
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
    return n;`);
  check(painted > 0, `a mask was painted over the init image (${painted} pixels)`);
  const paintedNow = () =>
    js(`const c = document.querySelector('[data-testid=mask-canvas]');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n;`);
  await click(await one('[data-testid="undo-mask"]', "undo"));
  check((await paintedNow()) === 0, "undo takes the stroke away");
  await click(await one('[data-testid="redo-mask"]', "redo"));
  check((await paintedNow()) === painted, "redo puts it back");
  await setField('[data-testid="prompt"]', "a green apple");
  await setField('[data-testid="steps"]', 4);
  await screenshot("9-inpaint-form");
  const inpainted = await runToEnd("the inpainting run");
  await click(await one('[data-testid="nav-gallery"]', "gallery tab"));
  await click((await waitFor('[data-testid="thumb"]', "thumbs"))[0]);
  check((await text(await one('[data-testid="detail"] h2', "detail title"))) === `Image #${inpainted}`, "the inpainted image is the newest");
  const lineage = await text(await one('[data-testid="lineage"]', "the lineage line"));
  check(lineage.startsWith(`Inpainted from #${sourceId}`), `the gallery says what it was made from (${lineage})`);
  await click(await one('[data-testid="made-from"]', "the source link"));
  await sleep(200);
  check((await text(await one('[data-testid="detail"] h2', "detail title"))) === `Image #${sourceId}`, "the link opens the source image");
  await screenshot("10-lineage");

  await click(await one('[data-testid="nav-generate"]', "generate tab"));
  await click(await one('[data-testid="remove-init"]', "remove init image"));
  await js("document.querySelector('[data-testid=hires]').open = true; return true;");
  await click(await one('[data-testid="hires-enabled"]', "hires fix checkbox"));
  await setField('[data-testid="hires-scale"]', 2);
  const width = Number(await js("return document.querySelector('[data-testid=width]').value"));
  await runToEnd("the hires fix run");
  let hiresWidth = 0;
  for (const until = Date.now() + 10000; hiresWidth === 0 && Date.now() < until; await sleep(50)) {
    hiresWidth = await js("const i = document.querySelector('[data-testid=result]'); return i && i.complete ? i.naturalWidth : 0;");
  }
  check(hiresWidth === 2 * width, `hires fix from the Generate form doubles the width (${width} -> ${hiresWidth})`);
  await screenshot("11-hires");

  // 12. A Flux model (the tiny dev fixture): the form offers its distilled guidance, a
  // generation shows previews, the gallery records the guidance and a re-run is exact.
  await restart({ SUMI_MODEL: path.join(root, "tests/fixtures/flux/pipe-dev") });
  await one('[data-testid="guidance"]', "the guidance field of a Flux dev model", 60000);
  const guidance = await js("return document.querySelector('[data-testid=guidance]').value");
  check(guidance === "3.5", `a Flux dev model starts at guidance 3.5 (${guidance})`);
  check((await js("return document.querySelector('[data-testid=cfg]').value")) === "1", "and CFG 1 (off)");
  await setField('[data-testid="prompt"]', "a photo of a red cat");
  await setField('[data-testid="guidance"]', 4);
  await setField('[data-testid="width"]', 64);
  await setField('[data-testid="height"]', 64);
  await setField('[data-testid="steps"]', 6);
  await setField('[data-testid="seed"]', 77);
  await click(await one('[data-testid="generate"]', "generate button"));
  let fluxPreviews = 0;
  for (const until = Date.now() + 120000; !(await find('[data-testid="result"]')).length; await sleep(15)) {
    const n = await js('const p = document.querySelector("[data-testid=preview]"); return p ? Number(p.dataset.count) : 0');
    fluxPreviews = Math.max(fluxPreviews, n || 0);
    if ((await find('[data-testid="failed"]')).length) throw new Error(await text((await find('[data-testid="failed"]'))[0]));
    if (Date.now() > until) throw new Error("the Flux generation did not finish");
  }
  // A fast run can end between two looks; the result keeps the page's count of its previews.
  const received = Number(await js("return document.querySelector('[data-testid=result]').dataset.previews"));
  fluxPreviews = Math.max(fluxPreviews, received || 0);
  check(fluxPreviews >= 2, `Flux previews arrived (${fluxPreviews} counted by the page)`);
  await screenshot("12-flux-generate");
  await click(await one('[data-testid="nav-gallery"]', "gallery tab"));
  await click((await waitFor('[data-testid="thumb"]', "thumbs"))[0]);
  const recorded = await text(await one('[data-testid="detail-guidance"]', "the recorded guidance"));
  check(recorded === "4", `the gallery records the Flux guidance (${recorded})`);
  await click(await one('[data-testid="rerun"]', "re-run button"));
  await one('[data-testid="identical"], [data-testid="different"]', "Flux re-run result", 120000);
  check((await find('[data-testid="identical"]')).length === 1, "a Flux re-run gives identical pixels");
  await screenshot("13-flux-rerun");
} catch (e) {
  failed = true;
  console.error(`FAIL e2e: ${e.message}`);
  if (session) await screenshot("failure").catch(() => {});
} finally {
  if (session) await wd("DELETE", s("")).catch(() => {});
  stopDriver(driver);
  fs.rmSync(home, { recursive: true, force: true });
  fs.rmSync(models, { recursive: true, force: true });
}
console.log(failed ? "e2e FAILED" : `e2e passed; screenshots in ${shots}`);
process.exit(failed ? 1 : 0);
