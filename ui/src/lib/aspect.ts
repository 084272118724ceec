// Aspect-ratio presets per model family and size snapping.

/** One size choice shown as a button. */
export interface Preset {
  label: string;
  width: number;
  height: number;
}

/** Ratios offered for every family, as [label, w, h]. */
export const RATIOS: [string, number, number][] = [
  ["1:1", 1, 1],
  ["4:3", 4, 3],
  ["3:4", 3, 4],
  ["3:2", 3, 2],
  ["2:3", 2, 3],
  ["16:9", 16, 9],
  ["9:16", 9, 16],
  ["21:9", 21, 9],
  ["9:21", 9, 21],
];

/** SDXL's ~1 megapixel training buckets, in RATIOS order. */
export const SDXL_BUCKETS: [number, number][] = [
  [1024, 1024],
  [1152, 896],
  [896, 1152],
  [1216, 832],
  [832, 1216],
  [1344, 768],
  [768, 1344],
  [1536, 640],
  [640, 1536],
];

/** Rounds `value` to the nearest multiple of `step`, kept within [step, maxSize]
 *  (`maxSize`: the app's `limits.maxSize`). */
export function snap(value: number, step: number, maxSize: number): number {
  if (!Number.isFinite(value)) return step;
  const max = Math.floor(maxSize / step) * step;
  const v = Math.round(value / step) * step;
  return Math.min(max, Math.max(step, v));
}

/** Presets for a family: SDXL and Flux get the ~1 megapixel buckets; SD 1.x/2.x keep the area
 *  of `base`². */
export function presets(family: string, base: number, step: number, maxSize: number): Preset[] {
  if ((family === "sdxl" || family === "flux") && base >= 1024) {
    return RATIOS.map(([label], i) => ({
      label,
      width: SDXL_BUCKETS[i][0],
      height: SDXL_BUCKETS[i][1],
    }));
  }
  return RATIOS.map(([label, rw, rh]) => {
    const r = rw / rh;
    return {
      label,
      width: snap(base * Math.sqrt(r), step, maxSize),
      height: snap(base / Math.sqrt(r), step, maxSize),
    };
  });
}

/** The preset matching a size, if any. */
export function matchPreset(list: Preset[], width: number, height: number): Preset | undefined {
  return list.find((p) => p.width === width && p.height === height);
}
