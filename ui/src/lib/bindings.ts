// Generated from the Rust types by ts-rs: do not edit. To regenerate:
// SUMI_BLESS=1 cargo test -p sumi-app bindings

export type Request = { 
/**
 * What to draw.
 */
prompt: string, 
/**
 * What to steer away from (empty: none).
 */
negative_prompt: string, 
/**
 * Seed of the noise source.
 */
seed: number, 
/**
 * Sampler steps.
 */
steps: number, 
/**
 * Classifier-free guidance scale (1 disables guidance).
 */
cfg: number, 
/**
 * Distilled guidance scale of guidance-distilled models (Flux dev; Forge's "Distilled CFG
 * Scale"); `None`: the model's default. Other models ignore it.
 */
guidance: number | null, 
/**
 * T5 tokens per prompt for models that encode with T5 (Flux); `None`: the model's (dev
 * 512, schnell 256).
 */
max_sequence_length: number | null, 
/**
 * Sampler name (A1111 display name or ComfyUI id).
 */
sampler: string, 
/**
 * Schedule name.
 */
schedule: string, 
/**
 * Image width in pixels.
 */
width: number, 
/**
 * Image height in pixels.
 */
height: number, 
/**
 * Where the noise comes from.
 */
noise: NoiseSource, 
/**
 * A1111's eta noise seed delta: the step noise comes from `seed + ensd` (0: off).
 */
ensd: number, 
/**
 * A1111's variation seed, mixed into the starting noise by `variation_strength`.
 */
variation_seed: number | null, 
/**
 * How far the starting noise moves towards the variation seed's, 0 to 1.
 */
variation_strength: number, 
/**
 * How colours become 8-bit values (A1111 and ComfyUI images truncate).
 */
quantize: Quantize, 
/**
 * Clip skip: 1 is the text encoder's last layer, 2 the one before, ... (A1111 applies it
 * to SD 1.x only; ComfyUI's rules to any model). `None` is the default of the rules.
 */
clip_skip: number | null, 
/**
 * How prompt weights are read and applied.
 */
emphasis: Emphasis, 
/**
 * Start from a picture (img2img, inpainting, outpainting) instead of pure noise.
 */
img2img: Img2Img | null, 
/**
 * A second pass at a larger size over the first pass's result.
 */
hires: Hires | null, };

export type Img2Img = { 
/**
 * SHA-256 (lowercase hex) of the init picture's file bytes (see [`source_hash`]).
 */
init_image: string, 
/**
 * Denoising strength, 0 (keep) to 1 (repaint fully).
 */
strength: number, 
/**
 * How a picture of another size is fitted to the requested size.
 */
resize_mode: ResizeMode, 
/**
 * A1111's "img2img fix steps": run exactly `steps` steps of a longer schedule.
 */
fixed_steps: boolean, 
/**
 * SHA-256 of the mask's file bytes (white repaints); `None`: plain img2img.
 */
mask: string | null, 
/**
 * Mask blur in pixels (A1111's "Mask blur").
 */
mask_blur: number, 
/**
 * Repaint the black part of the mask instead of the white.
 */
invert_mask: boolean, 
/**
 * What the masked area starts from.
 */
masked_content: MaskedContent, 
/**
 * Repaint only the masked area (plus `masked_padding`) at the requested size.
 */
only_masked: boolean, 
/**
 * Pixels around the mask for `only_masked` (A1111's "Masked area padding").
 */
masked_padding: number, 
/**
 * Pixels added on each side before inpainting the new area (outpainting).
 */
outpaint: Extend | null, };

export type Hires = { 
/**
 * Upscale factor (A1111's "Upscale by"); used when `width` and `height` are both 0.
 */
scale: number, 
/**
 * Target width (A1111's "Resize width to"; 0 keeps the aspect ratio or uses `scale`).
 */
width: number, 
/**
 * Target height (0 keeps the aspect ratio or uses `scale`).
 */
height: number, 
/**
 * A1111 upscaler name: `Latent`, `Latent (antialiased)`, `Latent (bicubic)`,
 * `Latent (bicubic antialiased)`, `Latent (nearest)`, `Latent (nearest-exact)`, `Lanczos`,
 * `Nearest`.
 */
upscaler: string, 
/**
 * Steps of the second pass (0: the first pass's steps).
 */
steps: number, 
/**
 * Denoising strength of the second pass.
 */
strength: number, 
/**
 * Sampler of the second pass (empty: the first pass's).
 */
sampler: string, 
/**
 * Schedule of the second pass (empty: the first pass's).
 */
schedule: string, 
/**
 * Prompt of the second pass (empty: the first pass's).
 */
prompt: string, 
/**
 * Negative prompt of the second pass (empty: the first pass's).
 */
negative_prompt: string, };

export type Extend = { 
/**
 * Added on the left.
 */
left: number, 
/**
 * Added on the right.
 */
right: number, 
/**
 * Added on the top.
 */
top: number, 
/**
 * Added on the bottom.
 */
bottom: number, };

export type ResizeMode = "just" | "crop_and_resize" | "resize_and_fill";

export type MaskedContent = "fill" | "original" | "latent_noise" | "latent_nothing";

export type SourceInfo = { 
/**
 * SHA-256 of the picture's bytes (`Img2Img::init_image` / `mask`).
 */
name: string, 
/**
 * Width in pixels.
 */
width: number, 
/**
 * Height in pixels.
 */
height: number, 
/**
 * The gallery image it is, if it is one.
 */
made_from: number | null, };

export type NoiseSource = "cpu" | "nv" | "comfy-cpu" | "comfy-nv";

export type Emphasis = "original" | "no-norm" | "ignore" | "none" | "comfy";

export type Quantize = "round" | "truncate";

export type GenerateForm = { 
/**
 * The request; its seed counts only when `random_seed` is false.
 */
request: Request, 
/**
 * Draw a random seed instead of the request's.
 */
randomSeed: boolean, 
/**
 * How many images; their seeds count up from the first.
 */
batch: number, 
/**
 * The gallery image an img2img request's init picture is (for the record's lineage).
 */
madeFrom: number | null, };

export type Variant = { 
/**
 * Sampler name.
 */
sampler: string, 
/**
 * Schedule name.
 */
schedule: string, 
/**
 * Steps, when this cell changes them.
 */
steps: number | null, 
/**
 * CFG scale, when this cell changes it.
 */
cfg: number | null, 
/**
 * Denoising strength, when this cell changes it (the request must be img2img).
 */
strength?: number, 
/**
 * The weight of one LoRA the prompt names with a `<lora:NAME:w>` tag, when this cell
 * changes it.
 */
lora?: LoraWeight, };

export type LoraWeight = { 
/**
 * The name in the prompt's `<lora:NAME:w>` tag.
 */
name: string, 
/**
 * The weight that replaces the tag's (text encoder and UNet alike).
 */
weight: number, };

export type Queued = { job: number, seed: number, 
/**
 * What the page should know about the job before it runs: the model a re-run loads, or
 * why its pixels will differ.
 */
note?: string, };

export type Comparison = { group: number, jobs: Array<Queued>, };

export type Tables = { 
/**
 * Samplers in the engine's order.
 */
samplers: Array<SamplerView>, 
/**
 * Schedule names in the engine's order.
 */
schedules: Array<string>, 
/**
 * The limits every request keeps.
 */
limits: Limits, };

export type SamplerView = { 
/**
 * A1111's display name.
 */
name: string, 
/**
 * ComfyUI's id.
 */
id: string, 
/**
 * Model calls per step.
 */
evals: number, 
/**
 * Whether it draws fresh noise at each step.
 */
stochastic: boolean, };

export type Limits = { 
/**
 * Largest step count.
 */
maxSteps: number, 
/**
 * Largest width or height in pixels.
 */
maxSize: number, 
/**
 * Largest CFG scale.
 */
maxCfg: number, 
/**
 * Most images in one comparison.
 */
maxCompareCells: number, 
/**
 * Most images one press of Generate queues.
 */
maxBatch: number, };

export type WorkerEvent = { "kind": "queue", 
/**
 * Running task first (if any), then the pending ones in order.
 */
items: Array<QueueItem>, } | { "kind": "modelLoading", 
/**
 * Its folder.
 */
path: string, } | { "kind": "modelProgress", 
/**
 * "config", "text encoder", "UNet" or "VAE".
 */
stage: string, 
/**
 * Share of the weights read so far, 0 to 100.
 */
percent: number, } | { "kind": "modelLoaded", 
/**
 * What it is and its defaults.
 */
model: ModelView, } | { "kind": "modelFailed", 
/**
 * Why, in words.
 */
message: string, } | { "kind": "started", 
/**
 * The job.
 */
job: number, 
/**
 * Seed in use.
 */
seed: number, 
/**
 * Steps it will take.
 */
total: number, } | { "kind": "step", 
/**
 * The job.
 */
job: number, 
/**
 * Zero-based step.
 */
index: number, 
/**
 * Steps in the run.
 */
total: number, 
/**
 * Steps per second so far.
 */
itPerSec: number, 
/**
 * Estimated seconds left.
 */
etaSecs: number, } | { "kind": "finished", 
/**
 * The job.
 */
job: number, 
/**
 * Gallery id of the new image.
 */
id: number, 
/**
 * Seed used.
 */
seed: number, 
/**
 * Wall time in milliseconds.
 */
elapsedMs: number, 
/**
 * Comparison group, when the job was part of one.
 */
group: number | null, } | { "kind": "cancelled", 
/**
 * The job.
 */
job: number, } | { "kind": "failed", 
/**
 * The job.
 */
job: number, 
/**
 * Why, in words.
 */
message: string, };

export type QueueItem = { 
/**
 * Job id.
 */
job: number, 
/**
 * Prompt (or the model path for a load).
 */
prompt: string, 
/**
 * Seed.
 */
seed: number, 
/**
 * Sampler.
 */
sampler: string, 
/**
 * Schedule.
 */
schedule: string, 
/**
 * Steps.
 */
steps: number, 
/**
 * Comparison group, if any.
 */
group: number | null, 
/**
 * Whether it is running now.
 */
running: boolean, };

export type ModelView = { 
/**
 * Display name.
 */
name: string, 
/**
 * A1111's short hash, for a single-file checkpoint.
 */
hash: string | null, 
/**
 * Folder.
 */
path: string, 
/**
 * `sd1`, `sd2`, `sdxl` or `flux`.
 */
family: string, 
/**
 * Human-readable family.
 */
familyName: string, 
/**
 * Few-step distilled model.
 */
turbo: boolean, 
/**
 * Sizes must be multiples of this.
 */
downscale: number, 
/**
 * Default steps.
 */
steps: number, 
/**
 * Default CFG.
 */
cfg: number, 
/**
 * Default sampler.
 */
sampler: string, 
/**
 * Default schedule.
 */
schedule: string, 
/**
 * Default width and height.
 */
size: number, 
/**
 * Clip skip the model recommends in its `sumi.json` (null: the prompt rules' default).
 */
clipSkip: number | null, 
/**
 * Default distilled guidance scale, for models that take one (Flux dev); null otherwise.
 */
guidance: number | null, };

export type LoadingView = { 
/**
 * The folder or file being loaded.
 */
path: string, 
/**
 * The stage it reached ("config", "text encoder", "UNet", "VAE"); none before it starts.
 */
stage: string | null, 
/**
 * Share of the weights read so far, 0 to 100.
 */
percent: number, };

export type ModelEntry = { 
/**
 * Display name.
 */
name: string, 
/**
 * File or folder to load.
 */
path: string, 
/**
 * Family in words, when known.
 */
family: string | null, 
/**
 * Bytes on disk.
 */
size: number, 
/**
 * Where it came from: built-in, folder, a1111, comfyui, hf-cache or added.
 */
source: string, 
/**
 * Why it cannot be loaded, if it cannot.
 */
unusable: string | null, };

export type ModelsView = { current: ModelView | null, loading: LoadingView | null, 
/**
 * Why the last load failed, if it did.
 */
error: string | null, known: Array<string>, available: Array<ModelEntry>, };

export type Generation = { 
/**
 * Row id, unique within this gallery.
 */
id: number, 
/**
 * The request that made the image.
 */
params: GenerationParams, 
/**
 * How it ran.
 */
meta: GenerationMeta, 
/**
 * When it was made, in milliseconds since the Unix epoch.
 */
created_at: number, 
/**
 * Whether the user marked it as a favourite.
 */
favourite: boolean, 
/**
 * File name of the PNG inside the gallery's `images/` folder.
 */
image_file: string, 
/**
 * File name of the thumbnail inside the gallery's `thumbs/` folder.
 */
thumb_file: string, };

export type GenerationParams = { 
/**
 * The positive prompt.
 */
prompt: string, 
/**
 * The negative prompt (empty when none).
 */
negative_prompt: string, 
/**
 * The noise seed.
 */
seed: number, 
/**
 * Number of sampling steps.
 */
steps: number, 
/**
 * Classifier-free guidance scale.
 */
cfg: number, 
/**
 * Distilled guidance scale of guidance-distilled models (Flux dev; Forge's "Distilled CFG
 * Scale"); `None` for other models.
 */
guidance: number | null, 
/**
 * T5 tokens per prompt when the request set them (Flux); `None`: the model's default.
 */
max_sequence_length: number | null, 
/**
 * Sampler, by its A1111 display name (e.g. "DPM++ 2M").
 */
sampler: string, 
/**
 * Schedule type, by its A1111 display name (e.g. "Karras").
 */
schedule: string, 
/**
 * Image width in pixels.
 */
width: number, 
/**
 * Image height in pixels.
 */
height: number, 
/**
 * Model name as shown to the user.
 */
model_name: string, 
/**
 * A1111 short model hash: the first 10 hex digits of the checkpoint's SHA-256.
 */
model_hash: string | null, 
/**
 * A separate VAE, by the name A1111's `VAE` gives it (its file name), when one was used.
 */
vae_name: string | null, 
/**
 * A1111's short hash of that VAE file (`VAE hash`: 10 hex digits of its SHA-256).
 */
vae_hash: string | null, 
/**
 * Forge's additional modules (`Module 1`, `Module 2`, ...): the VAE and text-encoder files
 * a model ran with apart from its own file, by their names without extension (for Flux
 * e.g. `ae`, `clip_l`, `t5xxl_fp16`), which a re-run looks for beside the model.
 */
modules: Array<string>, 
/**
 * Which noise source made the noise: "cpu", "nv", "comfy-cpu" or "comfy-nv".
 */
noise_source: string, 
/**
 * A1111's eta noise seed delta (0: none).
 */
ensd: number, 
/**
 * A1111's variation seed, when one was used.
 */
variation_seed: number | null, 
/**
 * How far towards the variation seed's noise, 0 to 1.
 */
variation_strength: number, 
/**
 * CLIP layers skipped from the end (1: none; A1111's "Clip skip").
 */
clip_skip: number, 
/**
 * How prompt weights were applied: "original" (A1111's default), "no-norm", "ignore",
 * "none" or "comfy".
 */
emphasis: string, 
/**
 * How colours became 8-bit values: "round" (Sumi, diffusers) or "truncate" (A1111,
 * ComfyUI).
 */
quantize: string, 
/**
 * Textual-inversion embeddings the prompts used, as A1111's `TI hashes` lists them.
 */
ti_hashes: Array<NamedHash>, 
/**
 * LoRAs applied, as A1111's `Lora hashes` lists them (the name as the prompt's tag gives it).
 */
lora_hashes: Array<NamedHash>, 
/**
 * What an image-to-image generation started from and how (A1111's img2img settings).
 */
img2img: SourceParams | null, 
/**
 * The hires fix pass, if any.
 */
hires: HiresParams | null, };

export type NamedHash = { 
/**
 * The name the prompt uses (A1111 drops `:` and `,` from it).
 */
name: string, 
/**
 * The short hash: 12 hex digits for LoRAs and embeddings.
 */
hash: string, };

export type SourceParams = { 
/**
 * SHA-256 of the init picture's bytes, kept in the gallery's `sources/` folder under that
 * name; empty for an imported image whose source Sumi does not have.
 */
init_image: string, 
/**
 * The gallery image the init picture is, when it is one.
 */
made_from: number | null, 
/**
 * A1111's `Denoising strength`.
 */
strength: number, 
/**
 * `just`, `crop_and_resize` or `resize_and_fill`.
 */
resize_mode: string, 
/**
 * A1111's "img2img fix steps".
 */
fixed_steps: boolean, 
/**
 * SHA-256 of the mask's bytes (in `sources/`), if inpainting.
 */
mask: string | null, 
/**
 * A1111's `Mask blur`.
 */
mask_blur: number, 
/**
 * Whether the mask was inverted.
 */
invert_mask: boolean, 
/**
 * `fill`, `original`, `latent_noise` or `latent_nothing`.
 */
masked_content: string, 
/**
 * A1111's `Inpaint area: Only masked`.
 */
only_masked: boolean, 
/**
 * A1111's `Masked area padding`.
 */
masked_padding: number, 
/**
 * Outpainting: pixels added left, right, top, bottom.
 */
outpaint: [number, number, number, number] | null, };

export type HiresParams = { 
/**
 * A1111's `Hires upscale` (used when width and height are 0).
 */
scale: number, 
/**
 * A1111's `Hires resize` width (0: from the height or the scale).
 */
width: number, 
/**
 * `Hires resize` height.
 */
height: number, 
/**
 * A1111's `Hires upscaler` name.
 */
upscaler: string, 
/**
 * A1111's `Hires steps` (0: the first pass's).
 */
steps: number, 
/**
 * The second pass's `Denoising strength`.
 */
strength: number, 
/**
 * `Hires sampler` (empty: the first pass's).
 */
sampler: string, 
/**
 * `Hires schedule type` (empty: the first pass's).
 */
schedule: string, 
/**
 * `Hires prompt` (empty: the first pass's).
 */
prompt: string, 
/**
 * `Hires negative prompt` (empty: the first pass's).
 */
negative_prompt: string, };

export type GenerationMeta = { 
/**
 * Version of the engine that made the image.
 */
engine_version: string, 
/**
 * Device it ran on (e.g. "cpu", "cuda:0").
 */
device: string, 
/**
 * Tensor data type it ran in (e.g. "f32").
 */
dtype: string, 
/**
 * Wall time of the generation in milliseconds.
 */
duration_ms: number, 
/**
 * Side-by-side comparison this image belongs to, if any.
 */
comparison: ComparisonSlot | null, 
/**
 * What an import found about the settings: values that could not be read (and what was
 * recorded instead), settings Sumi cannot use as they are, and parts of another tool's
 * graph it did not understand; sentences joined with "; ". `None` for images made here
 * and imports without remarks.
 */
note?: string | null, };

export type ComparisonSlot = { 
/**
 * The group id (from `Gallery::new_comparison_group` or chosen by the caller).
 */
group: number, 
/**
 * Position within the group, ascending.
 */
position: number, };

export type Cursor = { 
/**
 * `created_at` of the last item of the previous page.
 */
created_at: number, 
/**
 * `id` of the last item of the previous page.
 */
id: number, };

export type Page = { 
/**
 * The generations, newest first.
 */
items: Array<Generation>, 
/**
 * Cursor for the following page, if there may be one.
 */
next: Cursor | null, };

export type LoraEntry = { 
/**
 * The name its tag uses (the file stem).
 */
name: string, 
/**
 * The name it was trained as, when that differs.
 */
alias: string | null, 
/**
 * Its format, e.g. "kohya LoRA".
 */
format: string, 
/**
 * The family it fits, when its shapes tell.
 */
family: string | null, 
/**
 * Its largest rank.
 */
rank: number | null, 
/**
 * Bytes on disk.
 */
size: number, 
/**
 * Where it is.
 */
path: string, 
/**
 * Why Sumi cannot use it, if it cannot.
 */
unusable: string | null, };

export type TokenCountView = { 
/**
 * Tokens the longest text of the prompt takes.
 */
tokens: number, 
/**
 * What its chunks hold (75 per chunk).
 */
capacity: number, };
