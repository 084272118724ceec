"""Peak memory of a full-size Flux.1 dev run on the CPU from quantized files, against the sum of
its parts: random weights in the real shapes, written to a temporary folder (never committed),
then one `sumi generate` step at 256x256 under `/usr/bin/time -v`.

    python bench/flux_memory.py [--sumi target/release/sumi] [--offload sequential] [--keep DIR]

Writes: the transformer (19 double + 38 single blocks, width 3072) as GGUF Q4_K with BFL names
(as city96's files; rows that are not whole 256-value blocks in F16), T5 v1.1 XXL's encoder as
GGUF Q8_0 with llama.cpp's names, CLIP-L as f16 safetensors (transformers names) and the 16-
channel VAE as f16 safetensors (LDM names, as BFL's ae.safetensors). Quantized blocks hold
random bytes with small scales, so the values are random and finite.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import gguf
import numpy as np
import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
from make_single_file_fixtures import vae_key, vae_value  # noqa: E402

Q = gguf.GGMLQuantizationType
RNG = np.random.default_rng(0)
DIM, MLP, DOUBLE, SINGLE = 3072, 12288, 19, 38


def quant_rows(rows, cols, qtype, scale):
    """Random blocks of `qtype` for a rows x cols matrix, with f16 scales `scale`."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    n = rows * (cols // block)
    data = RNG.integers(0, 256, size=(n, size), dtype=np.uint8)
    d = np.full((n, 1), scale, np.float16).view(np.uint8)
    if qtype == Q.Q8_0:
        data[:, 0:2] = d
    elif qtype == Q.Q4_K:
        data[:, 0:2] = d
        data[:, 2:4] = d
    else:
        raise ValueError(qtype)
    return data.reshape(rows, -1)


def write_gguf(path, arch, shapes, qtype, scale):
    w = gguf.GGUFWriter(str(path), arch, use_temp_file=False)
    total = 0
    for name, shape in shapes:
        block = gguf.GGML_QUANT_SIZES[qtype][0]
        if len(shape) == 2 and shape[1] % block == 0:
            data = quant_rows(shape[0], shape[1], qtype, scale)
            w.add_tensor(name, data, raw_dtype=qtype)
        else:
            data = (RNG.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float16)
            if name.endswith(("norm.scale", "norm.weight", "_norm.weight")):
                data[...] = 1.0
            w.add_tensor(name, data, raw_dtype=Q.F16)
        total += data.nbytes
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return total


def flux_shapes():
    s = []

    def lin(name, out, inp):
        s.extend([(f"{name}.weight", (out, inp)), (f"{name}.bias", (out,))])

    lin("img_in", DIM, 64)
    lin("txt_in", DIM, 4096)
    for e, inp in (("time_in", 256), ("guidance_in", 256), ("vector_in", 768)):
        lin(f"{e}.in_layer", DIM, inp)
        lin(f"{e}.out_layer", DIM, DIM)
    for i in range(DOUBLE):
        for side in ("img", "txt"):
            p = f"double_blocks.{i}.{side}"
            lin(f"{p}_mod.lin", 6 * DIM, DIM)
            lin(f"{p}_attn.qkv", 3 * DIM, DIM)
            lin(f"{p}_attn.proj", DIM, DIM)
            s.extend([(f"{p}_attn.norm.query_norm.scale", (128,)),
                      (f"{p}_attn.norm.key_norm.scale", (128,))])
            lin(f"{p}_mlp.0", MLP, DIM)
            lin(f"{p}_mlp.2", DIM, MLP)
    for i in range(SINGLE):
        p = f"single_blocks.{i}"
        lin(f"{p}.linear1", 3 * DIM + MLP, DIM)
        lin(f"{p}.linear2", DIM, DIM + MLP)
        lin(f"{p}.modulation.lin", 3 * DIM, DIM)
        s.extend([(f"{p}.norm.query_norm.scale", (128,)), (f"{p}.norm.key_norm.scale", (128,))])
    lin("final_layer.linear", 64, DIM)
    lin("final_layer.adaLN_modulation.1", 2 * DIM, DIM)
    return s


def t5_shapes():
    d, ff, heads = 4096, 10240, 64
    s = [("token_embd.weight", (32128, d)), ("enc.output_norm.weight", (d,))]
    for i in range(24):
        p = f"enc.blk.{i}"
        s += [(f"{p}.attn_{x}.weight", (d, d)) for x in "qkvo"]
        if i == 0:
            s.append((f"{p}.attn_rel_b.weight", (32, heads)))
        s += [(f"{p}.attn_norm.weight", (d,)), (f"{p}.ffn_norm.weight", (d,)),
              (f"{p}.ffn_gate.weight", (ff, d)), (f"{p}.ffn_up.weight", (ff, d)),
              (f"{p}.ffn_down.weight", (d, ff))]
    return s


def write_clip(path):
    from transformers import CLIPTextConfig, CLIPTextModel
    torch.manual_seed(0)
    cfg = CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                         num_hidden_layers=12, max_position_embeddings=77,
                         hidden_act="quick_gelu")
    m = CLIPTextModel(cfg).half()
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))


def write_vae(path):
    from diffusers import AutoencoderKL
    torch.manual_seed(0)
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4,
                        block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                        latent_channels=16, use_quant_conv=False, use_post_quant_conv=False)
    sd = {vae_key(k, 4): vae_value(k, v).half().contiguous() for k, v in vae.state_dict().items()}
    save_file(sd, str(path))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sumi", default=str(ROOT / "target" / "debug" / "sumi"))
    ap.add_argument("--offload", default="sequential")
    ap.add_argument("--keep", help="write the files here and keep them")
    args = ap.parse_args()
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="sumi-flux-mem-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        flux, t5 = tmp / "flux1-dev-Q4_K.gguf", tmp / "t5xxl-Q8_0.gguf"
        if not flux.exists():
            write_gguf(flux, "flux", flux_shapes(), Q.Q4_K, 1e-4)
        if not t5.exists():
            write_gguf(t5, "t5encoder", t5_shapes(), Q.Q8_0, 1e-3)
        clip, vae = tmp / "clip_l.safetensors", tmp / "ae.safetensors"
        if not clip.exists():
            write_clip(clip)
        if not vae.exists():
            write_vae(vae)
        for sub in ("tokenizer", "tokenizer_2"):
            shutil.copytree(ROOT / "tests/fixtures/flux/pipe-dev" / sub, tmp / sub,
                            dirs_exist_ok=True)
        sizes = {p.name: p.stat().st_size for p in (flux, t5, clip, vae)}
        for k, v in sizes.items():
            print(f"{k}: {v / 2**30:.2f} GiB on disk")
        home = tmp / "home"
        cmd = [args.sumi, "generate", "--model", str(flux), "--t5", str(t5), "--clip-l",
               str(clip), "--vae", str(vae), "--tokenizers", str(tmp), "-p", "a red cat",
               "--width", "256", "--height", "256", "--steps", "1", "--seed", "1",
               "--no-save", "-o", str(tmp / "out.png"), "--offload", args.offload]
        env_home = {**os.environ, "SUMI_HOME": str(home)}
        out = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True,
                             env=env_home)
        if out.returncode != 0:
            print(out.stderr[-3000:])
            raise SystemExit("sumi generate failed")
        rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr)[1]) * 1024
        wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", out.stderr)[1]
        for line in out.stderr.splitlines():
            if line.startswith(("memory:", "loaded")):
                print(line)
        print(f"--offload {args.offload}: peak RSS {rss / 2**30:.2f} GiB, wall {wall}; "
              f"files together {sum(sizes.values()) / 2**30:.2f} GiB")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
