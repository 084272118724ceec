#!/usr/bin/env python3
"""Times diffusers applying and removing the LoRA `sumi bench --components lora` applies: rank 32
on every attention projection and feed-forward layer of the UNet (kohya keys, random values),
with `load_lora_weights` + `fuse_lora` and `unfuse_lora` + `unload_lora_weights`, and the
resident memory each leaves and takes at its peak. With Sumi's JSON report it prints the ratios.

    cargo run --release -p sumi-bench --example lora_bench -- sd15 f32 > sumi-lora.json
    PYTHONPATH=.pylib python bench/lora_diffusers.py sumi-lora.json   # needs diffusers + peft

The UNet is built from the report's `configs.unet` with random weights (not timed), in the
report's dtype, on the CPU with the report's thread count.
"""
import json
import sys
import tempfile
import time

import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
from safetensors.torch import save_file

RANK = 32
TARGETS = (".to_q", ".to_k", ".to_v", ".to_out.0", ".ff.net.0.proj", ".ff.net.2")


def status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return None


def measured(fn):
    before = status_kb("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    t = time.perf_counter()
    fn()
    return {"seconds": time.perf_counter() - t, "extra_rss_bytes": status_kb("VmRSS:") - before,
            "extra_peak_rss_bytes": status_kb("VmHWM:") - before}


def main():
    report = json.load(open(sys.argv[1]))
    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[report["dtype"]]
    torch.set_num_threads(report["threads"])
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(report["configs"]["unet"]).to(dtype).eval()
    lora = {}
    g = torch.Generator().manual_seed(1)
    for name, m in unet.named_modules():
        if isinstance(m, torch.nn.Linear) and "transformer_blocks." in name and name.endswith(TARGETS):
            key = "lora_unet_" + name.replace(".", "_")
            out, inp = m.weight.shape
            lora[f"{key}.lora_down.weight"] = (torch.rand(RANK, inp, generator=g) * 2 - 1) / inp ** 0.5
            lora[f"{key}.lora_up.weight"] = (torch.rand(out, RANK, generator=g) * 2 - 1) / RANK ** 0.5
            lora[f"{key}.alpha"] = torch.tensor(float(RANK))
    pipe = StableDiffusionXLPipeline(vae=None, text_encoder=None, text_encoder_2=None, tokenizer=None,
                                     tokenizer_2=None, unet=unet, scheduler=EulerDiscreteScheduler())
    runs = []
    with tempfile.TemporaryDirectory() as d:
        path = f"{d}/lora.safetensors"
        save_file(lora, path)
        del lora
        for _ in range(2):
            with torch.no_grad():
                apply = measured(lambda: (pipe.load_lora_weights(path), pipe.fuse_lora()))
                remove = measured(lambda: (pipe.unfuse_lora(), pipe.unload_lora_weights()))
            runs.append((apply, remove))
    best = lambda i: min((r[i] for r in runs), key=lambda x: x["seconds"])  # noqa: E731
    out = {"diffusers lora apply": best(0), "diffusers lora remove": best(1),
           "modules": sum(1 for n, m in unet.named_modules() if isinstance(m, torch.nn.Linear)
                          and "transformer_blocks." in n and n.endswith(TARGETS))}
    sumi = {t["component"]: t for t in report["timings"]}
    for kind in ("apply", "remove"):
        d = out[f"diffusers lora {kind}"]
        for label in (f"lora {kind}", f"lora {kind} (memory backup)"):
            s = sumi.get(label)
            if s:
                out[f"ratio {label}"] = {
                    "time (sumi / diffusers)": s["seconds"] / d["seconds"],
                    "extra peak rss (sumi - diffusers, MiB)":
                        (s.get("extra_peak_rss_bytes", 0) - d["extra_peak_rss_bytes"]) / 2**20,
                    "sumi": {k: s.get(k) for k in ("seconds", "extra_rss_bytes", "extra_peak_rss_bytes")},
                }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
