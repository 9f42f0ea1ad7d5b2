#!/usr/bin/env python3
"""Reference outputs for preset colqwen2 (ColQwen2: Qwen2-VL + LoRA + a 128-d projection, one
L2-normalised vector per token) on the tiny random Qwen2-VL of tests/fixtures/qwen2vl-tiny/base:
writes tests/fixtures/colqwen2-tiny/{adapter/,manifest.json,scores.npy} and
cases/NAME/{input_ids,position_ids,vision_embeds,last_hidden,multi_vector}.npy (queries: maxsim.npy,
their row of scores.npy).

Run from the repository root with a Python that has torch, transformers (5.x), peft and Pillow, e.g. a
virtualenv outside the repository:  VENV/bin/python tests/gen_colqwen2_fixtures.py
Without them it prints "SKIP ..." and exits 0 (the outputs are committed; nothing needs this to run).

The model ships as vidore/colqwen2-v1.0 does: a PEFT adapter over a Qwen2-VL checkpoint, LoRA on the
decoder's linear layers and the projection custom_text_proj [128, hidden] (+ bias) saved whole
(modules_to_save; the tiny base has no projection of its own). The reference is transformers'
ColQwen2ForRetrieval with the merged weights (embedding_proj_layer = custom_text_proj), fed as
ColQwen2Processor feeds it:
  * image: "<|im_start|>user\\n<|vision_start|><|image_pad|><|vision_end|>Describe the image.<|im_end|><|endoftext|>",
    the Qwen2-VL image processor with the checkpoint's min_pixels and colpali-engine's 768-token cap
    (max_pixels 768·28·28), no earlier resize;
  * query: "Query: " + text + 10 × "<|endoftext|>" (the pad token, the query augmentation) + "\\n";
  * every token is kept (attention mask all ones for one unpadded input): vectors [L, 128] =
    normalize(last_hidden · Wᵀ + b) per token.
Positions: ColQwen2ForRetrieval calls the Qwen2-VL model with inputs_embeds only, and transformers 5
then numbers image tokens 1-D; colpali-engine, which trained the model, passes input_ids and the grid,
so the image tokens get M-RoPE positions. These references pass the M-RoPE positions
(get_rope_index) explicitly, as the model was trained; for queries both are the same.
MaxSim: scores[q, d] = Σ_i max_j ⟨q_i, d_j⟩ (ColQwen2Processor.score_retrieval on each pair alone) in scores.npy.
"""
import hashlib
import json
import os
import sys

try:
    import numpy as np
    import peft
    import PIL
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model
    from PIL import Image
    from transformers import AutoTokenizer, ColQwen2Config, ColQwen2ForRetrieval, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
except ImportError as e:  # the committed fixtures stand; regenerating needs the packages
    print(f"SKIP gen_colqwen2_fixtures: {e}")
    sys.exit(0)

BASE = "tests/fixtures/qwen2vl-tiny/base"
IMAGES = "tests/fixtures/images"
OUT = "tests/fixtures/colqwen2-tiny"
IMAGE_PROMPT = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe the image.<|im_end|><|endoftext|>"
MAX_PIXELS = 768 * 28 * 28
DIM = 128

# name, image (or None), query text (or None)
CASES = [
    ("doc_coffee", "coffee.png", None),
    ("doc_astronaut", "astronaut.png", None),
    ("query_coffee", None, "A cup of coffee on a saucer"),
    ("query_astronaut", None, "Who is wearing the space suit?"),
]


def save(path, array):
    np.save(path, np.ascontiguousarray(array))


def main():
    torch.manual_seed(24)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    base = Qwen2VLForConditionalGeneration.from_pretrained(BASE, dtype=torch.float32).eval()
    H = base.config.text_config.hidden_size
    base.custom_text_proj = torch.nn.Linear(H, DIM)  # colpali-engine's name for the projection
    lora = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, lora_dropout=0.0,
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                      modules_to_save=["custom_text_proj"])
    pm = get_peft_model(base, lora)
    with torch.no_grad():  # a visible but moderate update next to the base weights' 0.02 scale
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.mul_(0.5)
    pm.peft_config["default"].base_model_name_or_path = BASE
    pm.save_pretrained(f"{OUT}/adapter")
    os.remove(f"{OUT}/adapter/README.md")  # peft's model card template
    merged = pm.merge_and_unload().eval()

    cfg = ColQwen2Config(vlm_config=merged.config.to_dict(), embedding_dim=DIM)
    model = ColQwen2ForRetrieval(cfg).eval()
    missing, unexpected = model.vlm.load_state_dict(merged.model.state_dict(), strict=False)
    assert not unexpected and all("lm_head" in k for k in missing), (missing, unexpected)
    model.embedding_proj_layer.load_state_dict(merged.custom_text_proj.state_dict())

    tok = AutoTokenizer.from_pretrained(BASE)
    pre = json.load(open(f"{BASE}/preprocessor_config.json"))
    proc = Qwen2VLImageProcessorPil(min_pixels=pre["min_pixels"], max_pixels=MAX_PIXELS,
                                    **{k: v for k, v in pre.items() if k in ("patch_size", "temporal_patch_size",
                                                                             "merge_size", "image_mean", "image_std")})
    image_token = model.config.vlm_config.image_token_id
    manifest = {
        "generator": f"tests/gen_colqwen2_fixtures.py; transformers {transformers.__version__}, peft {peft.__version__}, "
                     f"torch {torch.__version__}, Pillow {PIL.__version__}, float32 on CPU",
        "checkpoint": BASE, "adapter": f"{OUT}/adapter", "preset": "colqwen2", "dim": DIM,
        "image_bounds": [pre["min_pixels"], MAX_PIXELS], "cases": [],
    }
    vectors = {}
    for name, image_name, text in CASES:
        prompt = IMAGE_PROMPT if image_name else f"Query: {text}{tok.pad_token * 10}\n"
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
            # the same vectors from the last hidden state by hand: the projection and normalisation this tests
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
        vectors[name] = emb
        entry = {"name": name, "image": image_name, "text": text, "prompt": prompt,
                 "grid_thw": grid[0].tolist() if grid is not None else None, "n_tokens": len(ids), "dir": f"cases/{name}"}
        if image_name:
            pv = np.ascontiguousarray(pix["pixel_values"].numpy().astype("<f4"))
            entry["pixel_values_sha256"] = hashlib.sha256(pv.tobytes()).hexdigest()
        manifest["cases"].append(entry)
        print(name, len(ids), entry["grid_thw"], file=sys.stderr)
    queries = [vectors[n] for n, img, _ in CASES if img is None]
    docs = [vectors[n] for n, img, _ in CASES if img is not None]
    scores = ColQwen2Processor_score(queries, docs)
    save(f"{OUT}/scores.npy", scores.astype(np.float32))
    for i, name in enumerate(n for n, img, _ in CASES if img is None):  # one query's row, for the CLI test
        save(f"{OUT}/cases/{name}/maxsim.npy", scores[i].astype(np.float32))
    manifest["scores"] = {"queries": [n for n, img, _ in CASES if img is None],
                          "documents": [n for n, img, _ in CASES if img is not None], "file": "scores.npy"}
    with open(f"{OUT}/manifest.json", "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


def ColQwen2Processor_score(queries, docs):
    """MaxSim as ColQwen2Processor.score_retrieval computes it, one (query, document) pair per call: in
    one call it pads shorter documents with zero vectors, and a query row whose dot products with a
    padded document are all negative then scores max(..., 0) instead of its true best."""
    out = np.zeros((len(queries), len(docs)), dtype=np.float32)
    for i, q in enumerate(queries):
        for j, d in enumerate(docs):
            out[i, j] = torch.einsum("bnd,csd->bcns", q[None], d[None]).max(dim=3)[0].sum(dim=2)[0, 0]
    return out


if __name__ == "__main__":
    main()
