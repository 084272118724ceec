import { describe, expect, it } from "vitest";
import {
  applyEvent,
  emptyJobs,
  formatBytes,
  formatSecs,
  loadingText,
  pending,
  progressText,
  screen,
  withModels,
} from "./jobs";
import type { ModelView, QueueItem, WorkerEvent } from "./types";

const item = (job: number, running = false): QueueItem => ({
  job,
  prompt: "p",
  seed: 10 + job,
  sampler: "Euler",
  schedule: "Normal",
  steps: 4,
  group: null,
  running,
});

function run(events: WorkerEvent[]) {
  return events.reduce(applyEvent, emptyJobs());
}

describe("jobs", () => {
  it("follows a job from queue to finish", () => {
    const s = run([
      { kind: "queue", items: [item(1), item(2)] },
      { kind: "queue", items: [item(1, true), item(2)] },
      { kind: "started", job: 1, seed: 11, total: 4 },
      { kind: "step", job: 1, index: 0, total: 4, itPerSec: 2, etaSecs: 1.5 },
    ]);
    expect(s.current).toBe(1);
    expect(pending(s).map((q) => q.job)).toEqual([2]);
    expect(progressText(s.jobs[1])).toBe("Step 1/4 · 2.0 it/s · ETA 1.5 s");
    const done = applyEvent(s, { kind: "finished", job: 1, id: 7, seed: 11, elapsedMs: 900, group: null });
    expect(done.current).toBeNull();
    expect(done.lastFinished).toBe(1);
    expect(done.jobs[1]).toMatchObject({ status: "done", id: 7, seed: 11 });
    expect(progressText(done.jobs[1])).toBe("");
    expect(done.jobs[2].status).toBe("queued");
  });

  it("records cancel and failure with the message", () => {
    const s = run([
      { kind: "started", job: 3, seed: 1, total: 9 },
      { kind: "cancelled", job: 3 },
      { kind: "failed", job: 4, message: "width 7 must be a positive multiple of 8" },
    ]);
    expect(s.jobs[3].status).toBe("cancelled");
    expect(s.current).toBeNull();
    expect(s.jobs[4]).toMatchObject({ status: "failed", message: "width 7 must be a positive multiple of 8" });
  });

  it("tracks the model", () => {
    let s = run([{ kind: "modelLoading", path: "/m" }]);
    expect(s.modelLoading).toBe("/m");
    s = applyEvent(s, { kind: "modelFailed", message: "no unet" });
    expect(s).toMatchObject({ modelLoading: null, modelError: "no unet", model: null });
  });

  it("does not mutate the old state", () => {
    const a = emptyJobs();
    const b = applyEvent(a, { kind: "started", job: 1, seed: 1, total: 2 });
    expect(a.jobs).toEqual({});
    expect(b.jobs[1].status).toBe("running");
  });

  it("formats durations", () => {
    expect(formatSecs(0.42)).toBe("0.4 s");
    expect(formatSecs(42.4)).toBe("42 s");
    expect(formatSecs(125)).toBe("2 min 5 s");
    expect(formatSecs(Number.POSITIVE_INFINITY)).toBe("?");
  });
});

describe("model loading", () => {
  it("tracks stages and clears them when done or failed", () => {
    const s = run([
      { kind: "modelLoading", path: "/m" },
      { kind: "modelProgress", stage: "config", percent: 0 },
      { kind: "modelProgress", stage: "UNet", percent: 12 },
    ]);
    expect(s.modelStage).toEqual({ stage: "UNet", percent: 12 });
    expect(loadingText(s.modelStage)).toBe("Loading UNet… 12%");
    expect(loadingText({ stage: "config", percent: 0 })).toBe("Reading the config…");
    const failed = applyEvent(s, { kind: "modelFailed", message: "bad" });
    expect(failed.modelStage).toBeNull();
    expect(failed.modelLoading).toBeNull();
    expect(failed.modelError).toBe("bad");
  });

  it("formats sizes", () => {
    expect(formatBytes(3_400_000_000)).toBe("3.4 GB");
    expect(formatBytes(320_400_000)).toBe("320 MB");
    expect(formatBytes(12_000)).toBe("12 kB");
  });
});

const demo: ModelView = {
  name: "demo-model",
  hash: null,
  path: "/usr/lib/Sumi/demo-model",
  family: "sd1",
  familyName: "SD 1.x",
  turbo: false,
  downscale: 8,
  steps: 20,
  cfg: 7,
  sampler: "DPM++ 2M",
  schedule: "Karras",
  size: 32,
  clipSkip: null,
  guidance: null,
};

describe("the model at start", () => {
  it("shows nothing until the app says where the model stands", () => {
    expect(screen(emptyJobs())).toBe("starting");
  });

  it("shows the demo model loading, with its stage, when the app started loading it before the page listened", () => {
    const s = withModels(emptyJobs(), {
      current: null,
      loading: { path: demo.path, stage: "UNet", percent: 40 },
      error: null,
    });
    expect(screen(s)).toBe("loading");
    expect(s.modelLoading).toBe(demo.path);
    expect(loadingText(s.modelStage)).toBe("Loading UNet… 40%");
    // The rest of the load arrives as events.
    const later = applyEvent(s, { kind: "modelProgress", stage: "VAE", percent: 90 });
    expect(later.modelStage).toEqual({ stage: "VAE", percent: 90 });
    const ready = applyEvent(later, { kind: "modelLoaded", model: demo });
    expect(screen(ready)).toBe("ready");
  });

  it("shows a load that has not started yet as starting", () => {
    const s = withModels(emptyJobs(), { current: null, loading: { path: "/m", stage: null, percent: 0 }, error: null });
    expect(screen(s)).toBe("loading");
    expect(loadingText(s.modelStage)).toBe("Starting…");
  });

  it("goes straight to the views when the model is already loaded", () => {
    const s = withModels(emptyJobs(), { current: demo, loading: null, error: null });
    expect(screen(s)).toBe("ready");
    expect(s.model?.path).toBe(demo.path);
  });

  it("shows the no-model screen, with the reason, when nothing could be loaded", () => {
    const failed = withModels(emptyJobs(), { current: null, loading: null, error: "Could not load the model in /d" });
    expect(screen(failed)).toBe("no-model");
    expect(failed.modelError).toBe("Could not load the model in /d");
    const none = withModels(emptyJobs(), { current: null, loading: null, error: null });
    expect(screen(none)).toBe("no-model");
  });

  it("trusts events that came in after subscribing over the app's earlier answer", () => {
    const loaded = applyEvent(emptyJobs(), { kind: "modelLoaded", model: demo });
    const s = withModels(loaded, { current: null, loading: { path: demo.path, stage: "VAE", percent: 99 }, error: null });
    expect(screen(s)).toBe("ready");
    const loading = run([{ kind: "modelLoading", path: "/other" }]);
    expect(withModels(loading, { current: demo, loading: null, error: null }).modelLoading).toBe("/other");
  });
});
