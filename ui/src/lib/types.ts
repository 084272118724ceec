// The shapes shared with the app, generated from the Rust types into bindings.ts
// (regenerate with `SUMI_BLESS=1 cargo test -p sumi-app bindings`, never by hand).

export type {
  Comparison,
  ComparisonSlot,
  Cursor,
  Emphasis,
  GenerateForm,
  Generation,
  GenerationMeta,
  GenerationParams,
  Limits,
  LoadingView,
  ModelEntry,
  ModelsView,
  ModelView,
  NamedHash,
  NoiseSource,
  Page,
  Quantize,
  QueueItem,
  Queued,
  Request,
  SamplerView,
  Tables,
  Variant,
  WorkerEvent,
} from "./bindings";
