#!/usr/bin/env python3
"""Generates tests/fixtures/qwen2vl-tiny/pattern_adapter/ (a LoRA adapter whose rank_pattern and
alpha_pattern differ from r and lora_alpha, saved by peft itself) and convert_ref/pattern.*.npy (the
weights of peft's own merge_and_unload of it). tests/test_convert.sh converts with the adapter and compares.

The config: r 8 and lora_alpha 16, but every targeted module has rank 16 (rank_pattern), except
layer 1's o_proj with rank 4 (a later, more specific key: peft takes the first key that matches, so the
specific key comes first); alpha_pattern gives layer 1's q_proj 48 and every other q_proj 24. So no module
uses r, and q_proj uses neither r nor lora_alpha. A and B are random (init_lora_weights=False) so the
merged weights differ from the base.

Run once in a virtual environment outside the repository with torch, transformers and peft from PyPI;
the outputs are committed:
    python3 -m venv VENV && VENV/bin/pip install torch transformers peft safetensors numpy
    VENV/bin/python tests/gen_pattern_adapter.py          (VENV: any directory outside the repository)"""
import os

import numpy as np
import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model

FX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "qwen2vl-tiny")
OUT_ADAPTER = os.path.join(FX, "pattern_adapter")
OUT_REF = os.path.join(FX, "convert_ref")
TARGETS = ["self_attn.q_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.down_proj"]

torch.manual_seed(26)
model = transformers.Qwen2VLForConditionalGeneration.from_pretrained(os.path.join(FX, "base"), dtype=torch.float32)
config = LoraConfig(
    r=8,
    lora_alpha=16,
    target_modules=TARGETS,
    rank_pattern={"layers.1.self_attn.o_proj": 4, "q_proj": 16, "v_proj": 16, "o_proj": 16, "down_proj": 16},
    alpha_pattern={"layers.1.self_attn.q_proj": 48, "q_proj": 24},
    init_lora_weights=False,
    lora_dropout=0.0,
)
model = get_peft_model(model, config)
# the kaiming init of B is small next to the base weights' 0.02 scale; make the update clearly visible
with torch.no_grad():
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.mul_(0.5)
# the saved config names the base by its path inside the repository, not this machine's
model.peft_config["default"].base_model_name_or_path = "tests/fixtures/qwen2vl-tiny/base"
model.save_pretrained(OUT_ADAPTER)
os.remove(os.path.join(OUT_ADAPTER, "README.md"))  # peft's model card template
os.chmod(os.path.join(OUT_ADAPTER, "adapter_model.safetensors"), 0o644)

ranks = {}
for name, mod in model.named_modules():
    if hasattr(mod, "lora_A") and "default" in mod.lora_A:
        ranks[name] = (mod.r["default"], mod.scaling["default"])
merged = model.merge_and_unload()
state = merged.state_dict()
written = 0
for key, value in sorted(state.items()):
    # transformers >= 4.52 names the language model model.language_model.*; .abc files use model.*
    hub = key.replace("model.language_model.", "model.", 1)
    if hub.endswith(".weight") and any(hub.endswith(t + ".weight") for t in TARGETS):
        np.save(os.path.join(OUT_REF, f"pattern.{hub}.npy"), value.detach().numpy().astype(np.float32))
        written += 1
for name, (r, s) in sorted(ranks.items()):
    print(f"{name}: rank {r} scale {s}")
print(f"peft {peft.__version__}, transformers {transformers.__version__}, torch {torch.__version__}: wrote pattern_adapter/ and {written} reference tensors")
