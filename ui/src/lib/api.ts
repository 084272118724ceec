// Calls into the app and the shared, reactive job state.

import { Channel, invoke } from "@tauri-apps/api/core";
import { writable } from "svelte/store";
import { applyEvent, emptyJobs, type JobsState } from "./jobs";
import type {
  Comparison,
  Cursor,
  Emphasis,
  GenerateForm,
  Generation,
  LoraEntry,
  ModelsView,
  Page,
  Queued,
  Request,
  SourceInfo,
  Tables,
  TokenCountView,
  Variant,
  WorkerEvent,
} from "./types";

/** Everything the worker has reported so far. */
export const jobs = writable<JobsState>(emptyJobs());

/** Latest preview per job: a blob URL and how many previews have arrived. */
export const previews = writable<Record<number, { url: string; count: number }>>({});

/** Turns whatever a command threw into a sentence. */
export function message(e: unknown): string {
  if (typeof e === "string") return e;
  if (e instanceof Error) return e.message;
  return JSON.stringify(e);
}

/** Registers the event and preview channels; call once at start. */
export async function subscribe(): Promise<void> {
  const events = new Channel<WorkerEvent>();
  events.onmessage = (e) => jobs.update((s) => applyEvent(s, e));
  const raw = new Channel<ArrayBuffer>();
  raw.onmessage = (buf) => {
    const bytes = buf instanceof ArrayBuffer ? buf : new Uint8Array(buf as unknown as number[]).buffer;
    const view = new DataView(bytes);
    const job = view.getUint32(0, true);
    const url = URL.createObjectURL(new Blob([bytes.slice(8)], { type: "image/png" }));
    previews.update((p) => {
      const old = p[job];
      if (old) URL.revokeObjectURL(old.url);
      return { ...p, [job]: { url, count: (old?.count ?? 0) + 1 } };
    });
  };
  await invoke("subscribe", { events, previews: raw });
}

/** The page's URL of a gallery image (`thumb` for the small one). */
export function imageUrl(id: number, kind: "image" | "thumb" = "image"): string {
  const base = navigator.userAgent.includes("Windows") ? "http://sumi.localhost" : "sumi://localhost";
  return `${base}/${kind}/${id}`;
}

/** Typed wrappers of the app's commands. */
export const api = {
  tables: () => invoke<Tables>("tables"),
  models: () => invoke<ModelsView>("models"),
  loadModel: (path: string) => invoke<void>("load_model", { path }),
  generate: (form: GenerateForm) => invoke<Queued[]>("generate", { form }),
  compare: (form: GenerateForm, variants: Variant[]) => invoke<Comparison>("compare", { form, variants }),
  cancel: () => invoke<void>("cancel"),
  clearQueue: () => invoke<number>("clear_queue"),
  list: (query: string, favouritesOnly: boolean, cursor: Cursor | null, limit = 200) =>
    invoke<Page>("gallery_list", { query, favouritesOnly, cursor, limit }),
  get: (id: number) => invoke<Generation>("gallery_get", { id }),
  request: (id: number) => invoke<Request>("gallery_request", { id }),
  setFavourite: (id: number, favourite: boolean) => invoke<void>("set_favourite", { id, favourite }),
  remove: (id: number) => invoke<void>("delete_image", { id }),
  rerun: (id: number) => invoke<Queued>("rerun", { id }),
  samePixels: (a: number, b: number) => invoke<boolean>("same_pixels", { a, b }),
  importImages: (paths: string[]) => invoke<[number, string[]]>("import_images", { paths }),
  group: (group: number) => invoke<Generation[]>("comparison_group", { group }),
  exportGrid: (group: number) => invoke<string>("export_grid", { group }),
  showInFolder: (id: number | null) => invoke<void>("show_in_folder", { id }),
  loras: () => invoke<LoraEntry[]>("loras"),
  tokenCount: (text: string, positive: boolean, emphasis: Emphasis, clipSkip: number | null, steps: number) =>
    invoke<TokenCountView | null>("token_count", { text, positive, emphasis, clipSkip, steps }),
  addSource: (data: Uint8Array) => invoke<SourceInfo>("add_source", { data: Array.from(data) }),
  sourceFromGallery: (id: number) => invoke<SourceInfo>("source_from_gallery", { id }),
};
