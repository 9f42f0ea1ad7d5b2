#!/usr/bin/env python3
"""Reference outputs for preset gme (GME-Qwen2-VL) on the tiny random Qwen2-VL of
tests/fixtures/qwen2vl-tiny/base: writes tests/fixtures/gme-tiny/manifest.json and
cases/NAME/{input_ids,position_ids,vision_embeds,last_hidden,embedding}.npy.

Run from the repository root with a Python that has torch, transformers (5.x) and Pillow, e.g. a
virtualenv outside the repository:  VENV/bin/python tests/gen_gme_fixtures.py

It follows GME's own inference script (gme_inference.py of Alibaba-NLP/gme-Qwen2-VL-2B-Instruct;
docs/presets-and-prompts.md#gme) step by step, in float32 on the CPU:
  * the image: RGB, then qwen_vl_utils' smart_resize (factor 28, 4..16384 tokens) with Pillow's
    default resize filter, then the Qwen2-VL image processor with min_pixels 256·784 and
    max_pixels 1280·784 (GME's min/max_image_tokens);
  * the prompt: "<|im_start|>system\\n{instruction}<|im_end|>\\n<|im_start|>user\\n"
    + ("<|vision_start|><|image_pad|><|vision_end|>" if image) + text
    + "<|im_end|>\\n<|im_start|>assistant\\n<|endoftext|>", instruction defaulting to
    "You are a helpful assistant.";
  * the decoder is called with inputs_embeds and no position ids, so every token, image tokens
    included, gets the 1-D position of its index (position_ids below are those);
  * causal attention, the last token's hidden state, L2-normalised.

The images are downscaled by both resizes: Pillow 13.0's bicubic differs from the Pillow 9.4 results
the runtime and the other fixtures follow (docs/image-pipeline.md) when one axis grows (rocket.jpg,
640x427 -> 644x420: up to 7 levels apart), while pure reductions agree byte for byte.
"""
import hashlib
import json
import os
import sys

import numpy as np
import PIL
import torch
import transformers
from PIL import Image
from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_smart_resize_cases import smart_resize_qvu  # noqa: E402  (same rounding, one copy)

BASE = "tests/fixtures/qwen2vl-tiny/base"
IMAGES = "tests/fixtures/images"
OUT = "tests/fixtures/gme-tiny"
DEFAULT_INSTRUCTION = "You are a helpful assistant."

# name, image (or None), text (or None), instruction (None: the default)
CASES = [
    ("gme_query_astronaut", "astronaut.png", "What is the person holding?", None),
    ("gme_query_camera", "camera.png", "What is the man holding?", "Represent the image and the question for retrieval."),
    ("gme_query_text", None, "A red rocket on a launch pad", "Find an image that matches the given text."),
    ("gme_cand_image_coffee", "coffee.png", None, None),
    ("gme_cand_text", None, "The Tesla Cybertruck is a battery electric pickup truck.", None),
]


def smart_resize_stage1(height, width):
    """qwen_vl_utils' rounding with GME's fetch_image bounds (4..16384 tokens of 28x28)."""
    return smart_resize_qvu(height, width, 28, 4 * 28 * 28, 16384 * 28 * 28)


def prompt_for(image, text, instruction):
    user = ("<|vision_start|><|image_pad|><|vision_end|>" if image else "") + (text or "")
    return (f"<|im_start|>system\n{instruction or DEFAULT_INSTRUCTION}<|im_end|>\n<|im_start|>user\n{user}"
            "<|im_end|>\n<|im_start|>assistant\n<|endoftext|>")


def save(path, array):
    np.save(path, np.ascontiguousarray(array))


def main():
    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    model = Qwen2VLForConditionalGeneration.from_pretrained(BASE, torch_dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(BASE)
    proc = Qwen2VLImageProcessorPil(min_pixels=256 * 28 * 28, max_pixels=1280 * 28 * 28,
                                    **{k: v for k, v in json.load(open(f"{BASE}/preprocessor_config.json")).items()
                                       if k in ("patch_size", "temporal_patch_size", "merge_size", "image_mean",
                                                "image_std")})
    image_token = model.config.image_token_id
    manifest = {
        "generator": f"tests/gen_gme_fixtures.py; transformers {transformers.__version__}, torch {torch.__version__}, "
                     f"Pillow {PIL.__version__}, float32 on CPU",
        "checkpoint": BASE,
        "preset": "gme",
        "image_bounds_stage1": [4 * 784, 16384 * 784],
        "image_bounds_stage2": [256 * 784, 1280 * 784],
        "cases": [],
    }
    for name, image_name, text, instruction in CASES:
        prompt = prompt_for(image_name, text, instruction)
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        grid = None
        with torch.no_grad():
            if image_name:
                img = Image.open(f"{IMAGES}/{image_name}").convert("RGB")
                h, w = smart_resize_stage1(img.height, img.width)
                img = img.resize((w, h))
                pix = proc(images=[img], return_tensors="pt")
                grid = pix["image_grid_thw"]
                n_img = int(grid.prod()) // 4
                pos = ids.index(image_token)
                ids = ids[:pos] + [image_token] * n_img + ids[pos + 1:]
            input_ids = torch.tensor([ids])
            embeds = model.model.get_input_embeddings()(input_ids)
            if image_name:
                vis = model.model.visual(pix["pixel_values"].float(), grid_thw=grid).pooler_output
                embeds[input_ids == image_token] = vis
            out = model.model.language_model(inputs_embeds=embeds, attention_mask=torch.ones_like(input_ids))
            last = out.last_hidden_state[0]
            emb = torch.nn.functional.normalize(last[-1:], p=2, dim=1)[0]
        d = f"{OUT}/cases/{name}"
        os.makedirs(d, exist_ok=True)
        L = len(ids)
        save(f"{d}/input_ids.npy", np.array(ids, dtype=np.int32))
        save(f"{d}/position_ids.npy", np.broadcast_to(np.arange(L, dtype=np.int32), (3, L)))
        if image_name:
            save(f"{d}/vision_embeds.npy", vis.numpy().astype(np.float32))
        save(f"{d}/last_hidden.npy", last.numpy().astype(np.float32))
        save(f"{d}/embedding.npy", emb.numpy().astype(np.float32))
        manifest["cases"].append({
            "name": name, "image": image_name, "text": text,
            "instruction": instruction or DEFAULT_INSTRUCTION, "prompt": prompt,
            "grid_thw": grid[0].tolist() if grid is not None else None, "n_tokens": L, "dir": f"cases/{name}",
        })
        if image_name:  # the processor's float32 patches, compared by digest (docs/testing.md#fixtures)
            pv = np.ascontiguousarray(pix["pixel_values"].numpy().astype("<f4"))
            manifest["cases"][-1]["pixel_values_sha256"] = hashlib.sha256(pv.tobytes()).hexdigest()
        print(name, L, grid[0].tolist() if grid is not None else "-", file=sys.stderr)
    with open(f"{OUT}/manifest.json", "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
