import { describe, expect, it } from "vitest";
import { pixelated } from "./crisp";

describe("pixelated", () => {
  it("pixelates pictures enlarged two times or more", () => {
    expect(pixelated(32, 512)).toBe(true);
    expect(pixelated(32, 64)).toBe(true);
    expect(pixelated(256, 512)).toBe(true);
  });
  it("keeps smooth scaling near natural size and when shrinking", () => {
    expect(pixelated(32, 63)).toBe(false);
    expect(pixelated(512, 512)).toBe(false);
    expect(pixelated(1024, 400)).toBe(false);
  });
  it("waits for the picture to load", () => {
    expect(pixelated(0, 400)).toBe(false);
  });
});
