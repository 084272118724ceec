import { describe, expect, it } from "vitest";
import { editWeight, formatWeight, insertTag, loraTag } from "./weight";

/** Applies an edit to `text` where `|` marks the cursor (or `[...]` a selection). */
function run(marked: string, delta: number): string | null {
  const text = marked.replace(/[|[\]]/g, "");
  const start = marked.search(/[|[]/);
  const close = marked.indexOf("]");
  const end = close < 0 ? start : close - 1;
  const e = editWeight(text, start, end, delta);
  if (!e) return null;
  return e.text.slice(0, e.start) + "[" + e.text.slice(e.start, e.end) + "]" + e.text.slice(e.end);
}

describe("editWeight", () => {
  it("wraps the word at the cursor, or the selection, in a weight", () => {
    expect(run("a red| fox", 0.1)).toBe("a ([red]:1.1) fox");
    expect(run("a [red fox], snow", -0.1)).toBe("a ([red fox]:0.9), snow");
  });
  it("changes an existing weight, and drops brackets when it comes back to 1", () => {
    expect(run("a (r|ed:1.1) fox", 0.1)).toBe("a ([red]:1.2) fox");
    expect(run("a ([red]:1.2) fox", 0.1)).toBe("a ([red]:1.3) fox");
    expect(run("a (red:0.9|) fox", 0.1)).toBe("a [red] fox");
    expect(run("(red fox:1.9|)", 0.1)).toBe("([red fox]:2.0)");
  });
  it("keeps the selection tight and ignores empty places", () => {
    expect(run("a [ red ] fox", 0.1)).toBe("a  ([red]:1.1)  fox");
    expect(run("a, | b", 0.1)).toBeNull();
    expect(run("|", 0.1)).toBeNull();
  });
  it("writes weights as A1111 does", () => {
    expect(formatWeight(1.1 + 0.1)).toBe("1.2");
    expect(formatWeight(2)).toBe("2.0");
    expect(formatWeight(0.30000000000000004)).toBe("0.3");
  });
});

describe("LoRA tags", () => {
  it("insert at the cursor with a separator", () => {
    const e = insertTag("a fox", 5, loraTag("ink", 1));
    expect(e.text).toBe("a fox, <lora:ink:1>");
    expect(e.start).toBe(e.text.length);
    expect(insertTag("", 0, loraTag("ink", 0.7)).text).toBe("<lora:ink:0.7>");
    expect(insertTag("a fox, ", 7, "<lora:x:1>").text).toBe("a fox, <lora:x:1>");
  });
});
