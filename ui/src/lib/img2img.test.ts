import { describe, expect, it } from "vitest";
import {
  History,
  outpaintedSize,
  canvasPoint,
  initialHires,
  initialImg2Img,
  invertPaint,
  maskIsEmpty,
  paintToMask,
  sizeFor,
  toHires,
  toImg2Img,
  validateImg2Img,
} from "./img2img";

const source = { name: "a".repeat(64), width: 70, height: 50, made_from: 3 };

describe("img2img settings", () => {
  it("become the request's fields only with a picture", () => {
    const s = initialImg2Img();
    expect(toImg2Img(s, null)).toBeNull();
    const r = toImg2Img({ ...s, source, strength: 0.4 }, "b".repeat(64));
    expect(r).toMatchObject({ init_image: source.name, strength: 0.4, mask: "b".repeat(64), mask_blur: 4 });
    expect(toHires(initialHires())).toBeNull();
    expect(toHires({ ...initialHires(), enabled: true, scale: 1.5 })).toMatchObject({
      scale: 1.5,
      upscaler: "Latent",
      sampler: "",
      schedule: "",
      prompt: "",
      negative_prompt: "",
    });
    const own = { sampler: "DPM++ 2M", schedule: "Karras", prompt: " a sharp fox ", negativePrompt: "blur" };
    expect(toHires({ ...initialHires(), enabled: true, ...own })).toMatchObject({
      sampler: "DPM++ 2M",
      schedule: "Karras",
      prompt: "a sharp fox",
      negative_prompt: "blur",
    });
  });

  it("are checked", () => {
    const s = { ...initialImg2Img(), source };
    expect(validateImg2Img(s, initialHires())).toEqual({});
    expect(validateImg2Img({ ...s, strength: 1.5 }, initialHires()).strength).toContain("0 to 1");
    const h = { ...initialHires(), enabled: true, scale: 9, strength: 0 };
    const e = validateImg2Img(s, h);
    expect(Object.keys(e).sort()).toEqual(["hires", "hiresScale", "hiresStrength"]);
  });

  it("snap the picture's size to the model's multiple", () => {
    expect(sizeFor(70, 50, 8, 2048)).toEqual({ width: 64, height: 48 });
    expect(sizeFor(5, 9000, 8, 2048)).toEqual({ width: 8, height: 2048 });
  });
});

describe("mask painting", () => {
  it("maps pointer positions to picture pixels, clamped", () => {
    const rect = { left: 10, top: 20, width: 200, height: 100 };
    expect(canvasPoint(110, 70, rect, 400, 200)).toEqual({ x: 200, y: 100 });
    expect(canvasPoint(0, 500, rect, 400, 200)).toEqual({ x: 0, y: 200 });
  });

  it("inverts, detects empty masks and exports white-on-black", () => {
    const px = new Uint8ClampedArray([0, 0, 0, 0, 255, 255, 255, 200]);
    expect(maskIsEmpty(px)).toBe(false);
    invertPaint(px, [255, 0, 0]);
    expect(Array.from(px)).toEqual([255, 0, 0, 255, 255, 0, 0, 55]);
    paintToMask(px);
    expect(Array.from(px)).toEqual([255, 255, 255, 255, 55, 55, 55, 255]);
    expect(maskIsEmpty(new Uint8ClampedArray(8))).toBe(true);
  });
});

describe("outpainting and undo", () => {
  it("outpainting sends margins, no mask, and fills the new area", () => {
    const s = { ...initialImg2Img(), source, outpaint: [0, 32, 8, 0] as [number, number, number, number] };
    const r = toImg2Img(s, "c".repeat(64));
    expect(r?.outpaint).toEqual({ left: 0, right: 32, top: 8, bottom: 0 });
    expect(r?.mask).toBeNull();
    expect(r?.masked_content).toBe("fill");
    expect(outpaintedSize(s, 64, 64)).toEqual({ width: 96, height: 72 });
    expect(validateImg2Img({ ...s, outpaint: [-1, 0, 0, 0] }, initialHires()).outpaint).toBeDefined();
  });

  it("history undoes and redoes, and a new change drops the redo", () => {
    const h = new History<number>(2);
    expect(h.undo(0)).toBeNull();
    h.push(1);
    h.push(2);
    h.push(3); // the oldest (1) falls off
    expect(h.undo(4)).toBe(3);
    expect(h.undo(3)).toBe(2);
    expect(h.undo(2)).toBeNull();
    expect(h.redo(2)).toBe(3);
    h.push(9);
    expect(h.canRedo).toBe(false);
  });
});
