import { describe, expect, it } from "vitest";
import { cellCount, cells, labels, MAX_CELLS, parseList, planError, shared, varying } from "./compare";

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
    expect(planError(axes(["a", "b"], ["x"], [10], [7]))).toBeNull();
    expect(planError(axes(["a", "b", "c", "d"], ["x", "y"], [1, 2], [7]))).toBeNull();
    const e = planError(axes(["a", "b", "c"], ["x", "y", "z"], [1, 2], [7]));
    expect(e).toContain("18 images");
    expect(e).toContain(`at most ${MAX_CELLS}`);
    expect(planError(axes(["a"], ["x"], [10], [7]))).toMatch(/two or more/);
    expect(planError(axes([], ["x"], [10], [7]))).toMatch(/at least one sampler/);
  });

  it("parses value lists", () => {
    const steps = { integer: true, min: 1, max: 500 };
    expect(parseList("10, 20 30;10", "Steps", steps)).toEqual({ values: [10, 20, 30] });
    expect(parseList("7.5", "CFG", { integer: false, min: 0, max: 30 })).toEqual({ values: [7.5] });
    expect(parseList("", "Steps", steps)).toHaveProperty("error");
    expect(parseList("10, 2.5", "Steps", steps)).toHaveProperty("error");
    expect(parseList("0", "Steps", steps)).toHaveProperty("error");
    expect(parseList("abc", "CFG", { integer: false, min: 0, max: 30 })).toHaveProperty("error");
  });
});
