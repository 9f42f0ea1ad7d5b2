"""abc against Hugging Face transformers (float32, PyTorch CPU) on the same synthetic Qwen2-VL-2B
checkpoint, image, instruction and cores. Run by bench/transformers_side_by_side.sh, which prepares the
checkpoint and the converted .abc files and passes them here.

Preset vlm2vec (the prompt "<|image_pad|> {text}", causal attention, the last token's final hidden state,
L2-normalised: docs/presets-and-prompts.md), computed in transformers with Qwen2VLForConditionalGeneration's
language model (model.model: the lm_head, which an embedding does not use, is not run). Per thread count
(torch.set_num_threads and abc's thread count alike): one warm-up, then the best and median of --runs
embeddings, each from the image file to the vector (decode, preprocessing, model). The abc embeddings
run through the library (python/abc_embed.py) in this process after the transformers model is freed.
Prints a Markdown table and writes the numbers as JSON (--json)."""

import argparse
import gc
import json
import os
import statistics
import sys
import time


def timed(fn, runs):
    """Best and median wall seconds of `runs` calls after a warm-up, and the least CPU seconds of this
    process (all its threads) over them: on a machine shared with other jobs the CPU time is the
    steadier figure at one thread (at more, it also counts threads waiting for each other)."""
    out = fn()  # warm-up
    times, cpu = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return out, min(times), statistics.median(times), min(cpu)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--f32", required=True)
    ap.add_argument("--q8", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--library", default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]

    import numpy as np
    import torch
    import transformers
    from PIL import Image
    from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
    from abc_embed import Model

    prompt = "<|image_pad|> " + a.text
    t = time.perf_counter()
    # Qwen2VLProcessor's two halves by hand: AutoProcessor also builds the video processor, which needs
    # torchvision; the image processor here is the PIL one, what the processor uses without torchvision
    image_processor = Qwen2VLImageProcessor.from_pretrained(a.checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(a.checkpoint)
    model = Qwen2VLForConditionalGeneration.from_pretrained(a.checkpoint, dtype=torch.float32).eval()
    load_s = time.perf_counter() - t
    print("transformers %s, torch %s: loaded in %.1f s" % (transformers.__version__, torch.__version__, load_s),
          file=sys.stderr)
    lm = model.model  # Qwen2VLModel: vision tower + language model, no lm_head

    def hf_embed():
        image = Image.open(a.image).convert("RGB")
        inputs = dict(image_processor(images=[image], return_tensors="pt"))
        n_image = int(inputs["image_grid_thw"].prod()) // image_processor.merge_size ** 2
        inputs.update(tokenizer([prompt.replace("<|image_pad|>", "<|image_pad|>" * n_image)], return_tensors="pt"))
        with torch.inference_mode():
            # VLM2Vec's prompt has no <|vision_start|>, so under the M-RoPE rule of the transformers its
            # model was made with (and abc's model.mrope_rule vision_start) every position is the token's
            # index; transformers 5 would give the image tokens 3-D positions by token type instead
            positions = torch.arange(inputs["input_ids"].shape[1]).unsqueeze(0)
            out = lm(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                     pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"],
                     position_ids=positions)
        v = out.last_hidden_state[0, -1].double()
        return (v / v.norm()).numpy(), int(inputs["input_ids"].shape[1])

    rows = {}
    ref = None
    n_tokens = 0
    for n in threads:
        torch.set_num_threads(n)
        (vec, n_tokens), best, med, cpu = timed(hf_embed, a.runs)
        ref = vec
        rows[n] = {"transformers_f32": (best, med, cpu)}
        print("transformers f32, %d thread(s): best %.2f s, median %.2f s, CPU %.2f s" % (n, best, med, cpu),
              file=sys.stderr)
    del model, lm
    gc.collect()

    cos = {}
    for name, path in (("abc_f32", a.f32), ("abc_q8", a.q8)):
        for n in threads:
            with Model(path, threads=n, library=a.library) as m:
                vec, best, med, cpu = timed(lambda: m.embed(image=a.image, text=a.text, role="query"), a.runs)
            vec = np.asarray(vec, dtype=np.float64)
            cos[name] = float(np.dot(vec, ref) / np.linalg.norm(vec) / np.linalg.norm(ref))
            rows[n][name] = (best, med, cpu)
            print("%s, %d thread(s): best %.2f s, median %.2f s, CPU %.2f s, cosine %.6f" %
                  (name, n, best, med, cpu, cos[name]), file=sys.stderr)

    print("| threads | seconds | transformers f32 | abc f32 | abc q8 | abc f32 speed-up | abc q8 speed-up |")
    print("|--:|---|--:|--:|--:|--:|--:|")
    for n in threads:
        r = rows[n]
        for k, what in ((0, "wall, best"), (2, "CPU, least")):
            hf, f32, q8 = r["transformers_f32"][k], r["abc_f32"][k], r["abc_q8"][k]
            print("| %d | %s | %.2f | %.2f | %.2f | %.2fx | %.2fx |" % (n, what, hf, f32, q8, hf / f32, hf / q8))
    print()
    print("sequence %d tokens; best of %d runs after a warm-up (median: --json); cosine with transformers' "
          "embedding: abc f32 %.6f, abc q8 %.6f" % (n_tokens, a.runs, cos["abc_f32"], cos["abc_q8"]))
    if a.json:
        with open(a.json + ".tmp", "w") as f:
            json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "tokens": n_tokens,
                       "runs": a.runs, "cosine": cos,
                       "rows": {str(n): {k: {"best_s": v[0], "median_s": v[1], "cpu_s": v[2]} for k, v in r.items()}
                                for n, r in rows.items()}}, f, indent=1)
        os.replace(a.json + ".tmp", a.json)
    ok = cos["abc_f32"] > 0.9999 and cos["abc_q8"] > 0.99
    if not ok:
        print("embeddings differ: cosine below 0.9999 (f32) or 0.99 (q8)", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
