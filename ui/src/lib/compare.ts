// Comparisons over several settings: the cells (cartesian product of the chosen values),
// their labels and the check against the cap on how many one comparison may hold.

/** The values chosen for each setting. */
export interface Axes {
  samplers: string[];
  schedules: string[];
  steps: number[];
  cfg: number[];
}

/** One cell: the settings of one image. */
export interface CellSettings {
  sampler: string;
  schedule: string;
  steps: number;
  cfg: number;
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

/** Every combination of the chosen values, samplers outermost and CFG innermost. */
export function cells(a: Axes): CellSettings[] {
  const out: CellSettings[] = [];
  for (const sampler of a.samplers)
    for (const schedule of a.schedules)
      for (const steps of a.steps) for (const cfg of a.cfg) out.push({ sampler, schedule, steps, cfg });
  return out;
}

/** How many images the chosen values make. */
export function cellCount(a: Axes): number {
  return a.samplers.length * a.schedules.length * a.steps.length * a.cfg.length;
}

/** Why these values cannot run (too few cells, or more than `maxCells`, the app's
 *  `limits.maxCompareCells`), or null when they can. */
export function planError(a: Axes, maxCells: number): string | null {
  const n = cellCount(a);
  if (n === 0) return "Pick at least one sampler and one schedule.";
  if (n < 2) return "Pick two or more values of some setting to compare.";
  if (n > maxCells)
    return `That makes ${n} images (${a.samplers.length} × ${a.schedules.length} × ${a.steps.length} × ${a.cfg.length}); a comparison holds at most ${maxCells}. Pick fewer values.`;
  return null;
}

function parts(c: CellSettings): string[] {
  return [c.sampler, c.schedule, `${c.steps} steps`, `CFG ${c.cfg}`];
}

/** Which settings (sampler, schedule, steps, CFG) differ between the cells. */
export function varying(cs: CellSettings[]): boolean[] {
  const first = cs[0] ? parts(cs[0]) : [];
  const out = [false, false, false, false];
  for (const c of cs.slice(1)) parts(c).forEach((p, k) => (out[k] ||= p !== first[k]));
  return out;
}

/** Each cell's label: what differs, joined with " · " (everything when nothing does).
 *  Matches the labels the exported grid draws (sumi-gallery's grid module). */
export function labels(cs: CellSettings[]): string[] {
  const vary = varying(cs);
  const any = vary.some((v) => v);
  return cs.map((c) => parts(c).filter((_, k) => vary[k] || !any).join(" · "));
}

/** What all cells share, e.g. "Karras · CFG 7", for the heading above the results. */
export function shared(cs: CellSettings[]): string {
  if (!cs[0]) return "";
  const vary = varying(cs);
  return parts(cs[0]).filter((_, k) => !vary[k]).join(" · ");
}
