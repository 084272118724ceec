import { describe, expect, it } from "vitest";
import { fromParams, initialForm, parseSeed, randomSeed, toPayload, validate } from "./form";

const defaults = { steps: 20, cfg: 7, sampler: "DPM++ 2M", schedule: "Karras", size: 512 };

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

describe("validate", () => {
  it("asks for a prompt", () => {
    const f = initialForm(defaults);
    expect(validate(f)).toEqual({ prompt: "Write a prompt first." });
    expect(validate({ ...f, prompt: "a cat" })).toEqual({});
  });
  it("checks numbers and sizes", () => {
    const f = { ...initialForm(defaults), prompt: "x" };
    expect(Object.keys(validate({ ...f, steps: 0 }))).toEqual(["steps"]);
    expect(Object.keys(validate({ ...f, steps: 2.5 }))).toEqual(["steps"]);
    expect(Object.keys(validate({ ...f, cfg: Number.NaN }))).toEqual(["cfg"]);
    expect(Object.keys(validate({ ...f, width: 513 }))).toEqual(["width"]);
    expect(Object.keys(validate({ ...f, height: 0 }))).toEqual(["height"]);
    expect(Object.keys(validate({ ...f, batch: 0 }))).toEqual(["batch"]);
    expect(Object.keys(validate({ ...f, width: 520 }, 8))).toEqual([]);
    expect(Object.keys(validate({ ...f, width: 520 }, 16))).toEqual(["width"]);
  });
  it("checks a locked seed only", () => {
    const f = { ...initialForm(defaults), prompt: "x", seedText: "nope" };
    expect(validate(f)).toEqual({});
    expect(Object.keys(validate({ ...f, seedLocked: true }))).toEqual(["seed"]);
  });
});

describe("toPayload", () => {
  it("sends a random seed unless locked", () => {
    const f = { ...initialForm(defaults), prompt: "x", seedText: "7" };
    expect(toPayload(f).seed).toBeNull();
    expect(toPayload({ ...f, seedLocked: true }).seed).toBe(7);
  });
  it("fills from gallery parameters with the seed locked", () => {
    const f = fromParams(initialForm(defaults), {
      prompt: "p",
      negative_prompt: "n",
      seed: 99,
      steps: 5,
      cfg: 3,
      sampler: "Euler",
      schedule: "Normal",
      width: 64,
      height: 128,
    });
    expect(toPayload(f)).toEqual({
      prompt: "p",
      negativePrompt: "n",
      seed: 99,
      steps: 5,
      cfg: 3,
      sampler: "Euler",
      schedule: "Normal",
      width: 64,
      height: 128,
      batch: 1,
    });
  });
});

describe("randomSeed", () => {
  it("stays in the 32-bit range", () => {
    expect(randomSeed(() => 0)).toBe(0);
    expect(randomSeed(() => 0.999999999)).toBeLessThan(2 ** 32);
  });
});
