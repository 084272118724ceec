// The generation form: its values, validation and what is sent to the app.

import { snap } from "./aspect";
import type { Emphasis, GenerateForm, Hires, Img2Img, Limits, ModelView, NoiseSource, Quantize, Request } from "./types";

/** Everything the Generate view edits. */
export interface FormState {
  prompt: string;
  negativePrompt: string;
  seedText: string;
  seedLocked: boolean;
  steps: number;
  cfg: number;
  /** Distilled guidance scale for models that take one (Flux dev); null for other models. */
  guidance: number | null;
  sampler: string;
  schedule: string;
  width: number;
  height: number;
  batch: number;
  /** Noise source, A1111's ENSD and variation seed: kept as a gallery image had them. */
  noise: NoiseSource;
  ensd: number;
  variationSeed: number | null;
  variationStrength: number;
  /** How colours become 8-bit values (a re-run of an A1111 image truncates as A1111 did). */
  quantize: Quantize;
  /** Clip skip (1 = the last layer); null is the default of the emphasis rules. */
  clipSkip: number | null;
  /** How prompt weights apply (A1111's "Emphasis mode", or ComfyUI's rules). */
  emphasis: Emphasis;
}

/** Model defaults the form starts from. */
export type Defaults = Pick<ModelView, "steps" | "cfg" | "sampler" | "schedule" | "size"> &
  Partial<Pick<ModelView, "clipSkip" | "guidance">>;

/** Largest seed the engine takes without losing precision in JavaScript numbers. */
export const MAX_SEED = Number.MAX_SAFE_INTEGER;

/** Largest clip skip the engine takes (its `MAX_CLIP_SKIP`). */
export const MAX_CLIP_SKIP = 32;

/** The emphasis modes, with the names A1111's settings use. */
export const EMPHASIS_MODES: [Emphasis, string][] = [
  ["original", "Original (A1111)"],
  ["no-norm", "No norm"],
  ["ignore", "Ignore"],
  ["none", "None (brackets are text)"],
  ["comfy", "ComfyUI"],
];

/** A fresh form from a model's defaults. */
export function initialForm(d: Defaults): FormState {
  return {
    prompt: "",
    negativePrompt: "",
    seedText: "",
    seedLocked: false,
    steps: d.steps,
    cfg: d.cfg,
    guidance: d.guidance ?? null,
    sampler: d.sampler,
    schedule: d.schedule,
    width: d.size,
    height: d.size,
    batch: 1,
    noise: "cpu",
    ensd: 0,
    variationSeed: null,
    variationStrength: 0,
    quantize: "round",
    clipSkip: d.clipSkip ?? null,
    emphasis: "original",
  };
}

/** Parses a seed: empty or -1 is random (null); otherwise a whole number in range, or an error. */
export function parseSeed(text: string): { seed: number | null } | { error: string } {
  const t = text.trim();
  if (t === "" || t === "-1") return { seed: null };
  if (!/^\d+$/.test(t)) return { error: "Seed must be a whole number (or empty for random)." };
  const n = Number(t);
  if (!Number.isSafeInteger(n) || n > MAX_SEED) return { error: `Seed must be at most ${MAX_SEED}.` };
  return { seed: n };
}

/** A random seed in the 32-bit range other tools use. */
export function randomSeed(rand: () => number = Math.random): number {
  return Math.floor(rand() * 0x1_0000_0000);
}

/** Field name -> message for every invalid field; empty when the form can be sent.
 *  `limits` are the app's; `downscale` is the loaded model's size multiple. */
export function validate(f: FormState, limits: Limits, downscale: number): Record<string, string> {
  const errors: Record<string, string> = {};
  if (f.prompt.trim() === "") errors.prompt = "Write a prompt first.";
  if (!Number.isInteger(f.steps) || f.steps < 1 || f.steps > limits.maxSteps)
    errors.steps = `Steps must be a whole number from 1 to ${limits.maxSteps}.`;
  if (!Number.isFinite(f.cfg) || f.cfg < 0 || f.cfg > limits.maxCfg)
    errors.cfg = `CFG must be between 0 and ${limits.maxCfg}.`;
  if (f.guidance !== null && (!Number.isFinite(f.guidance) || f.guidance < 0 || f.guidance > limits.maxCfg))
    errors.guidance = `Guidance must be between 0 and ${limits.maxCfg}.`;
  for (const key of ["width", "height"] as const) {
    const v = f[key];
    if (!Number.isInteger(v) || v < downscale || v > limits.maxSize || v % downscale !== 0)
      errors[key] = `${key === "width" ? "Width" : "Height"} must be a multiple of ${downscale} up to ${limits.maxSize}.`;
  }
  if (!Number.isInteger(f.batch) || f.batch < 1 || f.batch > limits.maxBatch)
    errors.batch = `Batch count must be from 1 to ${limits.maxBatch}.`;
  if (f.clipSkip !== null && (!Number.isInteger(f.clipSkip) || f.clipSkip < 1 || f.clipSkip > MAX_CLIP_SKIP))
    errors.clipSkip = `Clip skip must be a whole number from 1 to ${MAX_CLIP_SKIP}.`;
  if (f.variationSeed !== null && !(Number.isSafeInteger(f.variationSeed) && f.variationSeed >= 0))
    errors.variationSeed = "Variation seed must be a whole number (or empty for none).";
  if (!Number.isInteger(f.ensd) || f.ensd < 0) errors.ensd = "ENSD must be a whole number, 0 or more.";
  if (!Number.isFinite(f.variationStrength) || f.variationStrength < 0 || f.variationStrength > 1)
    errors.variationStrength = "Variation strength must be between 0 and 1.";
  if (f.sampler === "") errors.sampler = "Pick a sampler.";
  if (f.schedule === "") errors.schedule = "Pick a schedule.";
  if (f.seedLocked) {
    const s = parseSeed(f.seedText);
    if ("error" in s) errors.seed = s.error;
  }
  return errors;
}

/** The image-to-image and hires parts of a request (none by default). */
export interface Extras {
  img2img: Img2Img | null;
  hires: Hires | null;
  madeFrom: number | null;
}

const NO_EXTRAS: Extras = { img2img: null, hires: null, madeFrom: null };

/** What `generate` and `compare` take: a random seed unless the seed is locked. */
export function toForm(f: FormState, extras: Extras = NO_EXTRAS): GenerateForm {
  const parsed = parseSeed(f.seedText);
  const seed = f.seedLocked && "seed" in parsed ? parsed.seed : null;
  return {
    request: {
      prompt: f.prompt,
      negative_prompt: f.negativePrompt,
      // Ignored by the app when randomSeed is set.
      seed: seed ?? 0,
      steps: f.steps,
      cfg: f.cfg,
      guidance: f.guidance,
      max_sequence_length: null,
      sampler: f.sampler,
      schedule: f.schedule,
      width: f.width,
      height: f.height,
      noise: f.noise,
      ensd: f.ensd,
      variation_seed: f.variationSeed,
      variation_strength: f.variationStrength,
      quantize: f.quantize,
      clip_skip: f.clipSkip,
      emphasis: f.emphasis,
      img2img: extras.img2img,
      hires: extras.hires,
    },
    randomSeed: seed === null,
    batch: f.batch,
    madeFrom: extras.madeFrom,
  };
}

/** Snaps a typed size to the model's grid, within the app's largest size. */
export function snapSize(v: number, downscale: number, maxSize: number): number {
  return snap(v, downscale, maxSize);
}

/** The form filled with the request that makes a gallery image again, with its seed locked. */
export function fromRequest(base: FormState, r: Request): FormState {
  return {
    ...base,
    prompt: r.prompt,
    negativePrompt: r.negative_prompt,
    seedText: String(r.seed),
    seedLocked: true,
    steps: r.steps,
    cfg: r.cfg,
    // A recorded scale is kept; a model that takes none keeps none.
    guidance: base.guidance === null ? null : (r.guidance ?? base.guidance),
    sampler: r.sampler,
    schedule: r.schedule,
    width: r.width,
    height: r.height,
    batch: 1,
    noise: r.noise,
    ensd: r.ensd,
    variationSeed: r.variation_seed,
    variationStrength: r.variation_strength,
    quantize: r.quantize,
    clipSkip: r.clip_skip,
    emphasis: r.emphasis,
  };
}
