#!/usr/bin/env bash
# tests/fuzz/gen_model_seed.sh OUT.abc — writes the model fuzz target's seed: the tiny Qwen2-VL fixture made
# smaller still (vision width 16, text hidden 16 with head_dim 8, 2+2 layers) with a 320-token byte-level
# vocabulary (the first 320 tokens of Qwen2's and the merges among them) and the special tokens renumbered
# from 320, synthetic weights (abc-synth), converted with preset vlm2vec in bf16. The whole file stays
# under 128 kB: a load costs tens of microseconds instead of rebuilding a 151k-entry merge table, and
# the fuzzer's copies of it stay in the sanitizer allocator's cached size classes. Needs python3 (standard
# library only), build/abc-synth and ./abc-convert (make all build/abc-synth).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:?usage: tests/fuzz/gen_model_seed.sh OUT.abc}
TINY=tests/fixtures/qwen2vl-tiny/base
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
python3 - "$TINY" "$DIR" <<'PY'
import json, sys
tiny, out = sys.argv[1], sys.argv[2]
N = 320
tok = json.load(open(tiny + "/tokenizer.json", encoding="utf-8"))
vocab = {k: v for k, v in tok["model"]["vocab"].items() if v < N}
merges = []
for m in tok["model"]["merges"]:
    a, b = m if isinstance(m, list) else m.split(" ", 1)
    if a in vocab and b in vocab and a + b in vocab:
        merges.append([a, b])
tok["model"]["vocab"] = vocab
tok["model"]["merges"] = merges
shift = {}
for i, t in enumerate(tok["added_tokens"]):
    shift[t["id"]] = N + i
    t["id"] = N + i
json.dump(tok, open(out + "/tokenizer.json", "w", encoding="utf-8"), ensure_ascii=False)
cfg = json.load(open(tiny + "/config.json"))
for k, v in list(cfg.items()):
    if k.endswith("token_id") and v in shift:
        cfg[k] = shift[v]
cfg["vocab_size"] = N + len(tok["added_tokens"])
cfg["hidden_size"] = 16
cfg["intermediate_size"] = 32
cfg["rope_scaling"]["mrope_section"] = [1, 1, 2]
cfg["vision_config"].update({"embed_dim": 16, "hidden_size": 16})
json.dump(cfg, open(out + "/config.json", "w"), indent=2)
PY
build/abc-synth "$DIR/config.json" "$DIR/hf" --tokenizer "$DIR/tokenizer.json" >/dev/null
cp "$TINY/preprocessor_config.json" "$TINY/chat_template.json" "$TINY/tokenizer_config.json" "$DIR/hf/" 2>/dev/null || true
./abc-convert "$DIR/hf" -o "$OUT" --preset vlm2vec --dtype bf16 --quiet
