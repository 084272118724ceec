#!/usr/bin/env python3
"""One Flux transformer step, Sumi vs diffusers, on the CPU, interleaved, same weights and inputs.

    python bench/flux_compare.py --sumi target/release/examples/flux_step --threads 2 \
        --double 1 --single 2 --sizes 512,1024 --dtypes f32,bf16 --rounds 2 --repeats 2

Writes a Flux dev transformer of the real width (hidden 3072, 24 heads of 128, joint_attention_dim
4096, pooled 768, in_channels 64, guidance embeds) with `--double`/`--single` blocks and seeded random
weights as a diffusers folder in a temp dir (deleted at the end; --dir DIR keeps and reuses it), plus one
step's inputs at batch 1 (image tokens (H/16)*(W/16), --txt text tokens, 512 by default). Each round runs, per dtype, Sumi then
diffusers in fresh processes (so each peak RSS is its own); times are the minimum over rounds and
repeats (wall, and CPU seconds of that repeat; "cpu vs" compares the least CPU seconds of each side,
steadier than wall on a shared machine). Sumi's and diffusers' outputs are compared (max |a-b| /
max |diffusers f32|). `--gguf` adds Sumi runs on BFL-named Q8_0 / Q4_K GGUF files of the same weights
(written by bench/flux_gguf.py).
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

CONFIG = dict(patch_size=1, in_channels=64, out_channels=None, attention_head_dim=128,
              num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
              guidance_embeds=True, axes_dims_rope=(16, 56, 56))


def prepare(folder, double, single):
    import torch
    from diffusers import FluxTransformer2DModel
    torch.manual_seed(0)
    m = FluxTransformer2DModel(num_layers=double, num_single_layers=single, **CONFIG)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() == 2:
                p.normal_(0, p.shape[1] ** -0.5)
            elif name.endswith("bias"):
                p.normal_(0, 0.02)
            else:  # norm scales
                p.normal_(1, 0.1)
    m.save_pretrained(os.path.join(folder, "transformer"), safe_serialization=True)


def write_inputs(path, size, txt_len=512):
    import torch
    from safetensors.torch import save_file
    g = torch.Generator().manual_seed(size)
    h = w = size // 16
    img_ids = torch.zeros(h * w, 3)
    img_ids[:, 1] = torch.arange(h).repeat_interleave(w)
    img_ids[:, 2] = torch.arange(w).repeat(h)
    save_file({"img": torch.randn(1, h * w, 64, generator=g),
               "txt": torch.randn(1, txt_len, 4096, generator=g),
               "pooled": torch.randn(1, 768, generator=g),
               "timestep": torch.tensor([0.5]), "guidance": torch.tensor([3.5]),
               "img_ids": img_ids, "txt_ids": torch.zeros(txt_len, 3)}, path)


def diffusers_worker(folder, dtype, inputs, repeats, out, threads):
    import torch
    from diffusers import FluxTransformer2DModel
    from safetensors.torch import load_file, save_file
    torch.set_num_threads(threads)
    dt = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype]
    t0 = time.perf_counter()
    m = FluxTransformer2DModel.from_pretrained(os.path.join(folder, "transformer"), torch_dtype=dt)
    m.eval()
    load_s = time.perf_counter() - t0
    x = load_file(inputs)
    kw = dict(hidden_states=x["img"].to(dt), encoder_hidden_states=x["txt"].to(dt),
              pooled_projections=x["pooled"].to(dt), timestep=x["timestep"].to(dt),
              guidance=x["guidance"].to(dt), img_ids=x["img_ids"], txt_ids=x["txt_ids"],
              return_dict=False)
    wall, cpu = [], []
    with torch.inference_mode():
        for _ in range(repeats):
            c, t = time.process_time(), time.perf_counter()
            y = m(**kw)[0]
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    save_file({"out": y.float().contiguous()}, out)
    print(json.dumps({"load_s": load_s, "wall_s": wall, "cpu_s": cpu, "threads": torch.get_num_threads(),
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def run(cmd, env=None):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def rel(a, b, ref):
    from safetensors.torch import load_file
    a, b, r = (load_file(p)["out"] for p in (a, b, ref))
    return float((a - b).abs().max() / r.abs().max())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sumi", default="target/release/examples/flux_step")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--double", type=int, default=1)
    p.add_argument("--single", type=int, default=2)
    p.add_argument("--sizes", default="512,1024")
    p.add_argument("--dtypes", default="f32,bf16")
    p.add_argument("--gguf", default="", help="comma list of GGUF files (BFL names) for Sumi only")
    p.add_argument("--txt", type=int, default=512, help="text tokens (stable-diffusion.cpp uses 256)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--dir", help="reuse/keep this folder instead of a temp one")
    p.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        f, dt, inp, rep, out, th = args.worker
        return diffusers_worker(f, dt, inp, int(rep), out, int(th))
    folder = args.dir or tempfile.mkdtemp(prefix="sumi-flux-bench-")
    if not os.path.exists(os.path.join(folder, "transformer")):
        t = time.perf_counter()
        prepare(folder, args.double, args.single)
        print(f"wrote random weights in {time.perf_counter() - t:.0f} s to {folder}", file=sys.stderr)
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    sides = [(s, d, m) for d in args.dtypes.split(",") for s, m in
             (("sumi", os.path.join(folder, "transformer")), ("diffusers", None))]
    sides += [("sumi", "f32", g) for g in args.gguf.split(",") if g]
    results = {}
    for size in map(int, args.sizes.split(",")):
        inputs = os.path.join(folder, f"inputs-{size}-t{args.txt}.safetensors")
        write_inputs(inputs, size, args.txt)
        for r in range(args.rounds):
            for side, dt, model in sides:
                label = side if side == "diffusers" or not model.endswith(".gguf") else \
                    "sumi " + os.path.basename(model)
                key = (size, label, dt)
                out = os.path.join(folder, f"out-{size}-{label.replace(' ', '_')}-{dt}.safetensors")
                load = open("/proc/loadavg").read().split()[0]
                if side == "sumi":
                    rep = run([args.sumi, model, inputs, dt, str(args.repeats), out], env)
                else:
                    rep = run([sys.executable, __file__, "--worker", folder, dt, inputs,
                               str(args.repeats), out, str(args.threads)], env)
                rep["load1"] = load
                print(f"{size} {label} {dt} round {r}: {json.dumps(rep)}", file=sys.stderr, flush=True)
                results.setdefault(key, []).append((rep, out))
    print(f"Flux dev width, {args.double} double + {args.single} single blocks, batch 1, {args.txt} text "
          f"tokens, {args.threads} threads, min over {args.rounds} rounds x {args.repeats} repeats")
    print(f"{'size':>5} {'side':<24} {'dtype':<5} {'wall s':>8} {'cpu s':>8} {'vs diff':>8} "
          f"{'cpu vs':>7} {'peak GiB':>9} {'load1':>6} {'err':>8}")
    for (size, label, dt), runs in results.items():
        def best(rs):
            return min((w, c, rep) for rep, _ in rs for w, c in zip(rep["wall_s"], rep["cpu_s"]))
        w, c, _ = best(runs)
        dref = results.get((size, "diffusers", dt)) or results.get((size, "diffusers", "f32"))
        ratio = w / best(dref)[0] if dref else float("nan")
        cmin = min(c for rep, _ in runs for c in rep["cpu_s"] if c)
        cratio = cmin / min(c for rep, _ in dref for c in rep["cpu_s"]) if dref else float("nan")
        rss = max(rep["peak_rss_bytes"] or 0 for rep, _ in runs) / 2**30
        loads = "/".join(rep["load1"] for rep, _ in runs)
        ref = results.get((size, "diffusers", "f32"))
        err = rel(runs[-1][1], ref[-1][1], ref[-1][1]) if ref else float("nan")
        print(f"{size:>5} {label:<24} {dt:<5} {w:>8.2f} {c or 0:>8.2f} {ratio:>7.2f}x {cratio:>6.2f}x {rss:>9.2f} "
              f"{loads:>6} {err:>8.1e}")
    if not args.dir:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
