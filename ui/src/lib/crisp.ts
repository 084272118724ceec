// Small pictures (the 32 px demo model's, previews of small latents) shown several times their
// size are drawn with hard pixel edges instead of a blur; pictures shown near their own size
// or smaller keep smooth scaling.

/** Whether a picture `natural` pixels wide, shown `shown` CSS pixels wide, should be pixelated. */
export function pixelated(natural: number, shown: number): boolean {
  return natural > 0 && shown >= 2 * natural;
}

/** Svelte action: keeps `image-rendering` right for the image's size as it loads and resizes. */
export function crisp(img: HTMLImageElement) {
  const update = () => {
    img.style.imageRendering = pixelated(img.naturalWidth, img.clientWidth) ? "pixelated" : "";
  };
  img.addEventListener("load", update);
  const observer = typeof ResizeObserver === "undefined" ? null : new ResizeObserver(update);
  observer?.observe(img);
  if (img.complete) update();
  return {
    destroy() {
      img.removeEventListener("load", update);
      observer?.disconnect();
    },
  };
}
