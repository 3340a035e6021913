#!/usr/bin/env python3
"""Writes the seed corpora tests/fuzz/corpus/{config,safetensors,inspect,h5}/ (README.md, "Fuzzing").

Usage: python3 tests/fuzz/gen_corpus.py SEEDS_DIR [CORPUS_DIR]
SEEDS_DIR holds what fuzz_make_seeds wrote (config/, safetensors/, h5/: valid
configs and checkpoints as clopt writes them); this script copies them and adds truncated,
garbled and semantically wrong variants. CORPUS_DIR defaults to tests/fuzz/corpus. Files already
in the corpus (such as regression inputs from fuzzing, named crash-*) are kept.
"""
import json
import os
import struct
import sys

seeds = sys.argv[1]
corpus = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "corpus")


def put(target, name, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- configs ----
valid = {}
for fn in sorted(os.listdir(os.path.join(seeds, "config"))):
    with open(os.path.join(seeds, "config", fn), "rb") as f:
        valid[fn[:-5]] = f.read()
    put("config", fn, valid[fn[:-5]])

for name in ("adam", "sched_piecewise", "loss_scale", "sched_cosine_warmup"):
    t = valid[name]
    put("config", "trunc_half_" + name + ".json", t[: len(t) // 2])
    put("config", "trunc_last_" + name + ".json", t[:-1])

hand = {
    "min_lowercase": '{"class_name": "adam"}',
    "min_with_wrapper": '{"module": "keras.optimizers", "class_name": "SGD", "config": {},'
                        ' "registered_name": null}',
    "not_object": "[1, 2, 3]",
    "string": '"Adam"',
    "empty_object": "{}",
    "empty": "",
    "duplicate_key": '{"class_name": "Adam", "class_name": "SGD"}',
    "unknown_class": '{"class_name": "Adamm"}',
    "unknown_top_key": '{"class_name": "Adam", "extra": 1}',
    "config_not_object": '{"class_name": "Adam", "config": [1]}',
    "unknown_key": '{"class_name": "Adam", "config": {"beta_3": 0.9}}',
    "bad_type": '{"class_name": "Adam", "config": {"beta_1": "0.9"}}',
    "out_of_range": '{"class_name": "Adam", "config": {"beta_1": 1.5}}',
    "huge_number": '{"class_name": "SGD", "config": {"learning_rate": 1e400}}',
    "huge_integer": '{"class_name": "SGD", "config": {"gradient_accumulation_steps": 99999999999999999999}}',
    "accum_1e300": '{"class_name": "SGD", "config": {"gradient_accumulation_steps": 1e300}}',
    "ema_freq_big": '{"class_name": "SGD", "config": {"use_ema": true, "ema_overwrite_frequency": 1e30}}',
    "two_clips": '{"class_name": "Adam", "config": {"clipnorm": 1, "clipvalue": 1}}',
    "name_null": '{"class_name": "Adam", "config": {"name": null}}',
    "name_unicode": '{"class_name": "Adam", "config": {"name": "\\u00e9\\u4e2d"}}',
    "lso_in_lso": '{"class_name": "LossScaleOptimizer", "config": {"inner_optimizer": '
                  '{"class_name": "LossScaleOptimizer", "config": {"inner_optimizer": '
                  '{"class_name": "SGD"}}}}}',
    "lso_no_inner": '{"class_name": "LossScaleOptimizer", "config": {}}',
    "lso_dynamic_false": '{"class_name": "LossScaleOptimizer", "config": {"dynamic": false,'
                         ' "inner_optimizer": {"class_name": "SGD"}}}',
    "lso_growth_big": '{"class_name": "LossScaleOptimizer", "config": {"dynamic_growth_steps": 1e15,'
                      ' "inner_optimizer": {"class_name": "SGD"}}}',
    "sched_unknown": '{"class_name": "SGD", "config": {"learning_rate": {"class_name": "Foo",'
                     ' "config": {}}}}',
    "sched_missing_key": '{"class_name": "SGD", "config": {"learning_rate": {"class_name":'
                         ' "ExponentialDecay", "config": {"initial_learning_rate": 0.1}}}}',
    "sched_zero_steps": '{"class_name": "SGD", "config": {"learning_rate": {"class_name":'
                        ' "ExponentialDecay", "config": {"initial_learning_rate": 0.1,'
                        ' "decay_steps": 0, "decay_rate": 0.5}}}}',
    "sched_huge_steps": '{"class_name": "SGD", "config": {"learning_rate": {"class_name":'
                        ' "PolynomialDecay", "config": {"initial_learning_rate": 0.1,'
                        ' "decay_steps": 1e300, "cycle": true}}}}',
    "sched_real_steps": '{"class_name": "SGD", "config": {"learning_rate": {"class_name":'
                        ' "CosineDecay", "config": {"initial_learning_rate": 0.1,'
                        ' "decay_steps": 2.5}}}}',
    "piecewise_lengths": '{"class_name": "SGD", "config": {"learning_rate": {"class_name":'
                         ' "PiecewiseConstantDecay", "config": {"boundaries": [1, 2],'
                         ' "values": [0.1]}}}}',
    "piecewise_empty": '{"class_name": "SGD", "config": {"learning_rate": {"class_name":'
                       ' "PiecewiseConstantDecay", "config": {"boundaries": [], "values": [0.1]}}}}',
    "piecewise_huge_bound": '{"class_name": "SGD", "config": {"learning_rate": {"class_name":'
                            ' "PiecewiseConstantDecay", "config": {"boundaries": [1e300, -1e300],'
                            ' "values": [0.1, 0.2, 0.3]}}}}',
    "restarts_tmul": '{"class_name": "SGD", "config": {"learning_rate": {"class_name":'
                     ' "CosineDecayRestarts", "config": {"initial_learning_rate": 0.1,'
                     ' "first_decay_steps": 1, "t_mul": 0.5, "m_mul": -2}}}}',
    "exclude_list": '{"class_name": "AdamW", "config": {"exclude_from_weight_decay": ["bias"]}}',
    "deep_nesting": "[" * 1000 + "]" * 1000,
    "nul_inside": '{"class_name": "Adam"}\x00garbage',
}
for k, v in hand.items():
    put("config", k + ".json", v)


# ---- safetensors ----
def split(b):
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]


def join(header, data, pad=True, raw=None):
    h = raw if raw is not None else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


st = {}
for fn in sorted(os.listdir(os.path.join(seeds, "safetensors"))):
    with open(os.path.join(seeds, "safetensors", fn), "rb") as f:
        st[fn[: -len(".safetensors")]] = f.read()
    put("safetensors", fn, st[fn[: -len(".safetensors")]])


def variants(base):
    """(name, bytes) variants of one valid checkpoint."""
    b = st[base]
    h, data = split(b)
    out = [("trunc4", b[:4]), ("trunc8", b[:8]), ("trunc_half", b[: len(b) // 2]),
           ("trunc_last", b[:-1]), ("extra_byte", b + b"\0")]
    out.append(("hlen_huge", struct.pack("<Q", 2**63) + b[8:]))
    out.append(("hlen_past_end", struct.pack("<Q", len(b)) + b[8:]))
    out.append(("hlen_cap", struct.pack("<Q", 100000001) + b[8:]))
    out.append(("not_brace", b[:8] + b"[" + b[9:]))
    out.append(("json_garbled", b[:8] + b[8:40] + b"\x00" + b[41:]))

    def mut(name, fn):
        h2 = json.loads(json.dumps(h))
        d2 = fn(h2)
        out.append((name, join(h2, d2 if isinstance(d2, bytes) else data)))

    tensors = [k for k in h if k != "__metadata__"]
    t0 = tensors[0]
    last = max(tensors, key=lambda k: h[k]["data_offsets"][1])
    mut("dtype_unknown", lambda x: x[t0].update(dtype="F128"))
    mut("dtype_i32", lambda x: x[t0].update(dtype="I32"))
    mut("shape_neg", lambda x: x[t0].update(shape=[-1]))
    mut("shape_big", lambda x: x[t0].update(shape=[2**62, 2**62]))
    mut("shape_33d", lambda x: x[t0].update(shape=[1] * 33))
    mut("offsets_swap", lambda x: x[t0].update(data_offsets=x[t0]["data_offsets"][::-1]))
    mut("offsets_overlap", lambda x: x[last].update(
        data_offsets=[x[last]["data_offsets"][0] - 1, x[last]["data_offsets"][1] - 1]))
    mut("offsets_beyond", lambda x: x[last].update(
        data_offsets=[x[last]["data_offsets"][0], x[last]["data_offsets"][1] + 8]))
    mut("offsets_float", lambda x: x[t0].update(data_offsets=[0.0, 8.0]))
    mut("unknown_key", lambda x: x[t0].update(extra=1))
    mut("entry_not_object", lambda x: x.update({t0: [1]}))
    mut("missing_tensor", lambda x: x.pop(t0))
    if "__metadata__" in h:
        mut("meta_not_string", lambda x: x["__metadata__"].update(format=1))
        mut("meta_version_2", lambda x: x["__metadata__"].update(format_version="2"))
        mut("meta_version_bad", lambda x: x["__metadata__"].update(format_version="1x"))
        mut("meta_no_meta", lambda x: x.pop("__metadata__"))
        if "optimizer_config" in h["__metadata__"]:
            mut("meta_config_class", lambda x: x["__metadata__"].update(
                optimizer_config='{"class_name": "Ftrl", "config": {}}'))
            mut("meta_config_bad_json", lambda x: x["__metadata__"].update(
                optimizer_config='{"class_name": '))
            mut("meta_config_close_brace", lambda x: x["__metadata__"].update(
                optimizer_config="}"))
            mut("meta_paths_bad", lambda x: x["__metadata__"].update(optimizer_variables="{}"))
    if "optimizer/vars/0" in h:
        o = h["optimizer/vars/0"]["data_offsets"][0]

        def neg_iter(x):
            d = bytearray(data)
            d[o:o + 8] = struct.pack("<q", -5)
            return bytes(d)
        mut("iteration_negative", neg_iter)
    if "optimizer/vars/1" in h and h["optimizer/vars/1"]["dtype"] == "F32":
        o = h["optimizer/vars/1"]["data_offsets"][0]

        def nan_lr(x):
            d = bytearray(data)
            d[o:o + 4] = struct.pack("<f", float("nan"))
            return bytes(d)
        mut("lr_nan", nan_lr)
    return out


# Every variant of the small checkpoints; a few of the larger ones (the corpus stays small).
FEW = {"trunc_half", "dtype_i32", "offsets_overlap", "missing_tensor", "meta_config_class",
       "iteration_negative", "lr_nan"}
for base in sorted(st):
    for name, data in variants(base):
        if base in ("model_only", "sgd_f64", "nadam_f16") or name in FEW:
            put("safetensors", "%s__%s.safetensors" % (base, name), data)

# A valid file with an I32 iteration counter (Keras on JAX and torch), and the model tensors of a
# model-only file with one unknown model tensor.
h, data = split(st["sgd_f64"])
o = h["optimizer/vars/0"]["data_offsets"]
it = struct.unpack("<q", data[o[0]:o[1]])[0]
nd = data[:o[0]] + struct.pack("<i", it) + data[o[1]:]
for k in h:
    if k != "__metadata__" and h[k]["data_offsets"][0] > o[0]:
        h[k]["data_offsets"] = [v - 4 for v in h[k]["data_offsets"]]
h["optimizer/vars/0"].update(dtype="I32", data_offsets=[o[0], o[0] + 4])
put("safetensors", "sgd_f64__iteration_i32.safetensors", join(h, nd))
h, data = split(st["model_only"])
h["model/extra"] = {"dtype": "U8", "shape": [2], "data_offsets": [len(data), len(data) + 2]}
put("safetensors", "model_only__extra_tensor.safetensors", join(h, data + b"\1\2"))

# ---- inspect: odd metadata for the pretty-printer and the Keras paths ----
h, data = split(st["model_only"])
for name, cfg in [("config_close_brace", "}"), ("config_close_bracket", "]"),
                  ("config_unbalanced", "{[{"), ("config_strings", '{"a\\"}": ["]", "\\\\"]}'),
                  ("config_commas", ",,,   ,")]:
    h2 = json.loads(json.dumps(h))
    h2.setdefault("__metadata__", {})["optimizer_config"] = cfg
    put("inspect", name + ".safetensors", join(h2, data))
h2 = json.loads(json.dumps(h))
h2["optimizer/vars/99999999999999999999"] = {"dtype": "U8", "shape": [], "data_offsets":
                                             [len(data), len(data) + 1]}
h2.setdefault("__metadata__", {})["optimizer_variables"] = '["a", "b"]'
put("inspect", "paths_huge_index.safetensors", join(h2, data + b"\0"))

# ---- .weights.h5 (when fuzz_make_seeds was built with libhdf5) ----
h5dir = os.path.join(seeds, "h5")
if os.path.isdir(h5dir):
    for fn in sorted(os.listdir(h5dir)):
        with open(os.path.join(h5dir, fn), "rb") as f:
            b = f.read()
        put("h5", fn, b)
        if fn.startswith("nadam"):
            put("h5", "trunc_half_" + fn, b[: len(b) // 2])
            put("h5", "trunc_sig_" + fn, b[:8])
            m = bytearray(b)
            m[20] ^= 0xFF  # a flipped byte in the superblock
            put("h5", "flip_superblock_" + fn, bytes(m))
