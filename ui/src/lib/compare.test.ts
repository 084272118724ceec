import { describe, expect, it } from "vitest";
import { cellCount, cells, labels, parseList, planError, shared, varying } from "./compare";
import type { Limits } from "./types";

// The app's limits as `tables` hands them over.
const limits: Limits = { maxSteps: 500, maxSize: 8192, maxCfg: 100, maxCompareCells: 16, maxBatch: 100 };

const axes = (samplers: string[], schedules: string[], steps: number[], cfg: number[]) => ({ samplers, schedules, steps, cfg });

describe("compare cells", () => {
  it("is the cartesian product, samplers outermost", () => {
    const cs = cells(axes(["Euler", "DPM++ 2M"], ["Karras"], [10, 20], [7]));
    expect(cs).toEqual([
      { sampler: "Euler", schedule: "Karras", steps: 10, cfg: 7 },
      { sampler: "Euler", schedule: "Karras", steps: 20, cfg: 7 },
      { sampler: "DPM++ 2M", schedule: "Karras", steps: 10, cfg: 7 },
      { sampler: "DPM++ 2M", schedule: "Karras", steps: 20, cfg: 7 },
    ]);
    expect(cellCount(axes(["a", "b", "c"], ["x", "y"], [1, 2], [5]))).toBe(12);
    expect(cells(axes(["a", "b", "c"], ["x", "y"], [1, 2], [5]))).toHaveLength(12);
  });

  it("labels say only what varies", () => {
    const cs = cells(axes(["Euler", "DPM++ 2M"], ["Karras"], [10, 20], [7]));
    expect(labels(cs)).toEqual(["Euler · 10 steps", "Euler · 20 steps", "DPM++ 2M · 10 steps", "DPM++ 2M · 20 steps"]);
    expect(varying(cs)).toEqual([true, false, true, false]);
    expect(shared(cs)).toBe("Karras · CFG 7");
    const all = cells(axes(["DPM++ 2M", "Euler"], ["Karras", "Normal"], [20, 30], [7, 7.5]));
    expect(labels(all)[0]).toBe("DPM++ 2M · Karras · 20 steps · CFG 7");
    expect(labels(all)[15]).toBe("Euler · Normal · 30 steps · CFG 7.5");
    expect(shared(all)).toBe("");
  });

  it("caps the count with a clear message", () => {
    const cap = limits.maxCompareCells;
    expect(planError(axes(["a", "b"], ["x"], [10], [7]), cap)).toBeNull();
    expect(planError(axes(["a", "b", "c", "d"], ["x", "y"], [1, 2], [7]), cap)).toBeNull();
    const e = planError(axes(["a", "b", "c"], ["x", "y", "z"], [1, 2], [7]), cap);
    expect(e).toContain("18 images");
    expect(e).toContain("at most 16");
    expect(planError(axes(["a"], ["x"], [10], [7]), cap)).toMatch(/two or more/);
    expect(planError(axes([], ["x"], [10], [7]), cap)).toMatch(/at least one sampler/);
    // The cap is the app's: a smaller one refuses what 16 allows.
    expect(planError(axes(["a", "b", "c", "d"], ["x", "y"], [1, 2], [7]), 15)).toContain("at most 15");
  });

  it("parses value lists", () => {
    const steps = { integer: true, min: 1, max: limits.maxSteps };
    const cfg = { integer: false, min: 0, max: limits.maxCfg };
    expect(parseList("10, 20 30;10", "Steps", steps)).toEqual({ values: [10, 20, 30] });
    expect(parseList("7.5, 100", "CFG", cfg)).toEqual({ values: [7.5, 100] });
    expect(parseList("100.5", "CFG", cfg)).toEqual({ error: 'CFG values must be numbers from 0 to 100 ("100.5" is not).' });
    expect(parseList("501", "Steps", steps)).toEqual({ error: 'Steps values must be whole numbers from 1 to 500 ("501" is not).' });
    expect(parseList("", "Steps", steps)).toHaveProperty("error");
    expect(parseList("10, 2.5", "Steps", steps)).toHaveProperty("error");
    expect(parseList("0", "Steps", steps)).toHaveProperty("error");
    expect(parseList("abc", "CFG", cfg)).toHaveProperty("error");
  });
});
