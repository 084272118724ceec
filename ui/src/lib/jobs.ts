// Job and queue state, updated from worker events (pure functions; the Svelte store wraps them).

import type { ModelsView, ModelView, QueueItem, WorkerEvent } from "./types";

/** Progress of one job as the page shows it. */
export interface JobState {
  status: "queued" | "running" | "done" | "cancelled" | "failed";
  index: number;
  total: number;
  itPerSec: number;
  etaSecs: number;
  seed?: number;
  id?: number;
  elapsedMs?: number;
  group?: number | null;
  message?: string;
}

/** Everything the worker has told the page. */
export interface JobsState {
  queue: QueueItem[];
  jobs: Record<number, JobState>;
  current: number | null;
  lastFinished: number | null;
  model: ModelView | null;
  modelLoading: string | null;
  /** The stage a loading model is in, and the share of its weights read. */
  modelStage: { stage: string; percent: number } | null;
  modelError: string | null;
  /** Whether the page has heard where the model stands (from the app or an event). */
  modelKnown: boolean;
}

/** The state before any event. */
export function emptyJobs(): JobsState {
  return {
    queue: [],
    jobs: {},
    current: null,
    lastFinished: null,
    model: null,
    modelLoading: null,
    modelStage: null,
    modelError: null,
    modelKnown: false,
  };
}

function job(s: JobsState, id: number): JobState {
  return s.jobs[id] ?? { status: "queued", index: 0, total: 0, itPerSec: 0, etaSecs: 0 };
}

/** Applies one worker event; returns a new state. */
export function applyEvent(s: JobsState, e: WorkerEvent): JobsState {
  const put = (id: number, patch: Partial<JobState>): JobsState => ({
    ...s,
    jobs: { ...s.jobs, [id]: { ...job(s, id), ...patch } },
  });
  switch (e.kind) {
    case "queue": {
      const jobs = { ...s.jobs };
      for (const q of e.items) if (!jobs[q.job]) jobs[q.job] = { ...job(s, q.job), seed: q.seed };
      return { ...s, queue: e.items, jobs };
    }
    case "modelLoading":
      return { ...s, modelLoading: e.path, modelStage: null, modelError: null, modelKnown: true };
    case "modelProgress":
      return { ...s, modelStage: { stage: e.stage, percent: e.percent } };
    case "modelLoaded":
      return { ...s, model: e.model, modelLoading: null, modelStage: null, modelError: null, modelKnown: true };
    case "modelFailed":
      return { ...s, model: null, modelLoading: null, modelStage: null, modelError: e.message, modelKnown: true };
    case "started":
      return { ...put(e.job, { status: "running", total: e.total, seed: e.seed, index: 0 }), current: e.job };
    case "step":
      return {
        ...put(e.job, {
          status: "running",
          index: e.index + 1,
          total: e.total,
          itPerSec: e.itPerSec,
          etaSecs: e.etaSecs,
        }),
        current: e.job,
      };
    case "finished":
      return {
        ...put(e.job, { status: "done", id: e.id, seed: e.seed, elapsedMs: e.elapsedMs, group: e.group, etaSecs: 0 }),
        current: s.current === e.job ? null : s.current,
        lastFinished: e.job,
      };
    case "cancelled":
      return { ...put(e.job, { status: "cancelled" }), current: s.current === e.job ? null : s.current };
    case "failed":
      return {
        ...put(e.job, { status: "failed", message: e.message }),
        current: s.current === e.job ? null : s.current,
      };
  }
}

/**
 * Fills in the model state from the `models` command's answer at start. Events that came in
 * since the page subscribed are newer, so the answer only counts while they said nothing about
 * the model (the app starts loading before the page listens, so early events are missed).
 */
export function withModels(s: JobsState, m: Pick<ModelsView, "current" | "loading" | "error">): JobsState {
  if (s.modelKnown) return s;
  const known = { ...s, modelKnown: true };
  if (m.current) return { ...known, model: m.current };
  if (m.loading) {
    const stage = m.loading.stage === null ? null : { stage: m.loading.stage, percent: m.loading.percent };
    return { ...known, modelLoading: m.loading.path, modelStage: stage };
  }
  return { ...known, modelError: m.error };
}

/**
 * What the main area shows: nothing yet (before the app said where the model stands), the
 * model loading, the "no usable model" screen, or the views.
 */
export function screen(s: Pick<JobsState, "model" | "modelLoading" | "modelKnown">): "starting" | "loading" | "no-model" | "ready" {
  if (s.model) return "ready";
  if (s.modelLoading !== null) return "loading";
  return s.modelKnown ? "no-model" : "starting";
}

/** Jobs waiting (not running). */
export function pending(s: JobsState): QueueItem[] {
  return s.queue.filter((q) => !q.running);
}

/** "Step 3/20 · 4.1 it/s · ETA 4 s" for a running job. */
export function progressText(j: JobState): string {
  if (j.status !== "running" || j.total === 0) return "";
  const rate = j.itPerSec > 0 ? ` · ${j.itPerSec.toFixed(j.itPerSec < 10 ? 1 : 0)} it/s` : "";
  const eta = j.index > 0 ? ` · ETA ${formatSecs(j.etaSecs)}` : "";
  return `Step ${j.index}/${j.total}${rate}${eta}`;
}

/** "Loading UNet… 12%" for a loading model. */
export function loadingText(stage: { stage: string; percent: number } | null): string {
  if (!stage) return "Starting…";
  return stage.stage === "config" ? "Reading the config…" : `Loading ${stage.stage}… ${stage.percent}%`;
}

/** Bytes as "3.4 GB", "320 MB" or "12 kB". */
export function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)} GB`;
  if (n >= 1e6) return `${Math.round(n / 1e6)} MB`;
  return `${Math.max(1, Math.round(n / 1e3))} kB`;
}

/** Seconds as "0.4 s", "12 s" or "2 min 5 s". */
export function formatSecs(secs: number): string {
  if (!Number.isFinite(secs) || secs < 0) return "?";
  if (secs < 10) return `${secs.toFixed(1)} s`;
  if (secs < 60) return `${Math.round(secs)} s`;
  const m = Math.floor(secs / 60);
  return `${m} min ${Math.round(secs - m * 60)} s`;
}
