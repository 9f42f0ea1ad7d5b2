#!/usr/bin/env python3
"""A tiny random Qwen2.5-VL and the reference outputs of preset nomic (nomic-embed-multimodal) on it:
writes tests/fixtures/qwen25vl-tiny/{config.json, preprocessor_config.json,
model-00002-of-00002.safetensors, model.safetensors.index.json, manifest.json}, a LoRA adapter
nomic_adapter/ (nomic-embed-multimodal is published as a PEFT adapter on Qwen2.5-VL-Instruct) and
cases/NAME/{input_ids,position_ids,vision_embeds,last_hidden,embedding}.npy computed with it merged.

Run from the repository root with a Python that has torch, transformers (5.x), peft, safetensors and Pillow,
e.g. a virtualenv outside the repository:  VENV/bin/python tests/gen_qwen25vl_fixtures.py
Without them it prints "SKIP ..." and exits 0.

The checkpoint is split in two to stay small: the language model (Qwen2.5-VL's decoder is Qwen2's) is
the tiny Qwen2-VL's, shard model-00001-of-00002.safetensors of tests/fixtures/qwen2vl-tiny/base, whose
tokenizer it also shares; only the ViT is new (random, seed 0), in this directory's
model-00002-of-00002.safetensors. The Makefile puts the pieces together in build/qwen25vl-tiny/ (links),
and so does this script in a temporary directory before loading the model with from_pretrained.

The ViT: 3 blocks of width 32 (2 heads), window_size 84 pixels (3×3 merged groups a window), block 1
with full attention, blocks 0 and 2 windowed; the images give 9 and 12 windows, some cut by the edge.
Every parameter is random (norm weights around 1), so a wrong norm, bias, gate or window order shows.
The adapter: rank 4 on the decoder's projections (the regex of colpali-engine's training configs, which
leaves the ViT alone), random A and B, seed 1.

Preset nomic follows colpali-engine's BiQwen2_5 / BiQwen2_5_Processor as of the model's release
(colpali-engine 0.3.9, April 2025; docs/presets-and-prompts.md#nomic), in float32 on the CPU:
  * documents (an image): "<|im_start|>user\\n<|vision_start|><|image_pad|><|vision_end|>Describe the
    image.<|im_end|><|endoftext|>"; with a text: the text in place of "Describe the image.";
  * queries (text): "Query: " + text + "<|endoftext|>";
  * the image: RGB, one resize by the Qwen2-VL image processor (Pillow) with the checkpoint's bounds;
  * the decoder with M-RoPE position ids from get_rope_index, causal attention, the last token's
    hidden state (pooling_strategy "last", the forward's default), L2-normalised.
"""
import hashlib
import json
import os
import shutil
import sys
import tempfile

try:
    import numpy as np
    import PIL
    import torch
    import transformers
    from PIL import Image
    from peft import LoraConfig, get_peft_model
    from safetensors import safe_open
    from safetensors.torch import save_file
    from transformers import (AutoTokenizer, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                              Qwen2VLForConditionalGeneration)
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
except ImportError as e:  # the generator is optional: the fixtures it writes are committed
    print(f"SKIP gen_qwen25vl_fixtures: {e} (needs torch, transformers 5.x, peft, safetensors, Pillow)")
    sys.exit(0)

QWEN2VL = "tests/fixtures/qwen2vl-tiny/base"
IMAGES = "tests/fixtures/images"
OUT = "tests/fixtures/qwen25vl-tiny"
LM_SHARD = "model-00001-of-00002.safetensors"
VIS_SHARD = "model-00002-of-00002.safetensors"
SHARED = ["tokenizer.json", "tokenizer_config.json", "chat_template.json", LM_SHARD]
MIN_PIXELS, MAX_PIXELS = 4 * 28 * 28, 80 * 28 * 28

DOC_START = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
DOC_END = "<|im_end|><|endoftext|>"

# name, image (or None), text (or None)
CASES = [
    ("nomic_doc_astronaut", "astronaut.png", None),
    ("nomic_doc_coffee", "coffee.png", None),
    ("nomic_doc_camera_text", "camera.png", "A photographer with a camera."),
    ("nomic_query_text", None, "What is the person holding?"),
]


def prompt_for(image, text):
    if image:
        return DOC_START + (text if text else "Describe the image.") + DOC_END
    return "Query: " + text + "<|endoftext|>"


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def tiny_config():
    base = json.load(open(f"{QWEN2VL}/config.json"))
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "attention_dropout": 0.0,
        "bos_token_id": base["bos_token_id"], "eos_token_id": base["eos_token_id"],
        "vision_start_token_id": base["vision_start_token_id"], "vision_end_token_id": base["vision_end_token_id"],
        "vision_token_id": base["vision_token_id"], "image_token_id": base["image_token_id"],
        "video_token_id": base["video_token_id"],
        "hidden_act": "silu", "hidden_size": base["hidden_size"], "intermediate_size": base["intermediate_size"],
        "initializer_range": 0.02, "max_position_embeddings": 32768, "max_window_layers": 2,
        "num_attention_heads": base["num_attention_heads"], "num_hidden_layers": base["num_hidden_layers"],
        "num_key_value_heads": base["num_key_value_heads"], "rms_norm_eps": base["rms_norm_eps"],
        "rope_theta": base["rope_theta"], "sliding_window": 32768, "tie_word_embeddings": True,
        "torch_dtype": "float32", "use_cache": True, "use_sliding_window": False,
        "vision_config": {
            "depth": 3, "hidden_act": "silu", "hidden_size": 32, "intermediate_size": 48, "num_heads": 2,
            "in_chans": 3, "out_hidden_size": base["hidden_size"], "patch_size": 14, "spatial_merge_size": 2,
            "spatial_patch_size": 14, "window_size": 84, "fullatt_block_indexes": [1], "tokens_per_second": 2,
            "temporal_patch_size": 2,
        },
        "rope_scaling": {"type": "mrope", "mrope_section": base["rope_scaling"]["mrope_section"]},
        "vocab_size": base["vocab_size"],
    }


def make_checkpoint():
    """The random ViT on the tiny Qwen2-VL's decoder; writes the fixture's config and visual shard."""
    os.makedirs(OUT, exist_ok=True)
    config = tiny_config()
    write_json(f"{OUT}/config.json", config)
    pre = json.load(open(f"{QWEN2VL}/preprocessor_config.json"))
    pre.update({"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS, "image_processor_type": "Qwen2VLImageProcessor",
                "processor_class": "Qwen2_5_VLProcessor"})
    write_json(f"{OUT}/preprocessor_config.json", pre)
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig.from_pretrained(OUT)).eval()
    visual = {}
    with torch.no_grad():
        for name, p in model.model.visual.named_parameters():
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or "ln_q" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.05 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p) / max(1.0, p.shape[-1] / 32.0) ** 0.5)
            visual["visual." + name] = p.detach().clone().contiguous()
    # The Qwen2-VL shard also holds that model's visual.blocks.0.attn.proj (same shape here): those two
    # stay in it (bf16) and the random ViT takes them over, so names are unique across the shards.
    with safe_open(f"{QWEN2VL}/{LM_SHARD}", "pt") as f:
        lm_names = list(f.keys())
        with torch.no_grad():
            for k in lm_names:
                if k.startswith("visual."):
                    model.model.visual.get_parameter(k[len("visual."):]).copy_(f.get_tensor(k).float())
                    del visual[k]
    save_file(visual, f"{OUT}/{VIS_SHARD}", metadata={"format": "pt"})
    weight_map = {k: LM_SHARD for k in sorted(lm_names)}
    weight_map.update({k: VIS_SHARD for k in sorted(visual)})
    write_json(f"{OUT}/model.safetensors.index.json", {"metadata": {}, "weight_map": weight_map})


def assemble(tmp):
    for name in ["config.json", "preprocessor_config.json", VIS_SHARD, "model.safetensors.index.json"]:
        shutil.copy(f"{OUT}/{name}", f"{tmp}/{name}")
    for name in SHARED:
        shutil.copy(f"{QWEN2VL}/{name}", f"{tmp}/{name}")


def save(path, array):
    np.save(path, np.ascontiguousarray(array))


def main():
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    make_checkpoint()
    tmp = tempfile.mkdtemp()
    try:
        assemble(tmp)
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp, torch_dtype=torch.float32).eval()
        tok = AutoTokenizer.from_pretrained(tmp)
    finally:
        shutil.rmtree(tmp)
    # the decoder is the tiny Qwen2-VL's, bit for bit, and the ViT the one written above
    with safe_open(f"{OUT}/{VIS_SHARD}", "pt") as f:
        for k in f.keys():
            assert torch.equal(model.model.visual.get_parameter(k[len("visual."):]), f.get_tensor(k)), k
    ref = Qwen2VLForConditionalGeneration.from_pretrained(QWEN2VL, torch_dtype=torch.float32)
    for (k, v), (k2, v2) in zip(model.model.language_model.state_dict().items(),
                                ref.model.language_model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    del ref
    torch.manual_seed(1)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False,
                      target_modules="(.*(model)(?!.*visual).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$)")
    model = get_peft_model(model, lora)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(0.3 * torch.randn_like(p))
    model.save_pretrained(f"{OUT}/nomic_adapter")
    # no temporary path and no generated model card in the fixture
    os.remove(f"{OUT}/nomic_adapter/README.md")
    cfg_path = f"{OUT}/nomic_adapter/adapter_config.json"
    adapter_cfg = json.load(open(cfg_path))
    adapter_cfg["base_model_name_or_path"] = "build/qwen25vl-tiny"
    write_json(cfg_path, adapter_cfg)
    os.chmod(f"{OUT}/nomic_adapter/adapter_model.safetensors", 0o644)
    model = model.merge_and_unload().eval()
    proc = Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, patch_size=14, temporal_patch_size=2,
                                    merge_size=2, image_mean=json.load(open(f"{OUT}/preprocessor_config.json"))["image_mean"],
                                    image_std=json.load(open(f"{OUT}/preprocessor_config.json"))["image_std"])
    image_token = model.config.image_token_id
    manifest = {
        "generator": f"tests/gen_qwen25vl_fixtures.py; transformers {transformers.__version__}, torch {torch.__version__}, "
                     f"Pillow {PIL.__version__}, float32 on CPU",
        "checkpoint": f"{OUT} + {QWEN2VL}/{LM_SHARD} and its tokenizer",
        "merged_adapter": f"{OUT}/nomic_adapter",
        "versions": f"transformers {transformers.__version__}, peft {__import__('peft').__version__}",
        "preset": "nomic",
        "image_bounds": [MIN_PIXELS, MAX_PIXELS],
        "cases": [],
    }
    for name, image_name, text in CASES:
        prompt = prompt_for(image_name, text)
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        grid = None
        with torch.no_grad():
            kwargs = {}
            if image_name:
                img = Image.open(f"{IMAGES}/{image_name}").convert("RGB")
                pix = proc(images=[img], return_tensors="pt")
                grid = pix["image_grid_thw"]
                n_img = int(grid.prod()) // 4
                pos = ids.index(image_token)
                ids = ids[:pos] + [image_token] * n_img + ids[pos + 1:]
                kwargs = {"pixel_values": pix["pixel_values"].float(), "image_grid_thw": grid}
            input_ids = torch.tensor([ids])
            mask = torch.ones_like(input_ids)
            if image_name:
                position_ids, _ = model.model.get_rope_index(input_ids, (input_ids == image_token).int(),
                                                             image_grid_thw=grid, attention_mask=mask)
                vis = model.model.visual(kwargs["pixel_values"], grid_thw=grid).pooler_output
            else:
                position_ids = torch.arange(len(ids)).view(1, 1, -1).expand(3, 1, -1)
            out = model.model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, use_cache=False,
                              **kwargs)
            last = out.last_hidden_state[0]
            pooled = last[-1]
            emb = pooled / pooled.norm()
        d = f"{OUT}/cases/{name}"
        os.makedirs(d, exist_ok=True)
        save(f"{d}/input_ids.npy", np.array(ids, dtype=np.int32))
        save(f"{d}/position_ids.npy", position_ids[:, 0, :].numpy().astype(np.int32))
        if image_name:
            save(f"{d}/vision_embeds.npy", vis.numpy().astype(np.float32))
        save(f"{d}/last_hidden.npy", last.numpy().astype(np.float32))
        save(f"{d}/embedding.npy", emb.numpy().astype(np.float32))
        entry = {"name": name, "image": image_name, "text": text, "prompt": prompt,
                 "grid_thw": grid[0].tolist() if grid is not None else None, "n_tokens": len(ids), "dir": f"cases/{name}"}
        if image_name:  # the processor's float32 patches, compared by digest (docs/testing.md#fixtures)
            pv = np.ascontiguousarray(pix["pixel_values"].numpy().astype("<f4"))
            entry["pixel_values_sha256"] = hashlib.sha256(pv.tobytes()).hexdigest()
        manifest["cases"].append(entry)
        print(name, len(ids), grid[0].tolist() if grid is not None else "-", file=sys.stderr)
    write_json(f"{OUT}/manifest.json", manifest)


if __name__ == "__main__":
    main()
