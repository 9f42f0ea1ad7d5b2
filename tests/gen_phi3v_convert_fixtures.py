#!/usr/bin/env python3
"""Generates the phi3_v adapter fixtures of tests/test_convert.sh and their merged reference weights:
    tests/fixtures/phi35v-tiny/lora_adapter/   PEFT LoRA (r 4, alpha 8) on the fused qkv_proj and gate_up_proj,
                                               o_proj, down_proj of both layers, CLIP layer 0's q_proj and out_proj
                                               (spelt without `vision_model.`, as transformers 5 saves), CLIP layer 1's
                                               fc1 (with it), img_projection.0, and the last CLIP layer's q_proj (the
                                               converter drops that layer, so it must skip the module)
    tests/fixtures/phi35v-tiny/dora_adapter/   DoRA (r 2, alpha 4, use_rslora) on layer 0's qkv_proj and gate_up_proj
    tests/fixtures/phi35v-tiny/convert_ref/    <adapter>.<abc tensor name>.npy: float32 weights as the .abc must hold
                                               them: the hub tensor merged at its fused shape with peft's formulas,
                                               THEN split into q/k/v and gate/up rows
The merge is written here from peft's definitions (lora/layer.py get_delta_weight, dora.py), independently of
model_convert/peft.c. Run once (needs numpy); the outputs are committed.
    /usr/bin/python3 tests/gen_phi3v_convert_fixtures.py"""
import json
import os
import struct

import numpy as np

FX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "phi35v-tiny")
CLIP = "model.vision_embed_tokens.img_processor.vision_model."
CLIP5 = "model.vision_embed_tokens.img_processor."  # transformers 5 spelling
H, I, KV = 64, 128, 64


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        buf = raw[8 + n + a:8 + n + b]
        if e["dtype"] == "BF16":
            v = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif e["dtype"] == "F32":
            v = np.frombuffer(buf, dtype="<f4")
        else:
            raise ValueError(e["dtype"])
        out[name] = v.reshape(e["shape"]).astype(np.float32)
    return out


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def merge_lora(w, a, b, scale):
    # peft: delta = (B @ A) * scaling (float32), W + delta
    return (w + (b @ a) * np.float32(scale)).astype(np.float32)


def merge_dora(w, a, b, m, scale):
    # dora.py: V = W + delta; norm = ||V|| along dim 1 (per output row); W' = (m / norm)[:, None] * V
    v = (w + (b @ a) * np.float32(scale)).astype(np.float32)
    norm = np.sqrt(np.sum(v.astype(np.float64) ** 2, axis=1)).astype(np.float32)
    return ((m / norm)[:, None] * v).astype(np.float32)


# hub module -> list of (abc tensor name, first row, rows)
def outputs(module):
    if module.endswith("self_attn.qkv_proj"):
        p = module[: -len("qkv_proj")]
        return [(p + "q_proj.weight", 0, H), (p + "k_proj.weight", H, KV), (p + "v_proj.weight", H + KV, KV)]
    if module.endswith("mlp.gate_up_proj"):
        p = module[: -len("gate_up_proj")]
        return [(p + "gate_proj.weight", 0, I), (p + "up_proj.weight", I, I)]
    if module.startswith(CLIP + "encoder."):
        return [("clip." + module[len(CLIP + "encoder."):] + ".weight", 0, None)]
    if module.startswith("model.vision_embed_tokens."):
        return [("hd." + module[len("model.vision_embed_tokens."):] + ".weight", 0, None)]
    return [(module + ".weight", 0, None)]


def main():
    base = read_safetensors(os.path.join(FX, "model.safetensors"))
    rng = np.random.default_rng(20250601)
    os.makedirs(os.path.join(FX, "convert_ref"), exist_ok=True)

    lora_modules = []
    for l in range(2):
        for m in ("self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj"):
            lora_modules.append(f"model.layers.{l}.{m}")
    lora_modules += [CLIP + "encoder.layers.0.self_attn.q_proj", CLIP + "encoder.layers.0.self_attn.out_proj",
                     CLIP + "encoder.layers.1.mlp.fc1", "model.vision_embed_tokens.img_projection.0",
                     CLIP + "encoder.layers.2.self_attn.q_proj"]
    dora_modules = ["model.layers.0.self_attn.qkv_proj", "model.layers.0.mlp.gate_up_proj"]

    for kind, modules, r, alpha, rslora in (("lora", lora_modules, 4, 8.0, False), ("dora", dora_modules, 2, 4.0, True)):
        scale = alpha / np.sqrt(r) if rslora else alpha / r
        tensors, ref = {}, {}
        for mod in modules:
            w = base[mod + ".weight"]
            out_dim, in_dim = w.shape
            a = (rng.standard_normal((r, in_dim)) / np.sqrt(in_dim)).astype(np.float32)
            b = (rng.standard_normal((out_dim, r)) * 0.5).astype(np.float32)
            saved = mod
            if mod.startswith(CLIP + "encoder.layers.0."):
                saved = CLIP5 + mod[len(CLIP):]
            key = "base_model.model." + saved
            tensors[key + ".lora_A.weight"] = a
            tensors[key + ".lora_B.weight"] = b
            if kind == "dora":
                m = (np.linalg.norm(w, axis=1) * rng.uniform(0.8, 1.2, out_dim)).astype(np.float32)
                tensors[key + ".lora_magnitude_vector"] = m
                merged = merge_dora(w, a, b, m, scale)
            else:
                merged = merge_lora(w, a, b, scale)
            if ".layers.2." in mod and mod.startswith(CLIP):
                continue  # dropped with the last CLIP layer
            for name, row0, rows in outputs(mod):
                ref[name] = merged if rows is None else merged[row0:row0 + rows]
        d = os.path.join(FX, f"{kind}_adapter")
        os.makedirs(d, exist_ok=True)
        write_safetensors(os.path.join(d, "adapter_model.safetensors"), tensors)
        targets = sorted({m.split(".")[-1] for m in modules})
        cfg = {"peft_type": "LORA", "r": r, "lora_alpha": alpha, "target_modules": targets, "use_dora": kind == "dora",
               "use_rslora": rslora, "bias": "none", "fan_in_fan_out": False, "lora_dropout": 0.0, "modules_to_save": None,
               "base_model_name_or_path": "microsoft/Phi-3.5-vision-instruct", "task_type": None}
        with open(os.path.join(d, "adapter_config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        for name, v in ref.items():
            np.save(os.path.join(FX, "convert_ref", f"{kind}.{name}.npy"), np.ascontiguousarray(v, dtype=np.float32))
        print(kind, len(tensors), "adapter tensors,", len(ref), "reference weights")


if __name__ == "__main__":
    main()
