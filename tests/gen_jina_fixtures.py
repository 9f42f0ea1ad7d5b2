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
  adapters-combined/   the same three adapters in the layout of jina's release (its adapters/ folder): one
                       peft adapter whose Linear layers hold a LoRA per task (jina's MultiAdapterLinear,
                       installed through peft's custom-module hook), tensors <module>.lora_A.<task>.weight;
                       checked to give exactly the per-task adapters' outputs
  manifest.json        the cases, the versions used
  cases/NAME/{input_ids,position_ids,vision_embeds,last_hidden,embedding,embedding_dim8,embedding_dim16,
              multi_vector}.npy

Run from the repository root with a Python that has torch, transformers (5.x), peft, safetensors and Pillow,
e.g. a virtualenv outside the repository:  VENV/bin/python tests/gen_jina_fixtures.py
Without them it prints "SKIP gen_jina_fixtures: <reason>" and exits 0. With --combined-only it writes
adapters-combined/ alone, from the committed adapters/NAME/ (nothing else changes).

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
from functools import partial

try:
    import numpy as np
    import peft
    import PIL
    import torch
    import transformers
    from peft import LoraConfig, PeftModel, get_peft_model
    from peft.tuners.lora import LoraLayer
    from PIL import Image
    from safetensors.torch import load_file, save_file
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
COMBINED = f"{OUT}/adapters-combined"
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


def load_base(proj):
    """The tiny Qwen2.5-VL (the shards named above, this directory's config and projector shard) with
    jina's multi_vector_projector set to proj's tensors; and its tokenizer."""
    H = json.load(open(f"{OUT}/config.json"))["hidden_size"]
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
    return base, tok


def image_processor():
    pre = json.load(open(f"{Q25}/preprocessor_config.json"))
    return Qwen2VLImageProcessorPil(**{k: v for k, v in pre.items() if k in (
        "min_pixels", "max_pixels", "patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std")})


def run_case(inner, tok, proc, task, kind, value):
    """One case through inner (the Qwen2.5-VL with its LoRA layers, the task's adapter already active):
    prompt, grid_thw, ids, position_ids, vision embeds, last hidden states, embedding, multi-vector."""
    image_token, vs, ve = inner.config.image_token_id, inner.config.vision_start_token_id, inner.config.vision_end_token_id
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
    return prompt, grid, ids, pos, vis, last, emb, multi


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

    base, tok = load_base(proj)
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

    proc = image_processor()
    inner = model.base_model.model  # the Qwen2_5_VLForConditionalGeneration with LoRA layers inside
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
        prompt, grid, ids, pos, vis, last, emb, multi = run_case(inner, tok, proc, task, kind, value)
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


class MultiTaskLoraLinear(torch.nn.Module, LoraLayer):
    """The layer of jina's released adapter (custom_lora_module.py's MultiAdapterLinear, written anew):
    under each peft adapter name one LoRA per task, lora_A[adapter][task] = Linear(in, r) and
    lora_B[adapter][task] = Linear(r, out), one r and lora_alpha for every task; the output is peft's
    Linear's, base(x) + lora_B(lora_A(x)) * alpha / r, with the task's pair. jina passes the task to
    forward as task_label; here it is read from the shared `selector` dict, so that the model's own
    forward can be called unchanged."""

    def __init__(self, base_layer, adapter_name, config, task_names, selector, r=0, lora_alpha=1, **kwargs):
        torch.nn.Module.__init__(self)
        LoraLayer.__init__(self, base_layer, **kwargs)
        self.task_names, self.selector = list(task_names), selector
        self.fan_in_fan_out = False
        self._active_adapter = adapter_name
        self.r[adapter_name] = r
        self.lora_alpha[adapter_name] = lora_alpha
        self.scaling[adapter_name] = lora_alpha / r
        self.lora_dropout[adapter_name] = torch.nn.Identity()
        self.lora_A[adapter_name] = torch.nn.ModuleDict(
            {t: torch.nn.Linear(self.in_features, r, bias=False) for t in self.task_names})
        self.lora_B[adapter_name] = torch.nn.ModuleDict(
            {t: torch.nn.Linear(r, self.out_features, bias=False) for t in self.task_names})
        self.lora_bias[adapter_name] = False
        self.use_dora[adapter_name] = False
        self.set_adapter(self.active_adapters)

    def forward(self, x, *args, **kwargs):
        result = self.base_layer(x, *args, **kwargs)
        if self.disable_adapters:
            return result
        task = self.selector["task"]
        for adapter in self.active_adapters:
            if adapter in self.lora_A:
                lora_A, lora_B = self.lora_A[adapter][task], self.lora_B[adapter][task]
                result = result + lora_B(lora_A(self.lora_dropout[adapter](x))) * self.scaling[adapter]
        return result


def multi_task_config(config, selector):
    # peft's custom-module hook, as jina's from_pretrained installs its layer
    config._register_custom_module({torch.nn.Linear: partial(MultiTaskLoraLinear, task_names=TASKS, selector=selector)})
    return config


def write_combined():
    """adapters-combined/: the three task adapters of adapters/NAME/ in jina's released layout (one peft
    adapter whose every Linear is a MultiTaskLoraLinear), the same values, saved by peft's save_pretrained
    (tensor names <module>.lora_A.<task>.weight). Checks that the saved file, loaded back the way jina
    loads it, gives exactly the per-task adapters' outputs for every case."""
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    proj = load_file(f"{OUT}/{PROJ_SHARD}")
    selector = {"task": TASKS[0]}
    lcfg = dict(r=4, lora_alpha=8, target_modules=TARGETS, lora_dropout=0.0, init_lora_weights=False)
    model = get_peft_model(load_base(proj)[0], multi_task_config(LoraConfig(**lcfg), selector))
    params = {n: p for n, p in model.named_parameters() if "lora_" in n}
    filled = set()
    with torch.no_grad():
        for t in TASKS:
            for key, value in load_file(f"{OUT}/adapters/{t}/adapter_model.safetensors").items():
                name = key[:-len(".weight")] + f".default.{t}.weight"  # lora_A.weight -> lora_A.default.TASK.weight
                assert name in params and name not in filled, name
                params[name].copy_(value)
                filled.add(name)
    assert filled == set(params), sorted(set(params) - filled)[:3]
    model.peft_config["default"].base_model_name_or_path = "jina-tiny"
    tmp = tempfile.mkdtemp(prefix="gen_jina_combined_")
    try:
        model.save_pretrained(tmp)
        del model
        # jina's release was saved by a peft whose save_pretrained dropped ".default" anywhere in a key
        # (<module>.lora_A.<task>.weight); peft 0.21 drops it only before the last part and keeps
        # <module>.lora_A.default.<task>.weight, so the names are written as jina's file has them
        saved = load_file(f"{tmp}/adapter_model.safetensors")
        jina = {k.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B."): v for k, v in saved.items()}
        assert len(jina) == len(saved) == len(params), (len(jina), len(saved), len(params))
        for t in TASKS:  # the values of adapters/NAME/, under jina's names
            for key, value in load_file(f"{OUT}/adapters/{t}/adapter_model.safetensors").items():
                assert torch.equal(jina[key[:-len(".weight")] + f".{t}.weight"], value), (t, key)
        shutil.rmtree(COMBINED, ignore_errors=True)
        os.makedirs(COMBINED)
        shutil.copy(f"{tmp}/adapter_config.json", f"{COMBINED}/adapter_config.json")
        save_file(jina, f"{COMBINED}/adapter_model.safetensors", metadata={"format": "pt"})

        # the saved adapter loaded back as jina loads its adapters (peft's from_pretrained with the
        # custom module), against the per-task adapters
        combined = PeftModel.from_pretrained(load_base(proj)[0], tmp,
                                             config=multi_task_config(LoraConfig.from_pretrained(tmp), selector)).eval()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    per_task = PeftModel.from_pretrained(load_base(proj)[0], f"{OUT}/adapters/{TASKS[0]}", adapter_name=TASKS[0])
    for t in TASKS[1:]:
        per_task.load_adapter(f"{OUT}/adapters/{t}", adapter_name=t)
    per_task.eval()
    tok = load_base(proj)[1]
    proc = image_processor()
    for name, task, kind, value in CASES:
        selector["task"] = task
        per_task.set_adapter(task)
        got = run_case(combined.base_model.model, tok, proc, task, kind, value)
        want = run_case(per_task.base_model.model, tok, proc, task, kind, value)
        for label, i in (("last_hidden", 5), ("embedding", 6), ("multi_vector", 7)):
            d = (got[i] - want[i]).abs().max().item()
            assert torch.equal(got[i], want[i]), f"{name}: combined {label} differs from the per-task adapter's by {d}"
        ref = np.load(f"{OUT}/cases/{name}/last_hidden.npy")
        d = float(np.abs(got[5].numpy() - ref).max())
        assert d <= 1e-5 * float(np.abs(ref).max()), f"{name}: last_hidden {d} from the committed reference"
        print(f"{name}: combined = per-task adapter (bit for bit); max |last_hidden - reference| {d:.3g}", file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1:] == ["--combined-only"]:
        write_combined()
    elif sys.argv[1:]:
        sys.exit("usage: gen_jina_fixtures.py [--combined-only]")
    else:
        main()
        write_combined()
