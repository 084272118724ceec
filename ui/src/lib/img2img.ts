// Image to image in the Generate view: its settings, what the request gets from them, and the
// pixel arithmetic of the mask painted over the picture (pure, so it is tested without a DOM).

import type { Hires, Img2Img, MaskedContent, ResizeMode, SourceInfo } from "./types";

/** What the "Image to image" section edits. */
export interface Img2ImgState {
  /** The kept init picture (null: text to image). */
  source: SourceInfo | null;
  /** Where the page shows it (an object URL or the gallery's image URL). */
  url: string;
  strength: number;
  resizeMode: ResizeMode;
  maskBlur: number;
  invertMask: boolean;
  maskedContent: MaskedContent;
  onlyMasked: boolean;
  maskedPadding: number;
  /** Outpainting: pixels added left, right, top, bottom (all 0: none). */
  outpaint: [number, number, number, number];
}

/** The hires fix options. */
export interface HiresState {
  enabled: boolean;
  scale: number;
  steps: number;
  strength: number;
  upscaler: string;
  /** Second pass sampler, schedule, prompt and negative prompt ("": the first pass's). */
  sampler: string;
  schedule: string;
  prompt: string;
  negativePrompt: string;
}

/** The upscalers the engine has, by A1111 name. */
export const UPSCALERS = [
  "Latent",
  "Latent (antialiased)",
  "Latent (bicubic)",
  "Latent (bicubic antialiased)",
  "Latent (nearest)",
  "Latent (nearest-exact)",
  "Lanczos",
  "Nearest",
];

export function initialImg2Img(): Img2ImgState {
  return {
    source: null,
    url: "",
    strength: 0.75,
    resizeMode: "just",
    maskBlur: 4,
    invertMask: false,
    maskedContent: "original",
    onlyMasked: false,
    maskedPadding: 32,
    outpaint: [0, 0, 0, 0],
  };
}

/** Whether the settings extend the canvas. */
export function outpainting(s: Img2ImgState): boolean {
  return s.outpaint.some((v) => v > 0);
}

export function initialHires(): HiresState {
  return {
    enabled: false,
    scale: 2,
    steps: 0,
    strength: 0.7,
    upscaler: "Latent",
    sampler: "",
    schedule: "",
    prompt: "",
    negativePrompt: "",
  };
}

/** The request's img2img part: null without a picture; `mask` is the kept mask's name. */
export function toImg2Img(s: Img2ImgState, mask: string | null): Img2Img | null {
  if (!s.source) return null;
  return {
    init_image: s.source.name,
    strength: s.strength,
    resize_mode: s.resizeMode,
    fixed_steps: false,
    mask,
    mask_blur: s.maskBlur,
    invert_mask: s.invertMask,
    masked_content: s.maskedContent,
    only_masked: s.onlyMasked,
    masked_padding: s.maskedPadding,
    outpaint: outpainting(s)
      ? { left: s.outpaint[0], right: s.outpaint[1], top: s.outpaint[2], bottom: s.outpaint[3] }
      : null,
    // Outpainting fills the new area from the picture's edge (A1111's "fill") and repaints it.
    ...(outpainting(s) ? { mask: null, masked_content: s.maskedContent === "original" ? "fill" : s.maskedContent } : {}),
  };
}

/** The request's hires part: null when off. */
export function toHires(h: HiresState): Hires | null {
  if (!h.enabled) return null;
  return {
    scale: h.scale,
    width: 0,
    height: 0,
    upscaler: h.upscaler,
    steps: h.steps,
    strength: h.strength,
    // Empty: the engine uses the first pass's.
    sampler: h.sampler.trim(),
    schedule: h.schedule.trim(),
    prompt: h.prompt.trim(),
    negative_prompt: h.negativePrompt.trim(),
  };
}

/** Field name -> message for every invalid img2img or hires field. */
export function validateImg2Img(s: Img2ImgState, h: HiresState): Record<string, string> {
  const errors: Record<string, string> = {};
  const unit = (v: number) => Number.isFinite(v) && v >= 0 && v <= 1;
  if (s.source && !unit(s.strength)) errors.strength = "Denoising strength must be from 0 to 1.";
  if (s.source && s.outpaint.some((v) => !Number.isInteger(v) || v < 0 || v > 2048))
    errors.outpaint = "Outpaint margins must be whole numbers from 0 to 2048.";
  if (s.source && (!Number.isInteger(s.maskBlur) || s.maskBlur < 0 || s.maskBlur > 64))
    errors.maskBlur = "Mask blur must be a whole number from 0 to 64.";
  if (h.enabled) {
    if (s.source) errors.hires = "Hires fix is for text to image; remove the init image or turn hires fix off.";
    if (!Number.isFinite(h.scale) || h.scale < 1 || h.scale > 4) errors.hiresScale = "Hires scale must be from 1 to 4.";
    if (!unit(h.strength) || h.strength === 0) errors.hiresStrength = "Hires strength must be above 0 and at most 1.";
    if (!Number.isInteger(h.steps) || h.steps < 0) errors.hiresSteps = "Hires steps must be a whole number (0: same as steps).";
  }
  return errors;
}

/** The canvas size after outpainting a `w x h` picture. */
export function outpaintedSize(s: Img2ImgState, w: number, h: number): { width: number; height: number } {
  const [l, r, t, b] = s.outpaint;
  return { width: w + l + r, height: h + t + b };
}

/** A bounded undo history of snapshots: `push` before a change, `undo`/`redo` move along it. */
export class History<T> {
  private past: T[] = [];
  private future: T[] = [];
  constructor(private readonly limit = 30) {}
  push(state: T): void {
    this.past.push(state);
    if (this.past.length > this.limit) this.past.shift();
    this.future = [];
  }
  undo(current: T): T | null {
    const prev = this.past.pop();
    if (prev === undefined) return null;
    this.future.push(current);
    return prev;
  }
  redo(current: T): T | null {
    const next = this.future.pop();
    if (next === undefined) return null;
    this.past.push(current);
    return next;
  }
  clear(): void {
    this.past = [];
    this.future = [];
  }
  get canUndo(): boolean {
    return this.past.length > 0;
  }
  get canRedo(): boolean {
    return this.future.length > 0;
  }
}

/** The picture's size snapped down to the model's multiple, within the largest size. */
export function sizeFor(w: number, h: number, downscale: number, maxSize: number): { width: number; height: number } {
  const snap = (v: number) => Math.max(downscale, Math.floor(Math.min(v, maxSize) / downscale) * downscale);
  return { width: snap(w), height: snap(h) };
}

/** A pointer position over the shown picture (its box `rect`) in the picture's pixels. */
export function canvasPoint(
  clientX: number,
  clientY: number,
  rect: { left: number; top: number; width: number; height: number },
  width: number,
  height: number,
): { x: number; y: number } {
  const x = ((clientX - rect.left) / Math.max(rect.width, 1)) * width;
  const y = ((clientY - rect.top) / Math.max(rect.height, 1)) * height;
  return { x: Math.min(Math.max(x, 0), width), y: Math.min(Math.max(y, 0), height) };
}

/** Whether nothing is painted (every alpha value of RGBA data is 0). */
export function maskIsEmpty(rgba: Uint8ClampedArray): boolean {
  for (let i = 3; i < rgba.length; i += 4) if (rgba[i] !== 0) return false;
  return true;
}

/** Swaps painted and unpainted pixels (alpha 255 - a), painting in `color` (RGB). */
export function invertPaint(rgba: Uint8ClampedArray, color: [number, number, number]): void {
  for (let i = 0; i < rgba.length; i += 4) {
    rgba[i] = color[0];
    rgba[i + 1] = color[1];
    rgba[i + 2] = color[2];
    rgba[i + 3] = 255 - rgba[i + 3];
  }
}

/** The painted strokes (alpha) as an opaque black-and-white mask (white repaints), in place. */
export function paintToMask(rgba: Uint8ClampedArray): void {
  for (let i = 0; i < rgba.length; i += 4) {
    const v = rgba[i + 3];
    rgba[i] = v;
    rgba[i + 1] = v;
    rgba[i + 2] = v;
    rgba[i + 3] = 255;
  }
}
