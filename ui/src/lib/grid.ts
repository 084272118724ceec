// Which rows of a virtualised thumbnail grid to render.

/** The slice of items to render and where to put it. */
export interface Window {
  start: number;
  end: number;
  offsetTop: number;
  totalHeight: number;
  columns: number;
}

/** Columns that fit `width` with cells of `cell` px (at least one). */
export function columnsFor(width: number, cell: number, gap = 0): number {
  return Math.max(1, Math.floor((width + gap) / (cell + gap)));
}

/** Items [start, end) visible at `scrollTop` in a viewport of `height`, plus `overscan` rows each side. */
export function visibleWindow(
  count: number,
  columns: number,
  rowHeight: number,
  scrollTop: number,
  height: number,
  overscan = 2,
): Window {
  const rows = Math.ceil(count / columns);
  const first = Math.max(0, Math.floor(scrollTop / rowHeight) - overscan);
  const last = Math.min(rows, Math.ceil((scrollTop + height) / rowHeight) + overscan);
  return {
    start: Math.min(count, first * columns),
    end: Math.min(count, Math.max(first, last) * columns),
    offsetTop: first * rowHeight,
    totalHeight: rows * rowHeight,
    columns,
  };
}
