#!/usr/bin/env python3
"""Reference outputs for preset jina-v4 (jina-embeddings-v4) on a tiny random Qwen2.5-VL, the real
model's architecture: the checkpoint of tests/fixtures/qwen25vl-tiny (its ViT shard and config, with the
tiny Qwen2-VL's decoder shard and tokenizer, as tests/gen_qwen25vl_fixtures.py describes) plus jina's
multi_vector_projector (random, in this directory's shard), and three random peft LoRA task adapters named
like jina's (retrieval, text-matching, code).

Writes tests/fixtures/jina-tiny/:
  config.json          qwen25vl-tiny's config.json + "matryoshka_dims" [8, 16, 32] (jina's list is
                       [128, 256, 512, 1024, 2048] for 2048 dims: a tiny model needs tiny dims)
  multi_vector_projector.safetensors, model.safetensors.index.json
                       the projector [16, 32] + bias (jina's is [128, 2048]) and the index of all three shards
  adapters/NAME/       adapter_config.json + adapter_model.safetensors, saved by peft
  manifest.json        the cases, the versions used
  cases/NAME/{input_ids,position_ids,vision_embeds,last_hidden,embedding,embedding_dim8,embedding_dim16,
              multi_vector}.npy

Run from the repository root with a Python that has torch, transformers (5.x), peft, safetensors and Pillow,
e.g. a virtualenv outside the repository:  VENV/bin/python tests/gen_jina_fixtures.py
Without them it prints "SKIP gen_jina_fixtures: <reason>" and exits 0.

The computation follows modeling_jina_embeddings_v4.py (jinaai/jina-embeddings-v4), in float32 on the CPU:
  * text: "Query: " + text, or "Passage: " + text for prompt_name "passage" -- except under the
    text-matching task, where both sides take "Query: "; tokenised as is (no chat template, no BOS);
  * image: "<|im_start|>user\\n<|vision_start|><|image_pad|><|vision_end|>Describe the image.<|im_end|>\\n",
    the processor's own resize bounds (here the checkpoint's preprocessor_config.json);
  * the task's LoRA adapter on (peft set_adapter): its target regex takes the decoder's projections, the
    ViT blocks' gated MLP (gate/up/down_proj) and the multi-vector projector; M-RoPE positions from
    Qwen2.5-VL's get_rope_index, causal attention, the final-normed last hidden states;
  * single vector: the mean over the attention mask (every token) for text; for an image the mean over
    the tokens from <|vision_start|> to <|vision_end|>, both included; then L2 normalisation;
    truncate_dim: the first d values of the normalised vector, normalised again;
  * multi-vector: every token's last hidden state through multi_vector_projector (with the task's LoRA),
    L2-normalised per token, times the attention mask (all ones here: every token is kept).
The images only shrink in the resize (Pillow's bicubic upscaling differs between versions).
"""
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
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
except ImportError as e:  # an optional tool: the committed fixtures stay as they are
    print(f"SKIP gen_jina_fixtures: {e} (needs torch, transformers 5.x, peft, safetensors, Pillow, numpy)")
    sys.exit(0)

Q25 = "tests/fixtures/qwen25vl-tiny"
QWEN2VL = "tests/fixtures/qwen2vl-tiny/base"
Q25_FILES = ["preprocessor_config.json", "model-00002-of-00002.safetensors"]
SHARED = ["tokenizer.json", "tokenizer_config.json", "model-00001-of-00002.safetensors"]
PROJ_SHARD = "multi_vector_projector.safetensors"
MULTI_DIM = 16
IMAGES = "tests/fixtures/images"
OUT = "tests/fixtures/jina-tiny"
TASKS = ["retrieval", "text-matching", "code"]
DIMS = [8, 16, 32]
IMAGE_PROMPT = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe the image.<|im_end|>\n"
# jina-v4's adapter_config.json target_modules regex: every module under "model" ending in a decoder
# projection name -- which also takes the ViT blocks' gate/up/down_proj -- and the projectors
TARGETS = r"(.*(model).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$|.*(multi_vector_projector).*$)"

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


def write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=1)
        f.write("\n")


def main():
    torch.manual_seed(24)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    os.makedirs(OUT, exist_ok=True)
    cfg = json.load(open(f"{Q25}/config.json"))
    cfg["matryoshka_dims"] = DIMS
    write_json(f"{OUT}/config.json", cfg)
    H = cfg["hidden_size"]
    proj = {"multi_vector_projector.weight": (0.2 * torch.randn(MULTI_DIM, H)).contiguous(),
            "multi_vector_projector.bias": (0.05 * torch.randn(MULTI_DIM)).contiguous()}
    save_file(proj, f"{OUT}/{PROJ_SHARD}", metadata={"format": "pt"})
    index = json.load(open(f"{Q25}/model.safetensors.index.json"))
    for k in proj:
        index["weight_map"][k] = PROJ_SHARD
    write_json(f"{OUT}/model.safetensors.index.json", index)

    tmp = tempfile.mkdtemp(prefix="gen_jina_")
    try:
        for name in Q25_FILES:
            shutil.copy(f"{Q25}/{name}", f"{tmp}/{name}")
        for name in SHARED:
            shutil.copy(f"{QWEN2VL}/{name}", f"{tmp}/{name}")
        for name in ("config.json", "model.safetensors.index.json", PROJ_SHARD):
            shutil.copy(f"{OUT}/{name}", f"{tmp}/{name}")
        base = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp, dtype=torch.float32).eval()
        tok = AutoTokenizer.from_pretrained(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # JinaEmbeddingsV4Model's head, a top-level Linear beside the Qwen2.5-VL model
    base.multi_vector_projector = torch.nn.Linear(H, MULTI_DIM)
    with torch.no_grad():
        base.multi_vector_projector.weight.copy_(proj["multi_vector_projector.weight"])
        base.multi_vector_projector.bias.copy_(proj["multi_vector_projector.bias"])
    lcfg = dict(r=4, lora_alpha=8, target_modules=TARGETS, lora_dropout=0.0, init_lora_weights=False)
    model = get_peft_model(base, LoraConfig(**lcfg), adapter_name=TASKS[0])
    for t in TASKS[1:]:
        model.add_adapter(t, LoraConfig(**lcfg))
    # random A and B: the deltas (B·A·alpha/r, about 0.0016) are a tenth of the base weights (0.02), as a
    # trained LoRA is a small change; they still move every embedding far beyond the tolerances. Larger
    # ones made more positions of a random model fragile under q8 rounding (tests/test_jina.sh)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.normal_(0.0, 0.02)
    for t in TASKS:
        model.peft_config[t].base_model_name_or_path = "jina-tiny"
    shutil.rmtree(f"{OUT}/adapters", ignore_errors=True)
    model.save_pretrained(f"{OUT}/adapters")
    for t in TASKS:
        for junk in ("README.md",):
            for d in (f"{OUT}/adapters", f"{OUT}/adapters/{t}"):
                if os.path.exists(f"{d}/{junk}"):
                    os.remove(f"{d}/{junk}")
    model.eval()

    pre = json.load(open(f"{Q25}/preprocessor_config.json"))
    proc = Qwen2VLImageProcessorPil(**{k: v for k, v in pre.items() if k in (
        "min_pixels", "max_pixels", "patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std")})
    inner = model.base_model.model  # the Qwen2_5_VLForConditionalGeneration with LoRA layers inside
    image_token, vs, ve = inner.config.image_token_id, inner.config.vision_start_token_id, inner.config.vision_end_token_id
    manifest = {
        "generator": f"tests/gen_jina_fixtures.py; transformers {transformers.__version__}, peft {peft.__version__}, "
                     f"torch {torch.__version__}, Pillow {PIL.__version__}, float32 on CPU",
        "note": "jina-v4's prompts, task adapters, pooling, truncation and multi-vector output on a tiny random "
                "Qwen2.5-VL (qwen25vl-tiny's shards + this directory's projector)",
        "checkpoint": f"{Q25} + {QWEN2VL} shards + {PROJ_SHARD}", "multi_vector_dim": MULTI_DIM, "preset": "jina-v4", "tasks": TASKS, "matryoshka_dims": DIMS, "cases": [],
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
            multi = torch.nn.functional.normalize(inner.multi_vector_projector(last), dim=-1) * mask[0].unsqueeze(-1)
        d = f"{OUT}/cases/{name}"
        os.makedirs(d, exist_ok=True)
        save(f"{d}/input_ids.npy", np.array(ids, dtype=np.int32))
        save(f"{d}/position_ids.npy", pos[:, 0, :].numpy().astype(np.int32))
        if vis is not None:
            save(f"{d}/vision_embeds.npy", vis.numpy().astype(np.float32))
        save(f"{d}/last_hidden.npy", last.numpy().astype(np.float32))
        save(f"{d}/embedding.npy", emb.numpy().astype(np.float32))
        save(f"{d}/multi_vector.npy", multi.numpy().astype(np.float32))
        for dim in DIMS[:-1]:
            save(f"{d}/embedding_dim{dim}.npy",
                 torch.nn.functional.normalize(emb[:dim], p=2, dim=-1).numpy().astype(np.float32))
        manifest["cases"].append({"name": name, "task": task, "kind": kind,
                                  "image" if kind == "image" else "text": value, "prompt": prompt,
                                  "grid_thw": grid[0].tolist() if grid is not None else None, "n_tokens": len(ids),
                                  "dir": f"cases/{name}"})
        print(name, len(ids), grid[0].tolist() if grid is not None else "-", file=sys.stderr)
    write_json(f"{OUT}/manifest.json", manifest)


if __name__ == "__main__":
    main()
