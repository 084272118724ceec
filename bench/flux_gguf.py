#!/usr/bin/env python3
"""Writes the diffusers Flux transformer folder that bench/flux_compare.py made as GGUF files with
BFL names (as city96's Flux GGUF files): Q8_0 (gguf-py) and Q4_K (blocks written by the fixture
script), matrices whose rows are not whole blocks (img_in: 64 wide) and vectors in F32.

    python bench/flux_gguf.py DIR/transformer OUTDIR [Q8_0,Q4_K]
"""
import os
import sys
import time

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "flux"))
from make_flux_files import Q, to_bfl, write_gguf  # noqa: E402


def main():
    src, out = sys.argv[1], sys.argv[2]
    types = (sys.argv[3] if len(sys.argv) > 3 else "Q8_0,Q4_K").split(",")
    sd = {}
    for f in sorted(os.listdir(src)):
        if f.endswith(".safetensors"):
            sd.update(load_file(os.path.join(src, f)))
    bfl = to_bfl(sd, 3072)
    os.makedirs(out, exist_ok=True)
    for name in types:
        t = time.perf_counter()
        path = os.path.join(out, f"flux-reduced-{name}.gguf")
        write_gguf(path, "flux", bfl, getattr(Q, name))
        print(f"{path}: {os.path.getsize(path) / 2**20:.0f} MiB in {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    with torch.no_grad():
        main()
