"""Tests of python/abc_embed.py, run by tests/test_python.sh (which passes the paths in the environment).

Checks Model.embed and Model.encode against `abc embed -o` (bit for bit: same library code) and against the
transformers reference embeddings of the fixture (docs/testing.md tolerances), errors as AbcError with the
library's message, close/with, and the list fallback when numpy is missing (ABC_TEST_NO_NUMPY=1 hides it).
Prints "ok ..."/"FAIL ..." lines and "RESULT passed failed skipped"."""
import ctypes
import math
import os
import struct
import sys

if os.environ.get("ABC_TEST_NO_NUMPY") == "1":
    sys.modules["numpy"] = None  # import numpy now raises ImportError

sys.path.insert(0, os.path.join(os.environ["ABC_ROOT"], "python"))
import abc_embed  # noqa: E402

passed = failed = skipped = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok   " + name)
    else:
        failed += 1
        print("FAIL %s %s" % (name, detail))


def read_npy_f32(path):
    """float32 .npy (little endian) as a flat list of floats and the shape, without numpy."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:6] == b"\x93NUMPY"
    hlen = struct.unpack("<H", data[8:10])[0]
    header = data[10:10 + hlen].decode()
    assert "'<f4'" in header, header
    shape = tuple(int(x) for x in header.split("'shape': (")[1].split(")")[0].split(",") if x.strip())
    n = 1
    for s in shape:
        n *= s
    return list(struct.unpack("<%df" % n, data[10 + hlen:10 + hlen + 4 * n])), shape


def as_list(v):
    return [float(x) for x in (v.tolist() if hasattr(v, "tolist") else v)]


def bits(v):
    return struct.pack("<%df" % len(v), *v)


def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


root = os.environ["ABC_ROOT"]
tmp = os.environ["ABC_TMP"]
fix = os.path.join(root, "tests/fixtures/qwen2vl-tiny/cases")
img = os.path.join(root, "tests/fixtures/images")
have_numpy = abc_embed._np is not None
mode = "numpy" if have_numpy else "lists (no numpy)"
print("-- python %s, vectors as %s" % (sys.version.split()[0], mode))

cases = [  # name, model, kwargs (the CLI runs of test_python.sh wrote TMP/<name>.npy with the same input)
    ("abc_query_astronaut", "abc", dict(image=os.path.join(img, "astronaut.png"), text="What is the person holding?", role="query")),
    ("abc_cand_image_coffee", "abc", dict(image=os.path.join(img, "coffee.png"), role="candidate")),
    ("abc_cand_text", "abc", dict(text="a cup of coffee on a wooden table", role="candidate")),
    ("vlm2vec_text", "vlm", dict(text="A person in a space suit", role="candidate")),
]
c_sizes = [int(x) for x in os.environ["ABC_STRUCT_SIZES"].split()]
mirrors = [ctypes.sizeof(t) for t in (abc_embed._ModelParams, abc_embed._ContextParams, abc_embed._Input, abc_embed._Error)]
check("ctypes mirrors have abc.h's struct sizes (params, context params, input, error): %s vs %s" % (mirrors, c_sizes),
      mirrors == c_sizes)
if mirrors != c_sizes:  # calling through mismatched structs would corrupt memory
    print("RESULT %d %d %d" % (passed, failed, skipped))
    sys.exit(1)
models = {"abc": os.environ["ABC_MODEL_ABC"], "vlm": os.environ["ABC_MODEL_VLM"]}
opened = {k: abc_embed.Model(p, threads=2) for k, p in models.items()}
check("Model: dim 32, preset abc", opened["abc"].dim == 32 and opened["abc"].preset == "abc")
for name, which, kw in cases:
    v = opened[which].embed(**kw)
    check("%s: embed returns %s" % (name, mode), (type(v).__name__ == "ndarray" and str(v.dtype) == "float32" and v.shape == (32,))
          if have_numpy else (isinstance(v, list) and len(v) == 32))
    cli, _ = read_npy_f32(os.path.join(tmp, name + ".npy"))
    check("%s: embed equals `abc embed -o` bit for bit" % name, bits(as_list(v)) == bits(cli))
    ref, _ = read_npy_f32(os.path.join(fix, name, "embedding.npy"))
    c = cos(as_list(v), ref)
    d = max(abs(a - b) for a, b in zip(as_list(v), ref))
    check("%s: vs transformers reference cos=%.9f max|d|=%.2g" % (name, c, d), c >= 0.99999 and d <= 1e-4)

# encode: mixed inputs, batches of 2 over 3 inputs, equals embed one at a time
abc = opened["abc"]
items = ["a cup of coffee on a wooden table", {"image": os.path.join(img, "coffee.png"), "role": "candidate"},
         {"image": os.path.join(img, "astronaut.png"), "text": "What is the person holding?"}]
m = abc.encode(items, batch_size=2)
shape = m.shape if have_numpy else (len(m), len(m[0]))
check("encode: shape (3, 32)", tuple(shape) == (3, 32), str(shape))
singles = [abc.embed(text=items[0]), abc.embed(**items[1]), abc.embed(**items[2])]
check("encode rows equal embed one at a time bit for bit",
      all(bits(as_list(m[i])) == bits(as_list(singles[i])) for i in range(3)))
stacked, _ = read_npy_f32(os.path.join(tmp, "abc_query_astronaut.npy"))
check("encode row 2 (auto role: image + text is a query) equals the CLI query", bits(as_list(m[2])) == bits(stacked))
with open(os.path.join(img, "coffee.png"), "rb") as f:
    png = f.read()
v = abc.embed(image=png, role="candidate")
check("embed(image=bytes) equals the path", bits(as_list(v)) == bits(as_list(singles[1])))
empty = abc.encode([], batch_size=4)
check("encode([]) is empty", len(empty) == 0)

# errors carry the library's status and message
def raises(fn, status_name, needle):
    try:
        fn()
    except abc_embed.AbcError as e:
        return e.status_name == status_name and needle in str(e), str(e)
    except Exception as e:  # noqa: BLE001
        return False, "%s: %s" % (type(e).__name__, e)
    return False, "no exception"


ok, why = raises(lambda: abc.embed(image=os.path.join(tmp, "missing.png")), "input/output error", "missing.png")
check("missing image: AbcError(input/output error) naming the file (%s)" % why, ok)
# video frames (paths) on the vlm2vec model, against the fixture
frames_dir = os.path.join(os.environ["ABC_ROOT"], "tests", "fixtures", "qwen2vl-tiny-video")
frame_paths = [os.path.join(frames_dir, "frames", "%02d.png" % k) for k in range(4)]
vref, _ = read_npy_f32(os.path.join(frames_dir, "cases", "video4_text", "embedding.npy"))
vv = opened["vlm"].embed(video=frame_paths, text="Represent the given video.")
check("embed(video=paths) matches the video fixture (cos >= 0.99999)", cos(as_list(vv), vref) >= 0.99999,
      "cos %.9f" % cos(as_list(vv), vref))
ok, why = raises(lambda: opened["vlm"].embed(video=frame_paths[:1] + [os.path.join(tmp, "missing.png")]),
                 "input/output error", "missing.png")
check("embed(video=...) with a missing frame raises", ok, why)
ok, why = raises(lambda: abc.embed(text="caf\udce9"), "invalid UTF-8", "UTF-8")
check("invalid UTF-8: AbcError (%s)" % why, ok)
ok, why = raises(lambda: abc.encode(["fine", {"image": os.path.join(tmp, "gone.png")}], batch_size=8), "input/output error", "input 1:")
check("encode: the failing input's index in the message (%s)" % why, ok)
ok, why = raises(lambda: abc.embed(image=b"GARBAGE"), "bad image", "")
check("corrupt image bytes: AbcError(bad image) (%s)" % why, ok)
ok, why = raises(lambda: abc_embed.Model(os.path.join(tmp, "nope.abc")), "input/output error", "nope.abc")
check("missing model file: AbcError (%s)" % why, ok)
try:
    abc.embed(text="x", role="boss")
    check("bad role: ValueError", False)
except ValueError:
    check("bad role: ValueError", True)

# task adapters and Matryoshka dims (preset jina-v4 on the tiny Qwen2.5-VL, tests/fixtures/jina-tiny)
with abc_embed.Model(os.environ["ABC_MODEL_JINA"], threads=1) as jina:
    jfix = os.path.join(root, "tests/fixtures/jina-tiny/cases/code_passage")
    v = jina.embed(text="Paris is the capital and largest city of France.", role="candidate", task="code")
    ref, _ = read_npy_f32(os.path.join(jfix, "embedding.npy"))
    c, d = cos(as_list(v), ref), max(abs(a - b) for a, b in zip(as_list(v), ref))
    check("jina task=code vs reference cos=%.9f max|d|=%.2g" % (c, d), c >= 0.99999 and d <= 1e-4)
    v8 = jina.embed(text="Paris is the capital and largest city of France.", role="candidate", task="code", dim=8)
    ref8, _ = read_npy_f32(os.path.join(jfix, "embedding_dim8.npy"))
    c, d = cos(as_list(v8), ref8), max(abs(a - b) for a, b in zip(as_list(v8), ref8))
    check("jina dim=8: 8 values, vs reference cos=%.9f" % c, len(as_list(v8)) == 8 and c >= 0.99999 and d <= 1e-4)
    rows = jina.encode([{"text": "Paris is the capital and largest city of France.", "role": "candidate", "task": "code"}])
    check("jina encode with a task = embed", bits(as_list(rows[0])) == bits(as_list(v)))
    ok, why = raises(lambda: jina.embed(text="x", task="nope"), "invalid argument", "retrieval, text-matching, code")
    check("jina unknown task: AbcError (%s)" % why, ok)
    rows = jina.encode([{"text": "Paris is the capital and largest city of France.", "role": "candidate", "task": "code",
                         "dim": 8}])
    r0 = as_list(rows[0])
    check("jina encode with dim 8: embed(dim=8)'s 8 values, then zeros",
          len(r0) == 32 and bits(r0[:8]) == bits(as_list(v8)) and r0[8:] == [0.0] * 24)
    # multi-vector output: one [T, 16] entry per input, against the fixture's token vectors
    check("jina multi_dim 16", jina.multi_dim == 16, str(jina.multi_dim))
    img = os.path.join(root, "tests/fixtures/images/coffee.png")
    mv = jina.encode_multi([{"text": "What is the capital of France?", "role": "query", "task": "code"},
                            {"image": img, "task": "code"}])
    for got, case in zip(mv, ("code_query", "code_image")):
        ref, shape = read_npy_f32(os.path.join(root, "tests/fixtures/jina-tiny/cases", case, "multi_vector.npy"))
        rows = got.tolist() if hasattr(got, "tolist") else got
        flat = [float(x) for r in rows for x in r]
        d = max(abs(a - b) for a, b in zip(flat, ref)) if len(flat) == len(ref) else float("inf")
        check("jina encode_multi %s: [%d, %d] vs reference max|d|=%.2g" % (case, len(rows), len(rows[0]), d),
              (len(rows), len(rows[0])) == shape and d <= 1e-4)
    check("encode_multi returns %s" % ("ndarrays" if abc_embed._np is not None else "lists"),
          all(type(x).__name__ == ("ndarray" if abc_embed._np is not None else "list") for x in mv))
    ok, why = raises(lambda: jina.encode_multi([{"text": "x", "task": "nope"}]), "invalid argument", "input 0:")
    check("jina encode_multi unknown task: AbcError with the input's index (%s)" % why, ok)
    try:
        jina.encode_multi([{"text": "x", "dim": 8}])
        check("encode_multi with dim: ValueError", False)
    except ValueError:
        check("encode_multi with dim: ValueError", True)
try:
    opened["abc"].encode_multi(["x"])
    check("encode_multi on a model without token vectors: ValueError", False)
except ValueError:
    check("encode_multi on a model without token vectors: ValueError", True)

# close and with
for mdl in opened.values():
    mdl.close()
try:
    abc.embed(text="x")
    check("closed model refuses to embed", False)
except ValueError:
    check("closed model refuses to embed", True)
abc.close()  # twice is fine
with abc_embed.Model(models["vlm"], threads=1) as mdl:
    v = mdl.embed(text="A person in a space suit", role="candidate")
check("with: closed at exit", not mdl._ctx and not mdl._model)
cli, _ = read_npy_f32(os.path.join(tmp, "vlm2vec_text.npy"))
check("with: 1 thread gives the same bits as 2", bits(as_list(v)) == bits(cli))

print("RESULT %d %d %d" % (passed, failed, skipped))
sys.exit(1 if failed else 0)
