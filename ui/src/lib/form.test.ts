import { describe, expect, it } from "vitest";
import { type FormState, fromRequest, initialForm, parseSeed, randomSeed, snapSize, toForm, validate } from "./form";
import type { Limits } from "./types";

const defaults = { steps: 20, cfg: 7, sampler: "DPM++ 2M", schedule: "Karras", size: 512 };
// The app's limits as `tables` hands them over.
const limits: Limits = { maxSteps: 500, maxSize: 8192, maxCfg: 100, maxCompareCells: 16, maxBatch: 100 };

describe("parseSeed", () => {
  it("reads empty and -1 as random", () => {
    expect(parseSeed("")).toEqual({ seed: null });
    expect(parseSeed(" -1 ")).toEqual({ seed: null });
  });
  it("accepts whole numbers and rejects the rest", () => {
    expect(parseSeed("42")).toEqual({ seed: 42 });
    expect("error" in parseSeed("4.2")).toBe(true);
    expect("error" in parseSeed("-5")).toBe(true);
    expect("error" in parseSeed("abc")).toBe(true);
    expect("error" in parseSeed("99999999999999999999")).toBe(true);
  });
});

describe("initialForm", () => {
  it("takes the clip skip a model recommends", () => {
    expect(initialForm(defaults).clipSkip).toBeNull();
    expect(initialForm({ ...defaults, clipSkip: 2 }).clipSkip).toBe(2);
  });
});

describe("validate", () => {
  it("asks for a prompt", () => {
    const f = initialForm(defaults);
    expect(validate(f, limits, 8)).toEqual({ prompt: "Write a prompt first." });
    expect(validate({ ...f, prompt: "a cat" }, limits, 8)).toEqual({});
  });
  it("checks numbers and sizes", () => {
    const f = { ...initialForm(defaults), prompt: "x" };
    const bad = (patch: Partial<FormState>, downscale = 8) => Object.keys(validate({ ...f, ...patch }, limits, downscale));
    expect(bad({ steps: 0 })).toEqual(["steps"]);
    expect(bad({ steps: 2.5 })).toEqual(["steps"]);
    expect(bad({ cfg: Number.NaN })).toEqual(["cfg"]);
    expect(bad({ cfg: -1 })).toEqual(["cfg"]);
    expect(bad({ width: 513 })).toEqual(["width"]);
    expect(bad({ height: 0 })).toEqual(["height"]);
    expect(bad({ batch: 0 })).toEqual(["batch"]);
    expect(bad({ width: 520 }, 8)).toEqual([]);
    expect(bad({ width: 520 }, 16)).toEqual(["width"]);
  });
  it("keeps the app's limits, and says them", () => {
    const f = { ...initialForm(defaults), prompt: "x" };
    const check = (patch: Partial<FormState>, l: Limits = limits) => validate({ ...f, ...patch }, l, 8);
    // Up to each limit is fine, one past it is not.
    expect(check({ steps: 500, cfg: 100, width: 8192, height: 8192, batch: 100 })).toEqual({});
    expect(check({ steps: 501 }).steps).toBe("Steps must be a whole number from 1 to 500.");
    expect(check({ cfg: 100.5 }).cfg).toBe("CFG must be between 0 and 100.");
    expect(check({ width: 8200 }).width).toBe("Width must be a multiple of 8 up to 8192.");
    expect(check({ batch: 101 }).batch).toBe("Batch count must be from 1 to 100.");
    // Smaller limits bite earlier.
    const small: Limits = { maxSteps: 50, maxSize: 1024, maxCfg: 30, maxCompareCells: 4, maxBatch: 8 };
    expect(check({ steps: 50, cfg: 30, width: 1024, batch: 8 }, small)).toEqual({});
    expect(check({ steps: 60, cfg: 31, height: 1032, batch: 9 }, small)).toEqual({
      steps: "Steps must be a whole number from 1 to 50.",
      cfg: "CFG must be between 0 and 30.",
      height: "Height must be a multiple of 8 up to 1024.",
      batch: "Batch count must be from 1 to 8.",
    });
  });
  it("checks the advanced settings", () => {
    const f = { ...initialForm(defaults), prompt: "p", clipSkip: 0, ensd: -1, variationSeed: NaN, variationStrength: 1.5 };
    expect(Object.keys(validate(f, limits, 8)).sort()).toEqual(["clipSkip", "ensd", "variationSeed", "variationStrength"]);
    const ok = { ...f, clipSkip: 2, ensd: 31337, variationSeed: 5, variationStrength: 0.3 };
    expect(validate(ok, limits, 8)).toEqual({});
  });
  it("checks a locked seed only", () => {
    const f = { ...initialForm(defaults), prompt: "x", seedText: "nope" };
    expect(validate(f, limits, 8)).toEqual({});
    expect(Object.keys(validate({ ...f, seedLocked: true }, limits, 8))).toEqual(["seed"]);
  });
});

describe("toForm", () => {
  it("asks for a random seed unless locked", () => {
    const f = { ...initialForm(defaults), prompt: "x", seedText: "7" };
    expect(toForm(f).randomSeed).toBe(true);
    expect(toForm({ ...f, seedLocked: true })).toMatchObject({ randomSeed: false, request: { seed: 7 } });
    // A locked "-1" is the random seed, as in A1111.
    expect(toForm({ ...f, seedText: "-1", seedLocked: true }).randomSeed).toBe(true);
  });
  it("fills from a gallery image's request with the seed locked, and sends it back unchanged", () => {
    const request = {
      prompt: "p",
      negative_prompt: "n",
      seed: 99,
      steps: 5,
      cfg: 3,
      guidance: null,
      max_sequence_length: null,
      sampler: "Euler a",
      schedule: "Normal",
      width: 64,
      height: 128,
      noise: "nv" as const,
      ensd: 31337,
      variation_seed: 7,
      variation_strength: 0.25,
      quantize: "truncate" as const,
      clip_skip: 2,
      emphasis: "no-norm" as const,
      img2img: null,
      hires: null,
    };
    const f = fromRequest(initialForm(defaults), request);
    expect(toForm(f)).toEqual({ request, randomSeed: false, batch: 1, madeFrom: null });
  });
  it("keeps a Flux dev image's guidance, and gives a model without guidance none", () => {
    const dev = initialForm({ ...defaults, guidance: 3.5 });
    expect(dev.guidance).toBe(3.5);
    expect(validate({ ...dev, prompt: "p", guidance: -1 }, limits, 8).guidance).toMatch(/Guidance/);
    const base = { ...toForm({ ...dev, prompt: "p" }).request, guidance: 2.5 };
    expect(fromRequest(dev, base).guidance).toBe(2.5);
    expect(fromRequest(dev, { ...base, guidance: null }).guidance).toBe(3.5);
    expect(fromRequest(initialForm(defaults), base).guidance).toBeNull();
  });
});

describe("snapSize", () => {
  it("snaps to the model's grid within the largest size", () => {
    expect(snapSize(517, 8, limits.maxSize)).toBe(520);
    expect(snapSize(100000, 8, limits.maxSize)).toBe(8192);
    expect(snapSize(100000, 64, 1000)).toBe(960);
  });
});

describe("randomSeed", () => {
  it("stays in the 32-bit range", () => {
    expect(randomSeed(() => 0)).toBe(0);
    expect(randomSeed(() => 0.999999999)).toBeLessThan(2 ** 32);
  });
});
