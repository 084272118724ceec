// Comparisons over several settings: the cells (cartesian product of the chosen values),
// their labels and the check against the cap on how many one comparison may hold.

/** One LoRA of the prompt at one weight (the runtime's `LoraWeight`). */
export interface LoraWeight {
  name: string;
  weight: number;
}

/** The values chosen for each setting. */
export interface Axes {
  samplers: string[];
  schedules: string[];
  steps: number[];
  cfg: number[];
  /** Denoising strengths (img2img only); empty or absent: the form's. */
  strengths?: number[];
  /** One LoRA of the prompt and its weights; absent: the prompt's tag as written. */
  lora?: { name: string; weights: number[] } | null;
}

/** One cell: the settings of one image (what the app's `compare` takes as a `Variant`). */
export interface CellSettings {
  sampler: string;
  schedule: string;
  steps: number;
  cfg: number;
  strength?: number;
  lora?: LoraWeight;
}

/** The LoRA tags of a prompt (`<lora:NAME:W>`, `<lyco:...>`), name and weight (1 when not given). */
export function promptLoras(prompt: string): LoraWeight[] {
  const out: LoraWeight[] = [];
  for (const m of prompt.matchAll(/<(?:lora|lyco):([^>]+)>/g)) {
    const [name, w] = m[1].split(":");
    const weight = w === undefined || w.trim() === "" ? 1 : Number(w);
    if (name.trim() !== "" && !out.some((l) => l.name === name)) out.push({ name, weight: Number.isFinite(weight) ? weight : 1 });
  }
  return out;
}

/** The LoRA whose weight differs between these prompts (a saved LoRA-weight comparison), as
 *  each prompt's weight of it; null when none does. */
export function variedLora(prompts: string[]): LoraWeight[] | null {
  const tags = prompts.map(promptLoras);
  for (const { name } of tags[0] ?? []) {
    const ws = tags.map((t) => t.find((l) => l.name === name)?.weight);
    if (ws.every((w) => w !== undefined) && ws.some((w) => w !== ws[0]))
      return ws.map((weight) => ({ name, weight: weight as number }));
  }
  return null;
}

/** Each value of an optional axis, or one `undefined` when it is not compared. */
function axis<T>(values: T[] | undefined): (T | undefined)[] {
  return values && values.length ? values : [undefined];
}

/** Parses a list such as "10, 20 30" into numbers; whole numbers only when `integer`. */
export function parseList(
  text: string,
  what: string,
  { integer, min, max }: { integer: boolean; min: number; max: number },
): { values: number[] } | { error: string } {
  const parts = text.split(/[\s,;]+/).filter((p) => p !== "");
  if (parts.length === 0) return { error: `Give at least one ${what} value.` };
  const values: number[] = [];
  for (const p of parts) {
    const n = Number(p);
    if (!Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max)
      return { error: `${what} values must be ${integer ? "whole numbers" : "numbers"} from ${min} to ${max} ("${p}" is not).` };
    if (!values.includes(n)) values.push(n);
  }
  return { values };
}

/** Every combination of the chosen values, samplers outermost and LoRA weights innermost
 *  (the order `sumi compare` uses). */
export function cells(a: Axes): CellSettings[] {
  const out: CellSettings[] = [];
  const loras = axis(a.lora?.weights.map((weight) => ({ name: a.lora!.name, weight })));
  for (const sampler of a.samplers)
    for (const schedule of a.schedules)
      for (const steps of a.steps)
        for (const cfg of a.cfg)
          for (const strength of axis(a.strengths))
            for (const lora of loras) {
              const c: CellSettings = { sampler, schedule, steps, cfg };
              if (strength !== undefined) c.strength = strength;
              if (lora !== undefined) c.lora = lora;
              out.push(c);
            }
  return out;
}

/** How many values each axis has (sampler, schedule, steps, CFG, strength, LoRA weight). */
function sizes(a: Axes): number[] {
  const opt = (n: number | undefined) => Math.max(1, n ?? 0);
  return [a.samplers.length, a.schedules.length, a.steps.length, a.cfg.length, opt(a.strengths?.length), opt(a.lora?.weights.length)];
}

/** How many images the chosen values make. */
export function cellCount(a: Axes): number {
  return sizes(a).reduce((n, k) => n * k, 1);
}

/** Why these values cannot run (too few cells, or more than `maxCells`, the app's
 *  `limits.maxCompareCells`), or null when they can. */
export function planError(a: Axes, maxCells: number): string | null {
  const n = cellCount(a);
  if (n === 0) return "Pick at least one sampler and one schedule.";
  if (n < 2) return "Pick two or more values of some setting to compare.";
  if (n > maxCells)
    return `That makes ${n} images (${sizes(a)
      .filter((k, i) => i < 4 || k > 1)
      .join(" × ")}); a comparison holds at most ${maxCells}. Pick fewer values.`;
  return null;
}

function parts(c: CellSettings): string[] {
  return [
    c.sampler,
    c.schedule,
    `${c.steps} steps`,
    `CFG ${c.cfg}`,
    c.strength === undefined ? "" : `strength ${c.strength}`,
    c.lora === undefined ? "" : `LoRA ${c.lora.name}:${c.lora.weight}`,
  ];
}

/** Which settings (sampler, schedule, steps, CFG, strength, LoRA weight) differ between the cells. */
export function varying(cs: CellSettings[]): boolean[] {
  const first = cs[0] ? parts(cs[0]) : [];
  const out = [false, false, false, false, false, false];
  for (const c of cs.slice(1)) parts(c).forEach((p, k) => (out[k] ||= p !== first[k]));
  return out;
}

/** Each cell's label: what differs, joined with " · " (sampler, schedule, steps and CFG when
 *  nothing does). Matches the labels the exported grid draws (sumi-gallery's grid module). */
export function labels(cs: CellSettings[]): string[] {
  const vary = varying(cs);
  const any = vary.some((v) => v);
  return cs.map((c) =>
    parts(c)
      .filter((_, k) => vary[k] || (!any && k < 4))
      .join(" · "),
  );
}

/** What all cells share, e.g. "Karras · CFG 7", for the heading above the results. */
export function shared(cs: CellSettings[]): string {
  if (!cs[0]) return "";
  const vary = varying(cs);
  return parts(cs[0])
    .filter((p, k) => !vary[k] && p !== "")
    .join(" · ");
}
