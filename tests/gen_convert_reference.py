#!/usr/bin/env python3
"""Generates tests/fixtures/qwen2vl-tiny/convert_ref/*.npy: every weight the converter merges, computed by
an independent NumPy implementation of peft's LoRA and DoRA merge, and the query adapter's lora_B with the
scale folded in. tests/test_convert.sh compares the .abc files against them. Run once (needs numpy); the
outputs are committed.
    /usr/bin/python3 tests/gen_convert_reference.py REFERENCE_TOOLS_DIR
REFERENCE_TOOLS_DIR must hold np_reference.py, the NumPy reference that comes with the transformers
reference set (this script uses its read_checkpoint, read_adapter, apply_adapter_merged and merge_dora)."""
import os
import sys

import numpy as np

if len(sys.argv) != 2 or not os.path.isfile(os.path.join(sys.argv[1], "np_reference.py")):
    sys.exit("usage: gen_convert_reference.py REFERENCE_TOOLS_DIR (the directory holding np_reference.py)")
sys.path.insert(0, sys.argv[1])
import np_reference as R  # noqa: E402

FX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "qwen2vl-tiny")
OUT = os.path.join(FX, "convert_ref")
os.makedirs(OUT, exist_ok=True)
base = R.read_checkpoint(os.path.join(FX, "base"))
for preset, name in (("vlm2vec", "vlm2vec_dora_adapter"), ("abc", "abc_pretrain_adapter")):
    ad = R.read_adapter(os.path.join(FX, name))
    merged = R.apply_adapter_merged(base, ad)
    for mod in sorted(ad["lora"]):
        key = mod + ".weight"
        np.save(os.path.join(OUT, f"{preset}.{key}.npy"), merged[key].astype(np.float32))
# adapters applied one after the other (abc: pretrain LoRA, then the DoRA adapter)
chained = R.apply_adapter_merged(R.apply_adapter_merged(base, R.read_adapter(os.path.join(FX, "abc_pretrain_adapter"))),
                                 R.read_adapter(os.path.join(FX, "vlm2vec_dora_adapter")))
for key in ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"):
    np.save(os.path.join(OUT, f"chain.{key}.npy"), chained[key].astype(np.float32))
# use_rslora with an alpha_pattern for q_proj (test_convert.sh edits the DoRA adapter's config the same way):
# scale = 32/sqrt(8) for q_proj, 16/sqrt(8) elsewhere
ad = R.read_adapter(os.path.join(FX, "vlm2vec_dora_adapter"))
for key, alpha in (("model.layers.1.self_attn.q_proj", 32.0), ("model.layers.1.self_attn.v_proj", 16.0)):
    p = ad["lora"][key]
    merged = R.merge_dora(base[key + ".weight"], p["A"], p["B"], p["m"], alpha / np.sqrt(8.0))
    np.save(os.path.join(OUT, f"rslora.{key}.weight.npy"), merged.astype(np.float32))
ins = R.read_adapter(os.path.join(FX, "abc_instruct_adapter"))
for mod, p in sorted(ins["lora"].items()):
    np.save(os.path.join(OUT, f"abc.query_adapter.{mod}.lora_B.npy"), (p["B"] * np.float32(ins["scale"])).astype(np.float32))
print("wrote", len(os.listdir(OUT)), "files to", OUT)
