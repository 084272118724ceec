// Shapes shared with the Rust side (see src-tauri/src/worker.rs and commands.rs).

/** A loaded model and its defaults. */
export interface ModelView {
  name: string;
  /** A1111's short hash, for a single-file checkpoint. */
  hash?: string | null;
  path: string;
  family: string;
  familyName: string;
  turbo: boolean;
  downscale: number;
  steps: number;
  cfg: number;
  sampler: string;
  schedule: string;
  size: number;
}

/** A model the picker offers. */
export interface ModelEntry {
  name: string;
  path: string;
  family: string | null;
  size: number;
  source: string;
  unusable: string | null;
}

/** What the `models` command returns. */
export interface ModelsView {
  current: ModelView | null;
  /** The load that is running (stage null until it starts) or waiting next. */
  loading: { path: string; stage: string | null; percent: number } | null;
  /** Why the last load failed, if it did. */
  error: string | null;
  known: string[];
  available: ModelEntry[];
}

/** One entry of the visible queue. */
export interface QueueItem {
  job: number;
  prompt: string;
  seed: number;
  sampler: string;
  schedule: string;
  steps: number;
  group: number | null;
  running: boolean;
}

/** What the worker reports. */
export type WorkerEvent =
  | { kind: "queue"; items: QueueItem[] }
  | { kind: "modelLoading"; path: string }
  | { kind: "modelProgress"; stage: string; percent: number }
  | { kind: "modelLoaded"; model: ModelView }
  | { kind: "modelFailed"; message: string }
  | { kind: "started"; job: number; seed: number; total: number }
  | { kind: "step"; job: number; index: number; total: number; itPerSec: number; etaSecs: number }
  | { kind: "finished"; job: number; id: number; seed: number; elapsedMs: number; group: number | null }
  | { kind: "cancelled"; job: number }
  | { kind: "failed"; job: number; message: string };

/** A gallery record's parameters. */
export interface GenerationParams {
  prompt: string;
  negative_prompt: string;
  seed: number;
  steps: number;
  cfg: number;
  sampler: string;
  schedule: string;
  width: number;
  height: number;
  model_name: string;
  model_hash: string | null;
  noise_source: string;
}

/** A gallery record. */
export interface Generation {
  id: number;
  params: GenerationParams;
  meta: {
    engine_version: string;
    device: string;
    dtype: string;
    duration_ms: number;
    comparison: { group: number; position: number } | null;
  };
  created_at: number;
  favourite: boolean;
  image_file: string;
  thumb_file: string;
}

/** A gallery page cursor. */
export interface Cursor {
  created_at: number;
  id: number;
}

/** One page of gallery records. */
export interface Page {
  items: Generation[];
  next: Cursor | null;
}

/** The engine's tables. */
export interface Tables {
  samplers: { name: string; id: string; evals: number; stochastic: boolean }[];
  schedules: string[];
}
