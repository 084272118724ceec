#!/usr/bin/env python3
"""Random text encoders that stable-diffusion.cpp needs before it samples Flux (it crashes without
them): CLIP-L (HF names, f16 safetensors) and a T5 XXL encoder as Q8_0 GGUF (HF names) whose 24
blocks share one block's random bytes, so it is written in seconds. Timing only; never committed.

    /work/main/.venv-fx/bin/python bench/flux_sdcpp_encoders.py OUTDIR
"""
import os
import sys

import gguf
import numpy as np
import torch
from safetensors.torch import save_file


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    from transformers import CLIPTextConfig, CLIPTextModel
    torch.manual_seed(0)
    clip = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, projection_dim=768))
    sd = {k if k.startswith("text_model.") else "text_model." + k: v.half().contiguous()
          for k, v in clip.state_dict().items() if "position_ids" not in k}
    save_file(sd, os.path.join(out, "clip_l-random.safetensors"))
    rng = np.random.default_rng(0)

    def q8(*shape):
        return gguf.quantize((rng.standard_normal(shape, dtype=np.float32) / np.sqrt(shape[1])),
                             gguf.GGMLQuantizationType.Q8_0)

    d, ff = 4096, 10240
    block = {f"layer.0.SelfAttention.{n}.weight": q8(d, d) for n in "qkvo"}
    block.update({f"layer.1.DenseReluDense.{n}.weight": q8(ff, d) for n in ("wi_0", "wi_1")})
    block["layer.1.DenseReluDense.wo.weight"] = q8(d, ff)
    w = gguf.GGUFWriter(os.path.join(out, "t5xxl-random-Q8_0.gguf"), "t5")
    w.add_tensor("shared.weight", q8(32128, d), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("encoder.final_layer_norm.weight", np.ones(d, np.float32))
    w.add_tensor("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                 rng.standard_normal((32, 64), dtype=np.float32))
    for i in range(24):
        for n, a in block.items():
            w.add_tensor(f"encoder.block.{i}.{n}", a, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        for n in ("layer.0.layer_norm.weight", "layer.1.layer_norm.weight"):
            w.add_tensor(f"encoder.block.{i}.{n}", np.ones(d, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
