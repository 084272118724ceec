import { describe, expect, it } from "vitest";
import { columnsFor, visibleWindow } from "./grid";

describe("virtual grid", () => {
  it("fits columns", () => {
    expect(columnsFor(1000, 160, 8)).toBe(6);
    expect(columnsFor(50, 160)).toBe(1);
  });

  it("renders only the rows in view for 100,000 items", () => {
    const w = visibleWindow(100_000, 6, 170, 170 * 5000, 680, 2);
    expect(w.totalHeight).toBe(Math.ceil(100_000 / 6) * 170);
    expect(w.start).toBe((5000 - 2) * 6);
    expect(w.end).toBe((5000 + 4 + 2) * 6);
    expect(w.end - w.start).toBeLessThan(100);
    expect(w.offsetTop).toBe((5000 - 2) * 170);
  });

  it("clamps at both ends", () => {
    expect(visibleWindow(10, 4, 100, 0, 1000)).toMatchObject({ start: 0, end: 10, offsetTop: 0, totalHeight: 300 });
    const w = visibleWindow(10, 4, 100, 99999, 500);
    expect(w.end).toBe(10);
    expect(w.start).toBeLessThanOrEqual(w.end);
    expect(visibleWindow(0, 4, 100, 0, 500)).toMatchObject({ start: 0, end: 0, totalHeight: 0 });
  });
});
