#!/usr/bin/env python3
"""One step of a Flux GGUF transformer in stable-diffusion.cpp (PyPI stable-diffusion-cpp-python),
for bench/flux_compare.py's reduced-depth files. sd.cpp runs a whole txt2img: random CLIP-L and T5 XXL
from WORKDIR (bench/flux_sdcpp_encoders.py; sd.cpp crashes without them), a random decoder-only Flux
VAE (LDM names, written here),
1 Euler step at cfg 1 (one transformer forward). Its own log line "sampling completed, taking X s"
is the step; wall/CPU seconds of the whole generate_image and the peak RSS are printed as JSON.

    /tmp/sdcpp-venv/bin/python bench/flux_sdcpp.py MODEL.gguf SIZE THREADS WORKDIR 2>&1 | \
        grep -E "sampling completed|flux:|^\\{"
"""
import json
import os
import resource
import sys
import time

import numpy as np
from safetensors.numpy import save_file


def random_vae(path):
    """Flux VAE decoder (16 latent channels, 128 x (1,2,4,4)), LDM names, random weights."""
    rng = np.random.default_rng(0)
    t = {}

    def conv(name, o, i, k):
        t[f"{name}.weight"] = (rng.standard_normal((o, i, k, k)) / np.sqrt(i * k * k)).astype(np.float32)
        t[f"{name}.bias"] = np.zeros(o, np.float32)

    def norm(name, c):
        t[f"{name}.weight"], t[f"{name}.bias"] = np.ones(c, np.float32), np.zeros(c, np.float32)

    def res(name, i, o):
        norm(f"{name}.norm1", i), conv(f"{name}.conv1", o, i, 3)
        norm(f"{name}.norm2", o), conv(f"{name}.conv2", o, o, 3)
        if i != o:
            conv(f"{name}.nin_shortcut", o, i, 1)

    d = "decoder"
    conv(f"{d}.conv_in", 512, 16, 3)
    res(f"{d}.mid.block_1", 512, 512), res(f"{d}.mid.block_2", 512, 512)
    norm(f"{d}.mid.attn_1.norm", 512)
    for n in ("q", "k", "v", "proj_out"):
        conv(f"{d}.mid.attn_1.{n}", 512, 512, 1)
    ch = 512
    for level, out in ((3, 512), (2, 512), (1, 256), (0, 128)):
        for j in range(3):
            res(f"{d}.up.{level}.block.{j}", ch, out)
            ch = out
        if level > 0:
            conv(f"{d}.up.{level}.upsample.conv", out, out, 3)
    norm(f"{d}.norm_out", 128), conv(f"{d}.conv_out", 3, 128, 3)
    save_file(t, path)


def main():
    model, size, threads, work = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    os.makedirs(work, exist_ok=True)
    vae = os.path.join(work, "vae-random.safetensors")
    if not os.path.exists(vae):
        random_vae(vae)
    from stable_diffusion_cpp import StableDiffusion
    t = time.perf_counter()
    enc = {k: os.path.join(work, f) for k, f in (("clip_l_path", "clip_l-random.safetensors"),
                                                  ("t5xxl_path", "t5xxl-random-Q8_0.gguf"))
           if os.path.exists(os.path.join(work, f))}
    sd = StableDiffusion(diffusion_model_path=model, vae_path=vae, vae_decode_only=True, **enc,
                         n_threads=threads, verbose=True)
    load_s = time.perf_counter() - t
    c, t = time.process_time(), time.perf_counter()
    sd.generate_image(prompt="a photograph of an astronaut riding a horse", width=size,
                      height=size, cfg_scale=1.0, guidance=3.5, sample_method="euler",
                      sample_steps=1, seed=0)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    print(json.dumps({"load_s": load_s, "generate_wall_s": wall, "generate_cpu_s": cpu,
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}),
          flush=True)


if __name__ == "__main__":
    main()
