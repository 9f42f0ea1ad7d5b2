#!/usr/bin/env python3
"""Reference outputs for preset jina-v4 (jina-embeddings-v4's single-vector embedding) on a TEST-ONLY
stand-in: the tiny random Qwen2-VL of tests/fixtures/qwen2vl-tiny/base with three random peft LoRA task
adapters named like jina's (retrieval, text-matching, code). The real model is Qwen2.5-VL-3B, whose
architecture this stand-in does not have; what is checked here is everything jina-v4 adds on top of the
backbone: the prompt rules, the task adapters chosen per call, the pooling, the Matryoshka truncation.

Writes tests/fixtures/jina-tiny/:
  config.json          the base's config.json + "matryoshka_dims" [8, 16, 32] (jina's list is
                       [128, 256, 512, 1024, 2048] for 2048 dims: a tiny model needs tiny dims)
  adapters/NAME/       adapter_config.json + adapter_model.safetensors, saved by peft
  manifest.json        the cases, the versions used
  cases/NAME/{input_ids,position_ids,vision_embeds,last_hidden,embedding,embedding_dim8,embedding_dim16}.npy

Run from the repository root with a Python that has torch, transformers (5.x), peft and Pillow, e.g. a
virtualenv outside the repository:  VENV/bin/python tests/gen_jina_fixtures.py
Without them it prints "SKIP gen_jina_fixtures: <reason>" and exits 0.

The computation follows modeling_jina_embeddings_v4.py (jinaai/jina-embeddings-v4), in float32 on the CPU:
  * text: "Query: " + text, or "Passage: " + text for prompt_name "passage" -- except under the
    text-matching task, where both sides take "Query: "; tokenised as is (no chat template, no BOS);
  * image: "<|im_start|>user\\n<|vision_start|><|image_pad|><|vision_end|>Describe the image.<|im_end|>\\n",
    the processor's own resize bounds (here the base's preprocessor_config.json);
  * the task's LoRA adapter on (peft set_adapter), M-RoPE positions from get_rope_index, causal
    attention, the final-normed last hidden states;
  * pooling: the mean over the attention mask (every token) for text; for an image the mean over the
    tokens from <|vision_start|> to <|vision_end|>, both included; then L2 normalisation;
  * truncate_dim: the first d values of the normalised vector, normalised again.
The images only shrink in the resize (Pillow's bicubic upscaling differs between versions).
"""
import json
import os
import shutil
import sys

try:
    import numpy as np
    import peft
    import PIL
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model
    from PIL import Image
    from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
except ImportError as e:  # an optional tool: the committed fixtures stay as they are
    print(f"SKIP gen_jina_fixtures: {e} (needs torch, transformers 5.x, peft, Pillow, numpy)")
    sys.exit(0)

BASE = "tests/fixtures/qwen2vl-tiny/base"
IMAGES = "tests/fixtures/images"
OUT = "tests/fixtures/jina-tiny"
TASKS = ["retrieval", "text-matching", "code"]
DIMS = [8, 16, 32]
IMAGE_PROMPT = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe the image.<|im_end|>\n"
# jina-v4's LoRA touches the language model's projections; the vision MLP too (its regex matches the
# Qwen2.5-VL vision blocks' gate/up/down_proj): fc1/fc2 stand in for those here, so the runtime's image
# side adapter path is covered as well
TARGETS = r".*(language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)|visual\.blocks\.\d+\.mlp\.fc(1|2))$"

# name, task, kind ("query" / "passage" text, or "image"), text or image file
CASES = [(f"{t}_{k}", t, k, v) for t in TASKS for k, v in (
    ("query", "What is the capital of France?"),
    ("passage", "Paris is the capital and largest city of France."),
    ("image", "camera.png" if t != "code" else "coffee.png"))]


def save(path, array):
    np.save(path, np.ascontiguousarray(array))


def prefix_for(task, kind):
    # _validate_encoding_params: PREFIX_DICT[prompt_name] unless the task is text-matching
    return "Query" if kind == "query" or task == "text-matching" else "Passage"


def main():
    torch.manual_seed(24)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    os.makedirs(OUT, exist_ok=True)
    cfg = json.load(open(f"{BASE}/config.json"))
    cfg["matryoshka_dims"] = DIMS
    with open(f"{OUT}/config.json", "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")

    base = Qwen2VLForConditionalGeneration.from_pretrained(BASE, dtype=torch.float32).eval()
    lcfg = dict(r=4, lora_alpha=8, target_modules=TARGETS, lora_dropout=0.0, init_lora_weights=False)
    model = get_peft_model(base, LoraConfig(**lcfg), adapter_name=TASKS[0])
    for t in TASKS[1:]:
        model.add_adapter(t, LoraConfig(**lcfg))
    # random A and B: the deltas (B·A·alpha/r, about 0.0016) are a tenth of the base weights (0.02), as a
    # trained LoRA is a small change; they still move every embedding far beyond the tolerances (the
    # tasks' image embeddings differ by cos 0.9993, texts by more). Larger ones (0.05, 0.3) made more
    # positions of this random model fragile under q8 rounding (tests/test_jina.sh)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.normal_(0.0, 0.02)
    for t in TASKS:
        model.peft_config[t].base_model_name_or_path = BASE
    shutil.rmtree(f"{OUT}/adapters", ignore_errors=True)
    model.save_pretrained(f"{OUT}/adapters")
    for t in TASKS:
        for junk in ("README.md",):
            for d in (f"{OUT}/adapters", f"{OUT}/adapters/{t}"):
                if os.path.exists(f"{d}/{junk}"):
                    os.remove(f"{d}/{junk}")
    model.eval()

    tok = AutoTokenizer.from_pretrained(BASE)
    pre = json.load(open(f"{BASE}/preprocessor_config.json"))
    proc = Qwen2VLImageProcessorPil(**{k: v for k, v in pre.items() if k in (
        "min_pixels", "max_pixels", "patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std")})
    inner = model.base_model.model  # the Qwen2VLForConditionalGeneration with LoRA layers inside
    image_token, vs, ve = inner.config.image_token_id, inner.config.vision_start_token_id, inner.config.vision_end_token_id
    manifest = {
        "generator": f"tests/gen_jina_fixtures.py; transformers {transformers.__version__}, peft {peft.__version__}, "
                     f"torch {torch.__version__}, Pillow {PIL.__version__}, float32 on CPU",
        "note": "TEST-ONLY stand-in: jina-v4's prompts, task adapters, pooling and truncation on the tiny Qwen2-VL "
                "(the real model is Qwen2.5-VL)",
        "checkpoint": BASE, "preset": "jina-v4", "tasks": TASKS, "matryoshka_dims": DIMS, "cases": [],
    }
    shutil.rmtree(f"{OUT}/cases", ignore_errors=True)
    for name, task, kind, value in CASES:
        model.set_adapter(task)
        grid = pix = None
        if kind == "image":
            prompt = IMAGE_PROMPT
            img = Image.open(f"{IMAGES}/{value}").convert("RGB")
            pix = proc(images=[img], return_tensors="pt")
            grid = pix["image_grid_thw"]
            ids = tok(prompt)["input_ids"]
            n_img = int(grid.prod()) // 4
            at = ids.index(image_token)
            ids = ids[:at] + [image_token] * n_img + ids[at + 1:]
        else:
            prompt = f"{prefix_for(task, kind)}: {value}"
            ids = tok(prompt)["input_ids"]
        input_ids = torch.tensor([ids])
        mask = torch.ones_like(input_ids)
        with torch.no_grad():
            if grid is not None:  # jina's get_rope_index call (a single image: the token-type rule agrees)
                pos, _ = inner.model.get_rope_index(input_ids, (input_ids == image_token).int(), image_grid_thw=grid,
                                                    attention_mask=mask)
            else:  # text: the 1-D positions on all three components
                pos = torch.arange(len(ids)).view(1, 1, -1).expand(3, 1, -1)
            kw = dict(pixel_values=pix["pixel_values"].float(), image_grid_thw=grid) if pix is not None else {}
            out = inner.model(input_ids=input_ids, attention_mask=mask, position_ids=pos, **kw)
            last = out.last_hidden_state[0]
            vis = inner.model.visual(pix["pixel_values"].float(), grid_thw=grid).pooler_output if pix is not None else None
            if kind == "image":
                s, e = ids.index(vs), ids.index(ve)
                pooled = last[s:e + 1].mean(dim=0)
            else:
                pooled = (last * mask[0].unsqueeze(-1)).sum(dim=0) / mask.sum()
            emb = torch.nn.functional.normalize(pooled, dim=-1)
        d = f"{OUT}/cases/{name}"
        os.makedirs(d, exist_ok=True)
        save(f"{d}/input_ids.npy", np.array(ids, dtype=np.int32))
        save(f"{d}/position_ids.npy", pos[:, 0, :].numpy().astype(np.int32))
        if vis is not None:
            save(f"{d}/vision_embeds.npy", vis.numpy().astype(np.float32))
        save(f"{d}/last_hidden.npy", last.numpy().astype(np.float32))
        save(f"{d}/embedding.npy", emb.numpy().astype(np.float32))
        for dim in DIMS[:-1]:
            save(f"{d}/embedding_dim{dim}.npy",
                 torch.nn.functional.normalize(emb[:dim], p=2, dim=-1).numpy().astype(np.float32))
        manifest["cases"].append({"name": name, "task": task, "kind": kind,
                                  "image" if kind == "image" else "text": value, "prompt": prompt,
                                  "grid_thw": grid[0].tolist() if grid is not None else None, "n_tokens": len(ids),
                                  "dir": f"cases/{name}"})
        print(name, len(ids), grid[0].tolist() if grid is not None else "-", file=sys.stderr)
    with open(f"{OUT}/manifest.json", "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
