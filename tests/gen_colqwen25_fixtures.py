#!/usr/bin/env python3
"""Reference outputs for preset colqwen2.5 (ColQwen2.5, vidore/colqwen2.5-v0.2: Qwen2.5-VL + LoRA + a
128-d projection custom_text_proj, one L2-normalised vector per token) on the tiny random Qwen2.5-VL of
tests/fixtures/qwen25vl-tiny (its ViT shard and config with the tiny Qwen2-VL's decoder shard and
tokenizer; the Makefile links them in build/qwen25vl-tiny). Writes tests/fixtures/colqwen25-tiny/
{adapter/, manifest.json} and cases/NAME/{input_ids,position_ids,vision_embeds,last_hidden,multi_vector}.npy.

Run from the repository root with a Python that has torch, transformers (5.x), peft and Pillow, e.g. a
virtualenv outside the repository:  VENV/bin/python tests/gen_colqwen25_fixtures.py
Without them it prints "SKIP ..." and exits 0 (the outputs are committed; nothing needs this to run).

The model ships as a PEFT adapter over Qwen2.5-VL: LoRA on the decoder's projections (colpali-engine's
regex, which leaves the ViT alone) and custom_text_proj saved whole (modules_to_save). The reference is
transformers' ColQwen2ForRetrieval built on the Qwen2.5-VL config (ColQwen2Config's vlm_config takes any
vision-language config; AutoModel gives Qwen2_5_VLModel) with the merged weights, fed as colpali-engine's
ColQwen2_5_Processor feeds it -- which differs from ColQwen2's in one place:
  * image: "<|im_start|>user\\n<|vision_start|><|image_pad|><|vision_end|>Describe the image.<|im_end|><|endoftext|>",
    the Qwen2-VL image processor with the checkpoint's bounds, max_pixels capped at 768 tokens (768·28·28,
    ColQwen2_5_Processor's max_num_visual_tokens default at the model's release; Qwen2.5-VL's own bound is
    far larger, the tiny checkpoint's is smaller and stays);
  * query: "Query: " + text + 10 × "<|endoftext|>" -- no "\\n" after them (ColQwen2Processor adds one);
  * every token is kept (attention mask all ones for one unpadded input): vectors [L, 128] =
    normalize(last_hidden · Wᵀ + b) per token; M-RoPE positions from get_rope_index passed explicitly, as
    colpali-engine passes input_ids and the grid (tests/gen_colqwen2_fixtures.py explains why).
"""
import hashlib
import json
import os
import shutil
import sys
import tempfile

try:
    import numpy as np
    import peft
    import PIL
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model
    from PIL import Image
    from transformers import AutoTokenizer, ColQwen2Config, ColQwen2ForRetrieval, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
except ImportError as e:  # the committed fixtures stand; regenerating needs the packages
    print(f"SKIP gen_colqwen25_fixtures: {e}")
    sys.exit(0)

Q25 = "tests/fixtures/qwen25vl-tiny"
QWEN2VL = "tests/fixtures/qwen2vl-tiny/base"
Q25_FILES = ["config.json", "preprocessor_config.json", "model-00002-of-00002.safetensors",
             "model.safetensors.index.json"]
SHARED = ["tokenizer.json", "tokenizer_config.json", "model-00001-of-00002.safetensors"]
IMAGES = "tests/fixtures/images"
OUT = "tests/fixtures/colqwen25-tiny"
IMAGE_PROMPT = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe the image.<|im_end|><|endoftext|>"
MAX_PIXELS = 768 * 28 * 28
DIM = 128
TARGETS = r"(.*(model)(?!.*visual).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$)"

# name, image (or None), query text (or None)
CASES = [
    ("doc_coffee", "coffee.png", None),
    ("doc_astronaut", "astronaut.png", None),
    ("query_coffee", None, "A cup of coffee on a saucer"),
]


def save(path, array):
    np.save(path, np.ascontiguousarray(array))


def main():
    torch.manual_seed(25)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    tmp = tempfile.mkdtemp(prefix="gen_colqwen25_")
    try:
        for name in Q25_FILES:
            shutil.copy(f"{Q25}/{name}", f"{tmp}/{name}")
        for name in SHARED:
            shutil.copy(f"{QWEN2VL}/{name}", f"{tmp}/{name}")
        base = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp, dtype=torch.float32).eval()
        tok = AutoTokenizer.from_pretrained(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    H = base.config.text_config.hidden_size
    base.custom_text_proj = torch.nn.Linear(H, DIM)  # colpali-engine's name for the projection
    lora = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, lora_dropout=0.0, target_modules=TARGETS,
                      modules_to_save=["custom_text_proj"])
    pm = get_peft_model(base, lora)
    with torch.no_grad():  # a visible but moderate update next to the base weights' 0.02 scale
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.mul_(0.5)
    pm.peft_config["default"].base_model_name_or_path = "qwen25vl-tiny"
    shutil.rmtree(f"{OUT}/adapter", ignore_errors=True)
    pm.save_pretrained(f"{OUT}/adapter")
    if os.path.exists(f"{OUT}/adapter/README.md"):
        os.remove(f"{OUT}/adapter/README.md")  # peft's model card template
    merged = pm.merge_and_unload().eval()

    cfg = ColQwen2Config(vlm_config=merged.config.to_dict(), embedding_dim=DIM)
    model = ColQwen2ForRetrieval(cfg).eval()
    assert type(model.vlm).__name__ == "Qwen2_5_VLModel", type(model.vlm)
    missing, unexpected = model.vlm.load_state_dict(merged.model.state_dict(), strict=False)
    assert not unexpected and all("lm_head" in k for k in missing), (missing, unexpected)
    model.embedding_proj_layer.load_state_dict(merged.custom_text_proj.state_dict())

    pre = json.load(open(f"{Q25}/preprocessor_config.json"))
    max_pixels = min(pre["max_pixels"], MAX_PIXELS)
    proc = Qwen2VLImageProcessorPil(min_pixels=pre["min_pixels"], max_pixels=max_pixels,
                                    **{k: v for k, v in pre.items() if k in ("patch_size", "temporal_patch_size",
                                                                             "merge_size", "image_mean", "image_std")})
    image_token = model.config.vlm_config.image_token_id
    manifest = {
        "generator": f"tests/gen_colqwen25_fixtures.py; transformers {transformers.__version__}, peft {peft.__version__}, "
                     f"torch {torch.__version__}, Pillow {PIL.__version__}, float32 on CPU",
        "checkpoint": f"{Q25} (+ {QWEN2VL} shards)", "adapter": f"{OUT}/adapter", "preset": "colqwen2.5", "dim": DIM,
        "image_bounds": [pre["min_pixels"], max_pixels], "cases": [],
    }
    shutil.rmtree(f"{OUT}/cases", ignore_errors=True)
    for name, image_name, text in CASES:
        prompt = IMAGE_PROMPT if image_name else f"Query: {text}{'<|endoftext|>' * 10}"
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        grid = pix = None
        with torch.no_grad():
            if image_name:
                img = Image.open(f"{IMAGES}/{image_name}").convert("RGB")
                pix = proc(images=[img], return_tensors="pt")
                grid = pix["image_grid_thw"]
                pos = ids.index(image_token)
                ids = ids[:pos] + [image_token] * (int(grid.prod()) // 4) + ids[pos + 1:]
            input_ids = torch.tensor([ids])
            mm = (input_ids == image_token).int()
            position_ids, _ = model.vlm.get_rope_index(input_ids, mm_token_type_ids=mm, image_grid_thw=grid,
                                                       attention_mask=torch.ones_like(input_ids))
            kw = dict(pixel_values=pix["pixel_values"][None], image_grid_thw=grid) if image_name else {}
            out = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), position_ids=position_ids,
                        output_hidden_states=True, **kw)
            emb = out.embeddings[0]
            last = out.hidden_states[-1][0]
            check = model.embedding_proj_layer(last)
            check = check / check.norm(dim=-1, keepdim=True)
            assert torch.allclose(check, emb, atol=1e-6)
            if image_name:
                vis = model.vlm.visual(pix["pixel_values"], grid_thw=grid).pooler_output
        d = f"{OUT}/cases/{name}"
        os.makedirs(d, exist_ok=True)
        save(f"{d}/input_ids.npy", np.array(ids, dtype=np.int32))
        save(f"{d}/position_ids.npy", position_ids[:, 0].numpy().astype(np.int32))
        if image_name:
            save(f"{d}/vision_embeds.npy", vis.numpy().astype(np.float32))
        save(f"{d}/last_hidden.npy", last.numpy().astype(np.float32))
        save(f"{d}/multi_vector.npy", emb.numpy().astype(np.float32))
        entry = {"name": name, "image": image_name, "text": text, "prompt": prompt,
                 "grid_thw": grid[0].tolist() if grid is not None else None, "n_tokens": len(ids), "dir": f"cases/{name}"}
        if image_name:
            pv = np.ascontiguousarray(pix["pixel_values"].numpy().astype("<f4"))
            entry["pixel_values_sha256"] = hashlib.sha256(pv.tobytes()).hexdigest()
        manifest["cases"].append(entry)
        print(name, len(ids), entry["grid_thw"], file=sys.stderr)
    with open(f"{OUT}/manifest.json", "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
