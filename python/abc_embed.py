"""abc_embed — the abc embedding library from Python (standard library only; numpy optional).

    from abc_embed import Model
    with Model("model.abc", threads=4) as m:
        q = m.embed(image="cat.jpg", text="what is the animal on the left?")   # role auto: a query
        c = m.encode(["a tabby cat", {"image": "dog.png"}], batch_size=32)    # [N, D]
        t = m.encode_multi([{"image": "page.png"}])   # multi-vector models: a list of [T, D] token vectors

Vectors are numpy float32 arrays when numpy can be imported, else lists of floats. Failures raise
AbcError carrying the library's status and message. The shared library is found from the `library`
argument, else $ABC_LIBRARY, else libabc.so next to this file, in the repository root or its build/
folder, else the system's library path. One Model is used by one thread at a time (it owns one
abc_context); open one Model per thread to embed in parallel.
"""

import ctypes
import ctypes.util
import os

try:
    import numpy as _np
except ImportError:  # numpy is optional
    _np = None

__all__ = ["Model", "AbcError", "ROLES"]

ROLES = {"auto": 0, "query": 1, "candidate": 2}


class AbcError(Exception):
    """A failed library call: .status (int), .status_name, and the message as str(e)."""

    def __init__(self, status, status_name, message):
        super().__init__("%s: %s" % (status_name, message) if message else status_name)
        self.status = status
        self.status_name = status_name
        self.message = message


class _Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("message", ctypes.c_char * 256)]


class _ModelParams(ctypes.Structure):
    _fields_ = [("max_image_pixels", ctypes.c_size_t), ("max_tokens", ctypes.c_int), ("num_crops", ctypes.c_int),
                ("min_pixels", ctypes.c_int64), ("max_pixels", ctypes.c_int64),
                ("max_decode_ratio", ctypes.c_size_t), ("load_into_memory", ctypes.c_int)]


class _ContextParams(ctypes.Structure):
    _fields_ = [("n_threads", ctypes.c_int), ("on_stage", ctypes.c_void_p), ("on_stage_user", ctypes.c_void_p),
                ("arena", ctypes.c_void_p), ("arena_size", ctypes.c_size_t)]


class _Image(ctypes.Structure):  # abc_image in abc.h
    _fields_ = [("width", ctypes.c_int), ("height", ctypes.c_int), ("rgb", ctypes.c_void_p)]


class _Input(ctypes.Structure):  # abc_input in abc.h
    _fields_ = [
        ("image_path", ctypes.c_char_p),
        ("image_data", ctypes.c_void_p),
        ("image_size", ctypes.c_size_t),
        ("rgb", ctypes.c_void_p),
        ("rgb_width", ctypes.c_int),
        ("rgb_height", ctypes.c_int),
        ("rgb_stride", ctypes.c_size_t),
        ("text", ctypes.c_char_p),
        ("prompt", ctypes.c_char_p),
        ("role", ctypes.c_int),
        ("instruction", ctypes.c_char_p),
        ("frames", ctypes.c_void_p),
        ("n_frames", ctypes.c_int),
        ("task", ctypes.c_char_p),
        ("dim", ctypes.c_int),
    ]


def _candidates(library):
    if library:
        return [library]
    if os.environ.get("ABC_LIBRARY"):
        return [os.environ["ABC_LIBRARY"]]
    names = _default_places()
    found = ctypes.util.find_library("abc")
    return [p for p in names if os.path.exists(p)] + ([found] if found else [])


def _default_places():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    return [os.path.join(here, "libabc.so"), os.path.join(root, "libabc.so"), os.path.join(root, "build", "libabc.so")]


def _load_library(library=None):
    tried = _candidates(library)
    for path in tried:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            if library:
                raise
            continue
        _declare(lib)
        return lib
    raise OSError("cannot find the abc shared library (looked for %s and libabc in the system's library path); "
                  "build it (cc -shared -fPIC -O2 -ffp-contract=off abc.c -o libabc.so -lm -lpthread) or set "
                  "ABC_LIBRARY" % ", ".join(tried or _default_places()))


def _declare(lib):
    P = ctypes.c_void_p
    lib.abc_status_string.restype = ctypes.c_char_p
    lib.abc_status_string.argtypes = [ctypes.c_int]
    lib.abc_model_default_params.restype = _ModelParams
    lib.abc_model_load.restype = ctypes.c_int
    lib.abc_model_load.argtypes = [ctypes.c_char_p, ctypes.POINTER(_ModelParams), ctypes.POINTER(P), ctypes.POINTER(_Error)]
    lib.abc_model_free.argtypes = [P]
    lib.abc_model_free.restype = None
    lib.abc_model_embedding_dim.argtypes = [P]
    lib.abc_model_embedding_dim.restype = ctypes.c_int
    lib.abc_model_multi_vector_dim.argtypes = [P]
    lib.abc_model_multi_vector_dim.restype = ctypes.c_int
    lib.abc_model_preset.argtypes = [P]
    lib.abc_model_preset.restype = ctypes.c_char_p
    lib.abc_context_new.restype = ctypes.c_int
    lib.abc_context_new.argtypes = [P, ctypes.POINTER(_ContextParams), ctypes.POINTER(P), ctypes.POINTER(_Error)]
    lib.abc_context_free.argtypes = [P]
    lib.abc_context_free.restype = None
    lib.abc_context_errmsg.argtypes = [P]
    lib.abc_context_errmsg.restype = ctypes.c_char_p
    lib.abc_image_load.restype = ctypes.c_int
    lib.abc_image_load.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(_Image), ctypes.POINTER(_Error)]
    lib.abc_image_free.argtypes = [ctypes.POINTER(_Image)]
    lib.abc_image_free.restype = None
    lib.abc_embed.restype = ctypes.c_int
    lib.abc_embed.argtypes = [P, ctypes.POINTER(_Input), ctypes.POINTER(ctypes.c_float), ctypes.c_size_t]
    lib.abc_embed_batch.restype = ctypes.c_int
    lib.abc_embed_batch.argtypes = [P, ctypes.POINTER(_Input), ctypes.c_size_t, ctypes.POINTER(ctypes.c_float),
                                    ctypes.POINTER(ctypes.c_int)]
    lib.abc_embed_multi.restype = ctypes.c_int
    lib.abc_embed_multi.argtypes = [P, ctypes.POINTER(_Input), ctypes.POINTER(ctypes.c_float), ctypes.c_size_t,
                                    ctypes.POINTER(ctypes.c_size_t)]


def _text(s, name):
    if s is None:
        return None
    if isinstance(s, bytes):
        b = s
    elif isinstance(s, str):
        b = s.encode("utf-8", "surrogatepass")  # lone surrogates reach the library, which rejects them
    else:
        raise TypeError("%s must be str or bytes, not %s" % (name, type(s).__name__))
    if b"\0" in b:
        raise ValueError("%s contains a NUL character" % name)
    return b


class Model:
    """A loaded .abc model with one embedding context."""

    def __init__(self, path, threads=0, num_crops=0, library=None):
        self._lib = _load_library(library)
        self._model = ctypes.c_void_p()
        self._ctx = ctypes.c_void_p()
        err = _Error()
        params = self._lib.abc_model_default_params()
        params.num_crops = int(num_crops)
        st = self._lib.abc_model_load(os.fsencode(path), ctypes.byref(params), ctypes.byref(self._model), ctypes.byref(err))
        if st != 0:
            raise self._error(st, err.message.decode("utf-8", "replace"))
        cp = _ContextParams(int(threads), None, None)
        st = self._lib.abc_context_new(self._model, ctypes.byref(cp), ctypes.byref(self._ctx), ctypes.byref(err))
        if st != 0:
            self._lib.abc_model_free(self._model)
            self._model = ctypes.c_void_p()
            raise self._error(st, err.message.decode("utf-8", "replace"))
        self.dim = self._lib.abc_model_embedding_dim(self._model)  # 0: no single vector (colqwen2)
        self.multi_dim = self._lib.abc_model_multi_vector_dim(self._model)  # 0: no token vectors
        self.preset = self._lib.abc_model_preset(self._model).decode()

    def _error(self, status, message):
        return AbcError(status, self._lib.abc_status_string(status).decode(), message)

    def _check_open(self):
        if not self._ctx:
            raise ValueError("the model is closed")

    def close(self):
        """Releases the context and unmaps the model (also done by `with` and on garbage collection)."""
        lib = getattr(self, "_lib", None)
        if lib is None:
            return
        if getattr(self, "_ctx", None):
            lib.abc_context_free(self._ctx)
            self._ctx = ctypes.c_void_p()
        if getattr(self, "_model", None):
            lib.abc_model_free(self._model)
            self._model = ctypes.c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def _input(self, keep, image=None, text=None, prompt=None, role="auto", instruction=None, task=None):
        """Fills an abc_input; `keep` holds the buffers it points into until the call returns."""
        if role not in ROLES:
            raise ValueError("role must be one of %s, not %r" % (", ".join(ROLES), role))
        inp = _Input()
        inp.role = ROLES[role]
        inp.text = _text(text, "text")
        inp.prompt = _text(prompt, "prompt")
        inp.instruction = _text(instruction, "instruction")
        inp.task = _text(task, "task")
        if image is None:
            pass
        elif isinstance(image, (str, os.PathLike)):
            inp.image_path = os.fsencode(image)
        elif isinstance(image, (bytes, bytearray, memoryview)):
            buf = ctypes.create_string_buffer(bytes(image), len(image))
            keep.append(buf)
            inp.image_data = ctypes.cast(buf, ctypes.c_void_p)
            inp.image_size = len(image)
        elif _np is not None and isinstance(image, _np.ndarray):
            if image.dtype != _np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError("an image array must be uint8 of shape (height, width, 3)")
            arr = _np.ascontiguousarray(image)
            keep.append(arr)
            inp.rgb = arr.ctypes.data
            inp.rgb_height, inp.rgb_width = int(arr.shape[0]), int(arr.shape[1])
            inp.rgb_stride = int(arr.strides[0])
        else:
            raise TypeError("image must be a path, encoded bytes or a uint8 (H, W, 3) numpy array")
        return inp

    def _vector(self, buf, start, n):
        if _np is not None:
            return _np.ctypeslib.as_array(buf)[start * self.dim:(start + n) * self.dim].reshape(n, self.dim).copy()
        return [list(buf[(start + i) * self.dim:(start + i + 1) * self.dim]) for i in range(n)]

    def _frames(self, video, keep, decoded):
        """abc_image array for `video`, a list of frame paths or uint8 (H, W, 3) numpy arrays; the frames
        the library decodes go to `decoded` (the caller frees them)."""
        frames = (_Image * len(video))()
        for i, f in enumerate(video):
            if isinstance(f, (str, os.PathLike)):
                err = _Error()
                st = self._lib.abc_image_load(os.fsencode(f), 0, ctypes.byref(frames[i]), ctypes.byref(err))
                if st != 0:
                    raise self._error(st, err.message.decode("utf-8", "replace"))
                decoded.append(frames[i])
            elif _np is not None and isinstance(f, _np.ndarray) and f.dtype == _np.uint8 and f.ndim == 3 \
                    and f.shape[2] == 3:
                arr = _np.ascontiguousarray(f)
                keep.append(arr)
                frames[i].rgb = arr.ctypes.data
                frames[i].height, frames[i].width = int(arr.shape[0]), int(arr.shape[1])
            else:
                raise TypeError("video frames must be paths or uint8 (H, W, 3) numpy arrays")
        keep.append(frames)
        return frames

    def embed(self, image=None, text=None, role="auto", prompt=None, instruction=None, video=None, task=None, dim=None):
        """One L2-normalised vector (numpy float32 [D], or a list) for an image and/or a text.
        `instruction`: the task instruction of presets that have one (gme). `video`: a list of frames
        (paths or uint8 arrays) instead of an image, for models with video input (vlm2vec). `task`: the
        task adapter (jina-v4: retrieval, text-matching, code). `dim`: Matryoshka truncation to the first
        `dim` values, normalised again (the vector then has `dim` values)."""
        self._check_open()
        keep, decoded = [], []
        inp = self._input(keep, image=image, text=text, prompt=prompt, role=role, instruction=instruction, task=task)
        inp.dim = int(dim or 0)
        try:
            if video is not None:
                if image is not None or not len(video):
                    raise ValueError("video must be a non-empty list of frames, and not given with image")
                inp.frames = ctypes.cast(self._frames(video, keep, decoded), ctypes.c_void_p)
                inp.n_frames = len(video)
            out = (ctypes.c_float * self.dim)()
            st = self._lib.abc_embed(self._ctx, ctypes.byref(inp), out, self.dim)
        finally:
            for f in decoded:
                self._lib.abc_image_free(ctypes.byref(f))
        if st != 0:
            raise self._error(st, self._lib.abc_context_errmsg(self._ctx).decode("utf-8", "replace"))
        v = self._vector(out, 0, 1)[0]
        return v[:dim] if dim else v

    def _item(self, item, index, role):
        """abc_input fields of one encode/encode_multi input (a str, or a dict of the keys below)."""
        if isinstance(item, (str, bytes)):
            item = {"text": item}
        if not isinstance(item, dict):
            raise TypeError("input %d must be a str or a dict, not %s" % (index, type(item).__name__))
        unknown = set(item) - {"image", "text", "prompt", "role", "instruction", "task", "dim", "id"}
        if unknown:
            raise ValueError("input %d has unknown keys %s" % (index, sorted(unknown)))
        return item, role or item.get("role", "auto")

    def encode_multi(self, inputs, role=None):
        """Token vectors of a multi-vector model (multi_dim > 0: colqwen2, colqwen2.5, jina-v4): for each
        input (a str or a dict as for encode, without "dim"), its L2-normalised [T, multi_dim] rows (numpy
        float32, or lists), one per token, for MaxSim scoring. Returns a list with one entry per input.
        Raises AbcError for the first input that fails (its index in the message)."""
        self._check_open()
        if not self.multi_dim:
            raise ValueError("preset %s has no multi-vector output (use encode)" % self.preset)
        out = []
        for index, item in enumerate(inputs):
            item, r = self._item(item, index, role)
            if item.get("dim"):
                raise ValueError("input %d: dim applies to the single vector, not to token vectors" % index)
            keep = []
            inp = self._input(keep, image=item.get("image"), text=item.get("text"), prompt=item.get("prompt"),
                              role=r, instruction=item.get("instruction"), task=item.get("task"))
            n = ctypes.c_size_t()
            st = self._lib.abc_embed_multi(self._ctx, ctypes.byref(inp), None, 0, ctypes.byref(n))  # the size
            buf = (ctypes.c_float * max(1, n.value * self.multi_dim))()
            if st == 0:
                st = self._lib.abc_embed_multi(self._ctx, ctypes.byref(inp), buf, n.value * self.multi_dim,
                                               ctypes.byref(n))
            if st != 0:
                msg = self._lib.abc_context_errmsg(self._ctx).decode("utf-8", "replace")
                raise self._error(st, "input %d: %s" % (index, msg))
            t, d = n.value, self.multi_dim
            if _np is not None:
                out.append(_np.ctypeslib.as_array(buf)[:t * d].reshape(t, d).copy())
            else:
                out.append([list(buf[i * d:(i + 1) * d]) for i in range(t)])
        return out

    def encode(self, inputs, batch_size=32, role=None):
        """Embeds a list of inputs into [N, D] (numpy float32, or a list of lists). Each input is a str
        (a text) or a dict with "image", "text", "prompt", "role", "instruction", "task", "dim" (Matryoshka:
        the row's first dim values, normalised again, zeros after). `role` overrides the inputs' roles.
        Raises AbcError for the first input that fails (its index in the message)."""
        self._check_open()
        inputs = list(inputs)
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        rows = []
        for start in range(0, len(inputs), batch_size):
            chunk = inputs[start:start + batch_size]
            keep = []
            arr = (_Input * len(chunk))()
            for i, item in enumerate(chunk):
                item, r = self._item(item, start + i, role)
                arr[i] = self._input(keep, image=item.get("image"), text=item.get("text"), prompt=item.get("prompt"),
                                     role=r, instruction=item.get("instruction"), task=item.get("task"))
                arr[i].dim = int(item.get("dim") or 0)
            out = (ctypes.c_float * (len(chunk) * self.dim))()
            statuses = (ctypes.c_int * len(chunk))()
            st = self._lib.abc_embed_batch(self._ctx, arr, len(chunk), out, statuses)
            if st != 0:
                bad = next((i for i in range(len(chunk)) if statuses[i] != 0), 0)
                msg = self._lib.abc_context_errmsg(self._ctx).decode("utf-8", "replace")
                prefix = "input %d: " % bad
                if msg.startswith(prefix):
                    msg = msg[len(prefix):]
                raise self._error(st, "input %d: %s" % (start + bad, msg))
            rows.append(self._vector(out, 0, len(chunk)))
        if _np is not None:
            return _np.concatenate(rows) if rows else _np.zeros((0, self.dim), _np.float32)
        return [r for chunk in rows for r in chunk]
