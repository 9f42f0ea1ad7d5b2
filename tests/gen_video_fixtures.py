#!/usr/bin/env python3
"""Reference outputs for Qwen2-VL video input (VLM2Vec-V2's video path) on the tiny random Qwen2-VL of
tests/fixtures/qwen2vl-tiny (base + the vlm2vec DoRA adapter merged, as build/tiny-vlm2vec.abc):
writes tests/fixtures/qwen2vl-tiny-video/frames/NN.png, manifest.json and
cases/NAME/{pixel_values,input_ids,position_ids,vision_embeds,last_hidden,embedding}.npy.

Run from the repository root with a Python that has torch, torchvision, transformers (5.x), peft and
Pillow, e.g. a virtualenv outside the repository:  VENV/bin/python tests/gen_video_fixtures.py

The frames are 56x56 crops of tests/fixtures/images/astronaut.png sliding across it (a small camera
pan). At that size neither qwen_vl_utils' frame resize (VLM2Vec-V2's demo bounds 4·28·28 .. 360·420) nor
the processor's (3136 .. 12845056 per video) changes them, so the pixels are transformers' video
processor's own: rescale, normalise, frames paired into temporal patches of 2 (an odd count repeats the
last frame), patches in merge order. Then, in float32 on the CPU: the vision tower on the video grid
(attention within each temporal step), the <|video_pad|> tokens replaced by its output, M-RoPE ids by
the rule of transformers <= 4.5x (3-D only for runs announced by <|vision_start|>: VLM2Vec's own prompt
"<|video_pad|> {text}" has none, so 1-D; the raw prompt case has one, so t/h/w ids with t = the
temporal step), causal attention, the last token, L2 normalisation.
"""
import json
import os

import numpy as np
import PIL
import torch
import transformers
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file
from PIL import Image
from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

TINY = "tests/fixtures/qwen2vl-tiny"
OUT = "tests/fixtures/qwen2vl-tiny-video"
N_FRAMES = 4

# name, frames used, text, raw prompt (None: the vlm2vec template "<|video_pad|> {text}")
CASES = [
    ("video4_text", 4, "Represent the given video.", None),
    ("video3_odd", 3, "Represent the given video.", None),
    ("video4_vision_start", 4, None, "<|vision_start|><|video_pad|><|vision_end|>Describe this video."),
]


def positions(ids, grid, video_token, vision_start, merge=2):
    """transformers <= 4.5x get_rope_index for one video run (announced or not)."""
    L = len(ids)
    announced = any(ids[i] == vision_start and ids[i + 1] == video_token for i in range(L - 1))
    pos = np.zeros((3, L), dtype=np.int32)
    t, h, w = grid
    mh, mw = h // merge, w // merge
    nxt, i = 0, 0
    while i < L:
        if ids[i] == video_token and announced:
            n = t * mh * mw
            k = np.arange(n)
            pos[0, i:i + n] = nxt + k // (mh * mw)
            pos[1, i:i + n] = nxt + (k // mw) % mh
            pos[2, i:i + n] = nxt + k % mw
            nxt += max(t, mh, mw)
            i += n
        else:
            pos[:, i] = nxt
            nxt += 1
            i += 1
    return pos


def merged_vlm2vec_model():
    """Base + the DoRA adapter, merged. The adapter's keys name the transformers 4.x layout
    (model.layers.N); transformers 5 nests the decoder as model.language_model, so they are renamed
    before loading (peft would otherwise skip them with a warning and merge nothing)."""
    base = Qwen2VLForConditionalGeneration.from_pretrained(f"{TINY}/base", torch_dtype=torch.float32)
    adapter = f"{TINY}/vlm2vec_dora_adapter"
    model = get_peft_model(base, LoraConfig.from_pretrained(adapter))
    state = {k.replace("base_model.model.model.layers.", "base_model.model.model.language_model.layers."): v
             for k, v in load_file(f"{adapter}/adapter_model.safetensors").items()}
    result = set_peft_model_state_dict(model, state)
    assert not [k for k in result.unexpected_keys if "lora" in k], result.unexpected_keys
    return model.merge_and_unload().eval()


def main():
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    os.makedirs(f"{OUT}/frames", exist_ok=True)
    src = Image.open("tests/fixtures/images/astronaut.png").convert("RGB")
    frames = []
    for k in range(N_FRAMES):
        f = src.crop((200 + 9 * k, 120 + 5 * k, 256 + 9 * k, 176 + 5 * k))
        f.save(f"{OUT}/frames/{k:02d}.png")
        frames.append(Image.open(f"{OUT}/frames/{k:02d}.png").convert("RGB"))

    model = merged_vlm2vec_model()
    tok = AutoTokenizer.from_pretrained(f"{TINY}/base")
    pre = json.load(open(f"{TINY}/base/preprocessor_config.json"))
    vp = Qwen2VLVideoProcessor(min_pixels=pre["min_pixels"], max_pixels=pre["max_pixels"],
                               patch_size=14, temporal_patch_size=2, merge_size=2,
                               image_mean=pre["image_mean"], image_std=pre["image_std"])
    video_token, vision_start = model.config.video_token_id, model.config.vision_start_token_id
    manifest = {
        "generator": f"tests/gen_video_fixtures.py; transformers {transformers.__version__}, torch {torch.__version__}, "
                     f"Pillow {PIL.__version__}, float32 on CPU",
        "model": "qwen2vl-tiny base + vlm2vec_dora_adapter merged (build/tiny-vlm2vec.abc)",
        "frames": [f"frames/{k:02d}.png" for k in range(N_FRAMES)],
        "cases": [],
    }
    for name, n, text, raw in CASES:
        prompt = raw if raw else f"<|video_pad|> {text}"
        out = vp(videos=[frames[:n]], do_sample_frames=False, return_tensors="pt")
        pv, grid = out["pixel_values_videos"].float(), out["video_grid_thw"]
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        n_vid = int(grid.prod()) // 4
        at = ids.index(video_token)
        ids = ids[:at] + [video_token] * n_vid + ids[at + 1:]
        pos = positions(ids, grid[0].tolist(), video_token, vision_start)
        if raw:  # an announced run: transformers 5's own rule gives the same ids here (T <= grid h, w / 2)
            types = torch.tensor([[2 if t == video_token else 0 for t in ids]])
            tf_pos, _ = model.model.get_rope_index(torch.tensor([ids]), types, video_grid_thw=grid)
            assert (tf_pos[:, 0].numpy() == pos).all(), (tf_pos, pos)
        with torch.no_grad():
            x = torch.tensor([ids])
            emb = model.model.get_input_embeddings()(x)
            vis = model.model.visual(pv, grid_thw=grid).pooler_output
            emb[x == video_token] = vis
            last = model.model.language_model(inputs_embeds=emb, position_ids=torch.from_numpy(pos)[:, None].long(),
                                              attention_mask=torch.ones_like(x)).last_hidden_state[0]
            vec = torch.nn.functional.normalize(last[-1:], p=2, dim=1)[0]
        d = f"{OUT}/cases/{name}"
        os.makedirs(d, exist_ok=True)
        np.save(f"{d}/pixel_values.npy", pv.numpy().astype(np.float32))
        np.save(f"{d}/input_ids.npy", np.array(ids, dtype=np.int32))
        np.save(f"{d}/position_ids.npy", pos)
        np.save(f"{d}/vision_embeds.npy", vis.numpy().astype(np.float32))
        np.save(f"{d}/last_hidden.npy", last.numpy().astype(np.float32))
        np.save(f"{d}/embedding.npy", vec.numpy().astype(np.float32))
        manifest["cases"].append({"name": name, "frames": n, "text": text, "prompt": prompt,
                                  "grid_thw": grid[0].tolist(), "n_tokens": len(ids), "dir": f"cases/{name}"})
        print(name, grid[0].tolist(), len(ids))
    with open(f"{OUT}/manifest.json", "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
