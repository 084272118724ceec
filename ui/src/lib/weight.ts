// Ctrl+Up / Ctrl+Down in a prompt box: change the weight of the selected words (or the word at
// the cursor, or the weighted group the cursor is in) by a step, as A1111's prompt box does:
// plain words become `(words:1.1)`, a weight that comes back to 1 loses its brackets.

/** The prompt after an edit, and the selection to keep (the words, without brackets). */
export interface WeightEdit {
  text: string;
  start: number;
  end: number;
}

/** Characters that end a word when nothing is selected. */
const DELIMITERS = new Set(" \t\r\n.,\\/!?%^*;:{}=`~()[]<>|");

/** A weight as A1111 writes it: at most 12 significant digits, whole numbers with ".0". */
export function formatWeight(w: number): string {
  const v = Number(w.toPrecision(12));
  return Number.isInteger(v) ? `${v}.0` : String(v);
}

/** The `(inner:weight)` group around position `at`, if any: where its inner text lies. */
function groupAround(text: string, at: number): { start: number; end: number } | null {
  const open = text.lastIndexOf("(", at - 1);
  if (open < 0 || text.slice(open + 1, at).includes(")")) return null;
  const close = text.indexOf(")", at);
  if (close < 0 || text.slice(at, close).includes("(")) return null;
  const m = /^(.*):\s*[-+]?(\d+\.?\d*|\.\d+)\s*$/s.exec(text.slice(open + 1, close));
  if (!m) return null;
  return { start: open + 1, end: open + 1 + m[1].length };
}

/** The word around the cursor at `at`. */
function wordAround(text: string, at: number): { start: number; end: number } | null {
  let start = at;
  let end = at;
  while (start > 0 && !DELIMITERS.has(text[start - 1])) start--;
  while (end < text.length && !DELIMITERS.has(text[end])) end++;
  return start < end ? { start, end } : null;
}

/** Changes the weight of `text[start..end]` (or what the cursor is on) by `delta`; `null` when
 *  there is nothing to weigh. */
export function editWeight(text: string, start: number, end: number, delta: number): WeightEdit | null {
  let sel: { start: number; end: number } | null = { start, end };
  if (start === end) sel = groupAround(text, start) ?? wordAround(text, start);
  if (!sel) return null;
  while (sel.start < sel.end && /\s/.test(text[sel.start])) sel.start++;
  while (sel.end > sel.start && /\s/.test(text[sel.end - 1])) sel.end--;
  if (sel.start === sel.end) return null;
  const words = text.slice(sel.start, sel.end);
  const after = /^:\s*([-+]?(?:\d+\.?\d*|\.\d+))\s*\)/.exec(text.slice(sel.end));
  if (text[sel.start - 1] === "(" && after) {
    const weight = Number((Number(after[1]) + delta).toPrecision(12));
    const tail = text.slice(sel.end + after[0].length);
    if (weight === 1) {
      const head = text.slice(0, sel.start - 1);
      return { text: head + words + tail, start: sel.start - 1, end: sel.end - 1 };
    }
    const head = text.slice(0, sel.start);
    return { text: `${head}${words}:${formatWeight(weight)})${tail}`, start: sel.start, end: sel.end };
  }
  const head = text.slice(0, sel.start);
  const tail = text.slice(sel.end);
  return {
    text: `${head}(${words}:${formatWeight(1 + delta)})${tail}`,
    start: sel.start + 1,
    end: sel.end + 1,
  };
}

/** Inserts a LoRA tag at the cursor, with a separating comma and space where needed. */
export function insertTag(text: string, at: number, tag: string): WeightEdit {
  const head = text.slice(0, at);
  const tail = text.slice(at);
  const sep = head.trim() === "" || /[,\s]$/.test(head) ? "" : ", ";
  const inserted = sep + tag;
  return { text: head + inserted + tail, start: at + inserted.length, end: at + inserted.length };
}

/** A LoRA's tag in a prompt: `<lora:NAME:WEIGHT>`. */
export function loraTag(name: string, weight: number): string {
  return `<lora:${name}:${Number(weight.toPrecision(12))}>`;
}
