import { describe, expect, it } from "vitest";
import { cellCount, cells, labels, parseList, planError, promptLoras, shared, variedLora, varying } from "./compare";
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
    expect(varying(cs)).toEqual([true, false, true, false, false, false]);
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

describe("strength and LoRA weight axes", () => {
  const base = axes(["Euler"], ["Karras"], [20], [7]);

  it("vary the denoising strength and one LoRA's weight, innermost", () => {
    const a = { ...base, strengths: [0.3, 0.6], lora: { name: "ink", weights: [0, 0.5, 1] } };
    const cs = cells(a);
    expect(cellCount(a)).toBe(6);
    expect(cs).toHaveLength(6);
    expect(cs[0]).toEqual({ sampler: "Euler", schedule: "Karras", steps: 20, cfg: 7, strength: 0.3, lora: { name: "ink", weight: 0 } });
    expect(cs[5]).toMatchObject({ strength: 0.6, lora: { name: "ink", weight: 1 } });
    expect(labels(cs)).toEqual([
      "strength 0.3 · LoRA ink:0",
      "strength 0.3 · LoRA ink:0.5",
      "strength 0.3 · LoRA ink:1",
      "strength 0.6 · LoRA ink:0",
      "strength 0.6 · LoRA ink:0.5",
      "strength 0.6 · LoRA ink:1",
    ]);
    expect(shared(cs)).toBe("Euler · Karras · 20 steps · CFG 7");
    const one = cells({ ...base, strengths: [0.5], lora: { name: "ink", weights: [0, 1] } });
    expect(labels(one)).toEqual(["LoRA ink:0", "LoRA ink:1"]);
    expect(shared(one)).toBe("Euler · Karras · 20 steps · CFG 7 · strength 0.5");
    // Absent or empty axes add nothing to the cells.
    expect(cells({ ...base, strengths: [], lora: null })).toEqual([{ sampler: "Euler", schedule: "Karras", steps: 20, cfg: 7 }]);
  });

  it("count against the cap", () => {
    const a = { ...axes(["Euler", "Heun"], ["Karras"], [20], [7]), strengths: [0.2, 0.4, 0.6], lora: { name: "ink", weights: [0, 0.5, 1] } };
    expect(planError(a, 16)).toBe("That makes 18 images (2 × 1 × 1 × 1 × 3 × 3); a comparison holds at most 16. Pick fewer values.");
    expect(planError({ ...base, strengths: [0.2, 0.4] }, 16)).toBeNull();
  });

  it("read the prompt's LoRA tags and find the one a saved group varies", () => {
    expect(promptLoras("a fox <lora:ink:0.7>, <lyco:paper> <hypernet:x:1> <lora:ink:2>")).toEqual([
      { name: "ink", weight: 0.7 },
      { name: "paper", weight: 1 },
    ]);
    expect(variedLora(["x <lora:a:1> <lora:ink:0>", "x <lora:a:1> <lora:ink:0.5>"])).toEqual([
      { name: "ink", weight: 0 },
      { name: "ink", weight: 0.5 },
    ]);
    expect(variedLora(["x <lora:ink:1>", "x <lora:ink:1>"])).toBeNull();
    expect(variedLora(["x <lora:ink:1>", "x"])).toBeNull();
  });
});
