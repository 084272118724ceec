#!/usr/bin/env python3
"""Runs `sumi bench` and the same measurements in diffusers, interleaved, and prints Sumi/diffusers.

Both sides use the configs `sumi bench` reports (SD1.5 shapes by default), random weights, the
same device and dtype (f32 on the CPU with the same thread count by default; `--device cuda
--dtype f16` on an NVIDIA GPU). Each round runs Sumi then diffusers in fresh processes, so the
peak resident memory of each is its own; the reported time of a component is the minimum over
all rounds and repeats (the machine may be shared, so minima are the stable statistic).

    python bench/compare_diffusers.py --sumi target/release/sumi --threads 1 --rounds 2
    python bench/compare_diffusers.py --sumi sumi --device cuda --dtype f16 --model sdxl \
        --components load,unet,vae
"""
import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

DIFFUSERS_COMPONENTS = ["load", "text", "prompt", "unet", "vae", "vae-encode", "generate",
                        "first-image"]


def run_sumi(args, components):
    cmd = [args.sumi, "bench", "--json", "--model", args.model, "--threads", str(args.threads),
           "--repeats", str(args.repeats), "--steps", str(args.steps), "--components", components,
           "--device", args.device, "--dtype", args.dtype]
    if args.size:
        cmd += ["--size", str(args.size)]
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout)


def weighted_encoder(tok, text, text_2, device):
    """What A1111 does to encode `sumi bench`'s "prompt weighted" case, with diffusers' models
    doing the work: "a photograph of an astronaut riding a horse," repeated to fill 3 chunks of 75
    tokens, each chunk as BOS + chunk + EOS + padding to 77, plus the empty negative, through the
    text encoder(s), then each token's vector scaled by its weight and the chunk's mean restored
    (the arithmetic of A1111's "Original" emphasis)."""
    import torch

    phrase = "a photograph of an astronaut riding a horse,"
    n = 1
    while len(tok(" ".join([phrase] * (n + 1)), add_special_tokens=False).input_ids) <= 225:
        n += 1
    ids = tok(" ".join([phrase] * n), add_special_tokens=False).input_ids
    bos, eos = tok.bos_token_id, tok.eos_token_id
    chunks = [ids[i:i + 75] for i in range(0, len(ids), 75)] + [[]]
    rows = [[bos] + c + [eos] * (76 - len(c)) for c in chunks]
    batch = torch.tensor(rows, device=device)
    weights = torch.full(batch.shape, 1.2, device=device)

    def encode():
        if text_2 is None:
            z = text(batch)[0]
        else:
            h1 = text(batch, output_hidden_states=True).hidden_states[-2]
            h2 = text_2(batch, output_hidden_states=True).hidden_states[-2]
            z = torch.cat([h1, h2], dim=-1)
        mean = z.mean(dim=(1, 2), keepdim=True)
        z = z * weights.unsqueeze(-1).to(z.dtype)
        return z * (mean / z.mean(dim=(1, 2), keepdim=True))

    print(f"prompt weighted: {len(chunks)} chunks of 77 tokens", file=sys.stderr)
    return encode


def prepare_diffusers(configs, folder, tokenizer_dir):
    """Builds random-weight diffusers models from the configs and saves them (not timed)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(configs["unet"])
    unet.save_pretrained(os.path.join(folder, "unet"))
    del unet
    vae = AutoencoderKL.from_config(configs["vae"])
    vae.save_pretrained(os.path.join(folder, "vae"))
    del vae
    for name in ("text_encoder", "text_encoder_2"):
        if name in configs:
            cfg = CLIPTextConfig(**configs[name])
            cls = CLIPTextModelWithProjection if "projection_dim" in configs[name] else CLIPTextModel
            cls(cfg).save_pretrained(os.path.join(folder, name))
    with open(os.path.join(folder, "tokenizer_dir"), "w") as f:
        f.write(tokenizer_dir)


def euler_pipeline(vae, text, tok, unet):
    """diffusers' SD pipeline with the Euler scheduler `sumi bench` runs ("Euler", "Normal")."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012,
                                   beta_schedule="scaled_linear", steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet,
                                   scheduler=sched, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def first_image(folder, size, steps, device, dt, sync):
    """From before `from_pretrained` of the pipeline's parts to the first decoded image (PIL) of
    one Euler generation with CFG 7; the models are dropped afterwards."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    sync()
    c, t = time.process_time(), time.perf_counter()
    load = lambda cls, name: cls.from_pretrained(os.path.join(folder, name), torch_dtype=dt).to(
        device).eval()
    unet = load(UNet2DConditionModel, "unet")
    vae = load(AutoencoderKL, "vae")
    text = load(CLIPTextModel, "text_encoder")
    tok = CLIPTokenizer.from_pretrained(open(os.path.join(folder, "tokenizer_dir")).read())
    pipe = euler_pipeline(vae, text, tok, unet)
    with torch.inference_mode():
        pipe("a photograph of an astronaut riding a horse", height=size, width=size,
             num_inference_steps=steps, guidance_scale=7.0)
    sync()
    took = (time.perf_counter() - t, time.process_time() - c)
    del pipe, unet, vae, text
    gc.collect()
    return took


def diffusers_worker(folder, threads, size, repeats, steps, components, device, dtype):
    """Times the components ("first-image" first, before anything else is loaded); prints JSON on
    stdout."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dt = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    gpu = device != "cpu"
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    timings = {}
    if "first-image" in components:
        # SD pipelines only (an SDXL run leaves it out, as it does "generate").
        if not os.path.isdir(os.path.join(folder, "text_encoder_2")):
            for n in dict.fromkeys([1, steps]):
                timings[f"first-image {n} step{'s' if n != 1 else ''}"] = first_image(
                    folder, size, n, device, dt, sync)
        components = [c for c in components if c != "first-image"]
    if components:
        time_components(folder, size, repeats, steps, components, device, dt, sync, timings)
    gc.collect()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"timings": timings, "peak_rss_bytes": peak, "threads": torch.get_num_threads(),
                      "torch": torch.__version__,
                      "peak_gpu_bytes": torch.cuda.max_memory_allocated() if gpu else None,
                      "peak_gpu_reserved_bytes": torch.cuda.max_memory_reserved() if gpu else None}))


def time_components(folder, size, repeats, steps, components, device, dt, sync, timings):
    """Loads the saved models and times the components into `timings`."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    gpu = device != "cpu"

    def best(fn, n):
        if gpu:
            fn()  # warm-up: cuDNN and cuBLAS choose their kernels on the first call
        runs = []
        for _ in range(max(1, n)):
            sync()
            c, t = time.process_time(), time.perf_counter()
            fn()
            sync()
            runs.append((time.perf_counter() - t, time.process_time() - c))
        return min(runs)

    c, t = time.process_time(), time.perf_counter()
    load_dir = lambda cls, name: cls.from_pretrained(os.path.join(folder, name), torch_dtype=dt).to(
        device).eval()
    unet = load_dir(UNet2DConditionModel, "unet")
    vae = load_dir(AutoencoderKL, "vae")
    text = load_dir(CLIPTextModel, "text_encoder")
    text_2 = (load_dir(CLIPTextModelWithProjection, "text_encoder_2")
              if os.path.isdir(os.path.join(folder, "text_encoder_2")) else None)
    sync()
    load = (time.perf_counter() - t, time.process_time() - c)
    if "load" in components:
        timings["load"] = load
    tok = CLIPTokenizer.from_pretrained(open(os.path.join(folder, "tokenizer_dir")).read())
    lat = size // 8
    with torch.inference_mode():
        def encode():
            ids = tok(["a photograph of an astronaut riding a horse", ""], padding="max_length",
                      max_length=77, truncation=True, return_tensors="pt").input_ids.to(device)
            if text_2 is None:
                return text(ids)[0], None
            # SDXL: penultimate layers of both encoders side by side, pooled from the second
            h1 = text(ids, output_hidden_states=True).hidden_states[-2]
            out2 = text_2(ids, output_hidden_states=True)
            return torch.cat([h1, out2.hidden_states[-2]], dim=-1), out2.text_embeds
        ctx, pooled = encode()
        if "text" in components:
            timings["text"] = best(encode, repeats)
        if "prompt" in components:
            timings["prompt weighted"] = best(weighted_encoder(tok, text, text_2, device), repeats)
        if "unet" in components:
            x = torch.randn(1, 4, lat, lat, device=device, dtype=dt)
            sigma = 10.0
            added = None
            if pooled is not None:
                ids = torch.tensor([[size, size, 0, 0, size, size]] * 2, device=device, dtype=dt)
                added = {"text_embeds": pooled, "time_ids": ids}
            ts = torch.tensor([700.0, 700.0], device=device)

            def step():
                x_in = torch.cat([x, x]) / (sigma ** 2 + 1) ** 0.5
                out = unet(x_in, ts, encoder_hidden_states=ctx, added_cond_kwargs=added).sample
                uncond, cond = out.chunk(2)
                return x - (uncond + 7.0 * (cond - uncond)) * sigma
            timings["unet"] = best(step, repeats)
        if "vae" in components:
            z = torch.randn(1, 4, lat, lat, device=device, dtype=dt)
            timings["vae"] = best(lambda: vae.decode(z).sample, repeats)
        if "vae-encode" in components:
            # Sumi takes the latent distribution's mean, so the sample is not drawn here either.
            image = (torch.randn(1, 3, size, size, device=device) * 0.5).clamp(-1, 1).to(dt)
            timings["vae-encode"] = best(lambda: vae.encode(image).latent_dist.mean, repeats)
        if "generate" in components and text_2 is None:
            pipe = euler_pipeline(vae, text, tok, unet)
            gen = lambda: pipe("a photograph of an astronaut riding a horse", height=size,
                               width=size, num_inference_steps=steps, guidance_scale=7.0)
            timings["generate"] = best(gen, 1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sumi", default="target/release/sumi")
    p.add_argument("--model", default="sd15")
    p.add_argument("--size", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1, help="timed repeats per component per round")
    p.add_argument("--rounds", type=int, default=2, help="interleaved sumi/diffusers rounds")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--components", default="load,text,unet,vae,preview")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="f32", help="f32, f16 or bf16")
    p.add_argument("--json", help="also write all results here")
    p.add_argument("--worker", nargs=8, help=argparse.SUPPRESS)
    p.add_argument("--prepare", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        folder, threads, size, repeats, steps, comps, device, dtype = args.worker
        diffusers_worker(folder, int(threads), int(size), int(repeats), int(steps), comps.split(","),
                         device, dtype)
        return
    if args.prepare:
        with open(args.prepare[0]) as f:
            configs = json.load(f)
        prepare_diffusers(configs, args.prepare[1], os.path.join(os.path.dirname(
            os.path.abspath(__file__)), "..", "assets", "demo-model", "tokenizer"))
        return

    comps = args.components
    # "first-image" runs in processes of its own, so that each side's peak memory is its own.
    groups = [g for g in (",".join(c for c in comps.split(",") if c != "first-image"),
                          "first-image" if "first-image" in comps.split(",") else "") if g]
    sumi_runs, diff_runs = [], []
    prepared = False
    with tempfile.TemporaryDirectory(prefix="sumi-diffusers-") as folder:
        for r in range(args.rounds):
            for group in groups:
                print(f"{time.time():.1f} round {r + 1}/{args.rounds}: sumi {group}", file=sys.stderr,
                      flush=True)
                s = run_sumi(args, group)
                s["group"] = group
                sumi_runs.append(s)
                if not prepared:
                    cfg_path = os.path.join(folder, "configs.json")
                    with open(cfg_path, "w") as f:
                        json.dump(s["configs"], f)
                    subprocess.run([sys.executable, __file__, "--prepare", cfg_path, folder],
                                   check=True)
                    prepared = True
                size = s["size"]
                print(f"{time.time():.1f} round {r + 1}/{args.rounds}: diffusers {group}",
                      file=sys.stderr, flush=True)
                dcomps = ",".join(c for c in group.split(",") if c in DIFFUSERS_COMPONENTS)
                out = subprocess.run([sys.executable, __file__, "--worker", folder,
                                      str(args.threads), str(size), str(args.repeats),
                                      str(args.steps), dcomps, args.device, args.dtype],
                                     check=True, capture_output=True, text=True)
                d = json.loads(out.stdout.strip().splitlines()[-1])
                d["group"] = group
                diff_runs.append(d)

    def sumi_best(c):
        vals = [(t["seconds"], t["cpu_seconds"]) for s in sumi_runs for t in s["timings"]
                if t["component"] == c]
        return min(vals) if vals else (None, None)

    def diff_best(c):
        vals = [tuple(d["timings"][c]) for d in diff_runs if c in d["timings"]]
        return min(vals) if vals else (None, None)

    s0 = sumi_runs[0]
    rows = []
    for c in comps.split(","):
        # "prompt" times several cases ("prompt plain", "prompt weighted", ...).
        names = [t["component"] for s in sumi_runs for t in s["timings"]
                 if t["component"] == c or t["component"].startswith(c + " ")] or [c]
        for name in dict.fromkeys(names):
            rows.append((name, sumi_best(name), diff_best(name)))
    print(f"{args.model} {s0['size']}x{s0['size']}, {args.dtype}, {args.device}, "
          f"{args.threads} thread(s), "
          f"min of {args.rounds} rounds x {args.repeats} repeats; torch {diff_runs[0]['torch']}")
    w = max([16] + [len(c) for c, _, _ in rows])
    print(f"{'component':<{w}} {'sumi s':>10} {'diffusers s':>12} {'ratio':>7}   "
          f"{'sumi cpu s':>10} {'diff cpu s':>10} {'cpu ratio':>9}")
    num = lambda v, w: f"{v:{w}.3f}" if v is not None else f"{'-':>{w}}"
    rat = lambda a, b, w: f"{a / b:{w}.2f}" if a and b else f"{'-':>{w}}"
    for c, (a, ac), (b, bc) in rows:
        print(f"{c:<{w}} {num(a, 10)} {num(b, 12)} {rat(a, b, 7)}   "
              f"{num(ac, 10)} {num(bc, 10)} {rat(ac, bc, 9)}")
    for group in groups:
        rss_s = min(s["peak_rss_bytes"] or 0 for s in sumi_runs if s["group"] == group)
        rss_d = min(d["peak_rss_bytes"] for d in diff_runs if d["group"] == group)
        label = "peak_rss" + (" first-image" if group == "first-image" else "")
        print(f"{label:<{w}} {rss_s / 2**30:9.2f}G {rss_d / 2**30:11.2f}G {rss_s / rss_d:7.2f}")
    gpu_peaks = [d["peak_gpu_bytes"] for d in diff_runs if d.get("peak_gpu_bytes")]
    if gpu_peaks:
        reserved = max(d.get("peak_gpu_reserved_bytes") or 0 for d in diff_runs)
        ours = max(s.get("peak_gpu_bytes") or 0 for s in sumi_runs)
        print(f"peak GPU memory: sumi {ours / 2**30:.2f}G (free memory before loading minus its "
              f"lowest point), diffusers {max(gpu_peaks) / 2**30:.2f}G allocated / "
              f"{reserved / 2**30:.2f}G reserved by torch's caching allocator")
    unet, prev = sumi_best("unet")[0], sumi_best("preview")[0]
    if unet and prev:
        print(f"preview cost per step: {100 * prev / unet:.3f}% of a UNet step")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"sumi": sumi_runs, "diffusers": diff_runs}, f, indent=1)


if __name__ == "__main__":
    main()
