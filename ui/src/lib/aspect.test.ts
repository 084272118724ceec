import { describe, expect, it } from "vitest";
import { matchPreset, presets, snap } from "./aspect";
import type { Limits } from "./types";

// The app's limits as `tables` hands them over.
const limits: Limits = { maxSteps: 500, maxSize: 8192, maxCfg: 100, maxCompareCells: 16, maxBatch: 100 };
const max = limits.maxSize;

describe("snap", () => {
  it("rounds to the nearest multiple of 8 and clamps", () => {
    expect(snap(512, 8, max)).toBe(512);
    expect(snap(515, 8, max)).toBe(512);
    expect(snap(517, 8, max)).toBe(520);
    expect(snap(0, 8, max)).toBe(8);
    expect(snap(-40, 8, max)).toBe(8);
    expect(snap(100000, 8, max)).toBe(8192);
    expect(snap(Number.NaN, 8, max)).toBe(8);
    expect(snap(70, 64, max)).toBe(64);
  });
  it("stays within the largest size, on the grid", () => {
    expect(snap(2000, 8, 1024)).toBe(1024);
    expect(snap(2000, 64, 1000)).toBe(960);
  });
});

describe("presets", () => {
  it("gives SDXL its 1 MP buckets", () => {
    const p = presets("sdxl", 1024, 8, max);
    expect(p.map((x) => `${x.label} ${x.width}x${x.height}`)).toEqual([
      "1:1 1024x1024",
      "4:3 1152x896",
      "3:4 896x1152",
      "3:2 1216x832",
      "2:3 832x1216",
      "16:9 1344x768",
      "9:16 768x1344",
      "21:9 1536x640",
      "9:21 640x1536",
    ]);
  });

  it("keeps SD 1.x near 512x512 in area, multiples of 8, right orientation", () => {
    const p = presets("sd1", 512, 8, max);
    expect(p[0]).toEqual({ label: "1:1", width: 512, height: 512 });
    for (const x of p) {
      expect(x.width % 8).toBe(0);
      expect(x.height % 8).toBe(0);
      const area = x.width * x.height;
      expect(Math.abs(area - 512 * 512) / (512 * 512)).toBeLessThan(0.05);
    }
    const wide = p.find((x) => x.label === "16:9")!;
    expect(wide.width).toBeGreaterThan(wide.height);
    expect(Math.abs(wide.width / wide.height - 16 / 9)).toBeLessThan(0.05);
    const tall = p.find((x) => x.label === "9:16")!;
    expect([tall.width, tall.height]).toEqual([wide.height, wide.width]);
  });

  it("scales to the tiny fixture model", () => {
    const p = presets("sd1", 64, 8, max);
    expect(p[0]).toEqual({ label: "1:1", width: 64, height: 64 });
    expect(p.every((x) => x.width >= 8 && x.height >= 8)).toBe(true);
  });

  it("finds the preset for a size", () => {
    const p = presets("sdxl", 1024, 8, max);
    expect(matchPreset(p, 1216, 832)?.label).toBe("3:2");
    expect(matchPreset(p, 1000, 1000)).toBeUndefined();
  });
});
