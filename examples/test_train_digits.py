#!/usr/bin/env python3
"""Tests of examples/train_digits (registered in examples/CMakeLists.txt).

    test_train_digits.py CASE TRAIN_DIGITS WORKDIR

CASE: agreement (host and POCL agree on the first steps), resume (a run stopped mid-epoch and
resumed ends bit for bit where an uninterrupted one does), sigint (Ctrl-C saves; resuming
continues bit for bit), plot (the SVG and the JSON are well formed), badargs (each bad argument
exits 2 or 1 with a message and writes nothing), synthetic (the throughput mode runs), devices
(host replicas agree with one host device to round-off, even and uneven shares), devices_resume
(a data-parallel run stopped mid-epoch and resumed = uninterrupted, bit for bit; another replica
count is refused), devices_sigint (Ctrl-C on host replicas saves; resuming is bit for bit), pocl_devices (two POCL devices reach the accuracy target, and resume bit for
bit; needs POCL_DEVICES="pthread pthread")."""
import gzip
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from array import array

POCL = "pocl:cpu:0"


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def run(exe, *args, rc=0):
    p = subprocess.run([exe, *args], capture_output=True, text=True, timeout=600)
    if rc is not None and p.returncode != rc:
        fail(f"{' '.join(args)}: exit {p.returncode}, expected {rc}\n{p.stdout}\n{p.stderr}")
    return p


def safetensors(path):
    """{name: (dtype, shape, values)} of a safetensors file."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        code = {"F32": "f", "F64": "d", "I64": "q"}[t["dtype"]]
        out[name] = (t["dtype"], t["shape"], array(code, data[a:b]))
    return out


def model_tensors(path):
    return {k: v for k, v in safetensors(path).items() if k.startswith("model/dense")}


def agreement(exe, work):
    """The first 5 steps on the host (C loops) and on POCL (CLBlast, kernels) give the same
    weights to float32 round-off, with SGD (the gradients themselves) and with Adam."""
    sgd = os.path.join(work, "sgd.json")
    with open(sgd, "w") as f:
        json.dump({"class_name": "SGD", "config": {"learning_rate": 0.1, "momentum": 0.9}}, f)
    for name, extra, tol in (("sgd", ["--config", sgd], 2e-5), ("adam", [], 2e-5)):
        files = {}
        for dev in ("host", POCL):
            path = os.path.join(work, f"{name}-{dev.replace(':', '_')}.safetensors")
            run(exe, "--device", dev, "--steps", "5", "--checkpoint", path, "--target", "0",
                *extra)
            files[dev] = model_tensors(path)
        host, dev = files["host"], files[POCL]
        if sorted(host) != sorted(dev) or len(host) != 6:
            fail(f"{name}: tensors differ: {sorted(host)} vs {sorted(dev)}")
        worst = 0.0
        for k in host:
            for a, b in zip(host[k][2], dev[k][2]):
                err = abs(a - b) / (1e-3 + abs(a))
                worst = max(worst, err)
        moved = sum(abs(a) for a in host["model/dense/bias"][2])
        print(f"{name}: largest difference host vs POCL after 5 steps: {worst:.3g} (relative)")
        if worst > tol or moved == 0:
            fail(f"{name}: host and POCL disagree by {worst} (tolerance {tol}), bias sum {moved}")
        # The loss sums of the 5 steps (the metric sums the device keeps) agree as well.
        lh = safetensors(os.path.join(work, f"{name}-host.safetensors"))["model/train/metrics"]
        ld = safetensors(os.path.join(work, f"{name}-{POCL.replace(':', '_')}.safetensors"))[
            "model/train/metrics"]
        if abs(lh[2][0] - ld[2][0]) > 1e-4 * abs(lh[2][0]) or lh[2][2] != 5 * 32:
            fail(f"{name}: loss sums differ: {list(lh[2])} vs {list(ld[2])}")


def largest_difference(a, b):
    """The largest relative difference between the model weights of two checkpoints."""
    ta, tb = model_tensors(a), model_tensors(b)
    if sorted(ta) != sorted(tb) or len(ta) != 6:
        fail(f"tensors differ: {sorted(ta)} vs {sorted(tb)}")
    return max(abs(x - y) / (1e-3 + abs(x)) for k in ta for x, y in zip(ta[k][2], tb[k][2]))


def devices(exe, work):
    """Two and three host replicas (batch 32: shares 16+16 and 11+11+10) train as one host
    device does, to float32 round-off: each replica's loss is divided by the global batch, so
    the summed gradients are the batch mean's. SGD (the gradients themselves) and Adam."""
    sgd = os.path.join(work, "sgd.json")
    with open(sgd, "w") as f:
        json.dump({"class_name": "SGD", "config": {"learning_rate": 0.1, "momentum": 0.9}}, f)
    for name, extra in (("sgd", ["--config", sgd]), ("adam", [])):
        ref = os.path.join(work, f"{name}-one.safetensors")
        run(exe, "--device", "host", "--steps", "5", "--checkpoint", ref, "--target", "0", *extra)
        for devs, shares in (("host,host", [80, 80]), ("host,host,host", [55, 55, 50])):
            path = os.path.join(work, f"{name}-{devs.count(',') + 1}.safetensors")
            js = path + ".json"
            p = run(exe, "--devices", devs, "--steps", "5", "--checkpoint", path, "--target", "0",
                    "--json", js, *extra)
            n = len(shares)
            if f"on {n} replicas" not in p.stdout or "equal on every replica" not in p.stdout:
                fail(f"{devs}: the summary does not name the replicas:\n{p.stdout}")
            worst = largest_difference(ref, path)
            print(f"{name}: {devs} vs one host device after 5 steps: {worst:.3g} (relative)")
            if worst > 2e-5:
                fail(f"{name}: {devs} disagrees with one device by {worst}")
            # Each replica's metric sums: its share of the 5 batches, and the loss sums add up
            # to one device's.
            rm = safetensors(path)["model/train/replica_metrics"]
            rows = [rm[2][6 * r + 2] for r in range(n)]
            loss = sum(rm[2][6 * r] for r in range(n))
            one = safetensors(ref)["model/train/metrics"][2][0]
            if rm[1] != [n, 6] or rows != shares or abs(loss - one) > 1e-4 * one:
                fail(f"{devs}: replica metrics {list(rm[2])}, expected rows {shares}, loss {one}")
            with open(js) as f:
                j = json.load(f)
            if j["replicas"] != n or j["devices"] != devs:
                fail(f"{devs}: JSON says {j['replicas']} replicas on {j['devices']}")
    # A batch smaller than the replicas: a replica with no rows adds zero gradients.
    a, b = os.path.join(work, "b2-one.safetensors"), os.path.join(work, "b2-three.safetensors")
    run(exe, "--device", "host", "--steps", "3", "--batch", "2", "--checkpoint", a,
        "--target", "0", "--config", sgd)
    run(exe, "--devices", "host,host,host", "--steps", "3", "--batch", "2", "--checkpoint", b,
        "--target", "0", "--config", sgd)
    worst = largest_difference(a, b)
    if worst > 2e-5:
        fail(f"batch 2 on 3 replicas disagrees with one device by {worst}")
    print(f"batch 2 on 3 replicas (one with no rows) vs one device: {worst:.3g}")


def resume_equal(exe, work, common, stop, where):
    """A run stopped at step `stop` and resumed ends as an uninterrupted one, bit for bit."""
    a, b = os.path.join(work, "a.safetensors"), os.path.join(work, "b.safetensors")
    ja, jb = os.path.join(work, "a.json"), os.path.join(work, "b.json")
    run(exe, *common, "--checkpoint", a, "--json", ja)
    p = run(exe, *common, "--checkpoint", b, "--steps", str(stop))
    if f"stopped (--steps) after {stop} steps" not in p.stdout:
        fail("the stopped run did not say where it stopped:\n" + p.stdout)
    p = run(exe, *common, "--checkpoint", b, "--resume", "--json", jb)
    if where not in p.stdout:
        fail("the resumed run did not say where it resumed:\n" + p.stdout)
    (fa, ea), (fb, eb) = epochs_of(ja), epochs_of(jb)
    if ea != eb:
        fail(f"loss curves differ:\n{ea}\n{eb}")
    if fa["weights_fnv1a"] != fb["weights_fnv1a"] or fa["steps"] != fb["steps"]:
        fail(f"final weights differ: {fa['weights_fnv1a']} vs {fb['weights_fnv1a']}")
    same_state(a, b, "checkpoints of the two runs")
    return b, fa


def devices_resume(exe, work):
    """Three host replicas (uneven shares), stopped mid-epoch 2 and resumed: bit for bit, the
    replicas' metric sums of the unfinished epoch included. A checkpoint of three replicas is
    refused by two replicas and by one device, and is left as it was."""
    common = ["--devices", "host,host,host", "--epochs", "3", "--target", "0"]
    b, fa = resume_equal(exe, work, common, 70, "70 steps done (epoch 2, step 25 of 45)")
    before = open(b, "rb").read()
    for other in (["--devices", "host,host"], ["--device", "host"]):
        p = run(exe, *other, "--epochs", "3", "--target", "0", "--checkpoint", b, "--resume",
                rc=1)
        if "CLOPT_ERR_FILE_MISMATCH" not in p.stderr or open(b, "rb").read() != before:
            fail(f"a resume with {other} was not refused cleanly:\n{p.stderr}")
    print("devices_resume: bit for bit, weights", fa["weights_fnv1a"])


def pocl_devices(exe, work):
    """Two POCL devices: the defaults reach the target (exit 0), then a stopped and resumed
    run equals an uninterrupted one."""
    js = os.path.join(work, "p.json")
    p = run(exe, "--devices", "pocl:cpu:0,pocl:cpu:1", "--json", js)
    with open(js) as f:
        j = json.load(f)
    acc = j["epochs"][-1]["val_accuracy"]
    if not j["ok"] or j["replicas"] != 2 or acc < 0.97 or "on 2 replicas" not in p.stdout:
        fail(f"two POCL devices: ok {j['ok']}, {j['replicas']} replicas, accuracy {acc}")
    print(p.stdout)
    common = ["--devices", "pocl:cpu:0,pocl:cpu:1", "--epochs", "2", "--target", "0"]
    resume_equal(exe, work, common, 50, "50 steps done (epoch 2, step 5 of 45)")
    # Batch 1: replica 1 has no rows and adds zero gradients (filled on the device).
    a, b = os.path.join(work, "b1-host.safetensors"), os.path.join(work, "b1-pocl.safetensors")
    for dev, path in ((["--device", "host"], a), (["--devices", "pocl:cpu:0,pocl:cpu:1"], b)):
        run(exe, *dev, "--steps", "4", "--batch", "1", "--checkpoint", path, "--target", "0")
    worst = largest_difference(a, b)
    if worst > 2e-5:
        fail(f"batch 1 on two POCL devices disagrees with one host device by {worst}")
    print(f"pocl_devices: held-out accuracy {acc}, resume bit for bit")


def same_state(a, b, what):
    """Every tensor of two checkpoints is equal bit for bit, but the history's clock columns."""
    ta, tb = safetensors(a), safetensors(b)
    if sorted(ta) != sorted(tb):
        fail(f"{what}: tensor lists differ")
    for k in ta:
        va, vb = ta[k][2], tb[k][2]
        if k == "model/train/history":  # loss, acc, val_loss, val_acc, seconds, samples/s
            va = [v for i, v in enumerate(va) if i % 6 < 4]
            vb = [v for i, v in enumerate(vb) if i % 6 < 4]
        if list(va) != list(vb):
            fail(f"{what}: tensor {k} differs")


def epochs_of(path):
    with open(path) as f:
        j = json.load(f)
    return j, [{k: e[k] for k in ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")}
               for e in j["epochs"]]


def resume(exe, work):
    """Stopped at step 70 (mid-epoch 2) and resumed = uninterrupted, bit for bit."""
    a, b = os.path.join(work, "a.safetensors"), os.path.join(work, "b.safetensors")
    ja, jb = os.path.join(work, "a.json"), os.path.join(work, "b.json")
    common = ["--device", POCL, "--epochs", "3", "--target", "0"]
    run(exe, *common, "--checkpoint", a, "--json", ja)
    p = run(exe, *common, "--checkpoint", b, "--steps", "70")
    if "stopped (--steps) after 70 steps (1 epochs)" not in p.stdout:
        fail("the stopped run did not say where it stopped:\n" + p.stdout)
    p = run(exe, *common, "--checkpoint", b, "--resume", "--json", jb)
    if "resumed from" not in p.stdout or "70 steps done (epoch 2, step 25 of 45)" not in p.stdout:
        fail("the resumed run did not say where it resumed:\n" + p.stdout)
    (fa, ea), (fb, eb) = epochs_of(ja), epochs_of(jb)
    if ea != eb or len(ea) != 3:
        fail(f"loss curves differ:\n{ea}\n{eb}")
    if fa["weights_fnv1a"] != fb["weights_fnv1a"] or fa["steps"] != fb["steps"] != 135:
        fail(f"final weights differ: {fa['weights_fnv1a']} vs {fb['weights_fnv1a']}")
    same_state(a, b, "checkpoints of the two runs")
    # A checkpoint made with another seed is refused, and nothing changes.
    before = open(b, "rb").read()
    sgd = os.path.join(work, "sgd.json")
    with open(sgd, "w") as f:
        json.dump({"class_name": "SGD", "config": {}}, f)
    for extra, msg in ((["--seed", "2"], "was made with --seed 1"),
                       (["--batch", "16"], "was made with --seed 1 --batch 32"),
                       (["--hidden", "256,64"], "CLOPT_ERR_FILE_MISMATCH"),
                       (["--config", sgd], "CLOPT_ERR_FILE_MISMATCH")):
        p = run(exe, *common, "--checkpoint", b, "--resume", *extra, rc=1)
        if msg not in p.stderr or open(b, "rb").read() != before:
            fail(f"a resume with {extra} was not refused cleanly:\n" + p.stderr)
    print("resume: bit for bit, weights", fa["weights_fnv1a"])


def sigint(exe, work, dev=("--device", POCL)):
    """Ctrl-C stops after the current step and saves; resuming ends where an uninterrupted run
    of as many epochs does."""
    ck = os.path.join(work, "int.safetensors")
    p = subprocess.Popen([exe, *dev, "--epochs", "1000", "--target", "0",
                          "--checkpoint", ck], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    for line in p.stdout:
        if line.startswith("epoch   2/"):
            break
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=300)
    if p.returncode != 130 or "checkpoint saved" not in out:
        fail(f"SIGINT: exit {p.returncode}, expected 130 and a saved checkpoint\n{out}\n{err}")
    line = [l for l in out.splitlines() if l.startswith("interrupted after")][0]
    steps, epochs = int(line.split()[2]), int(line.split()[4].strip("("))
    target = epochs + 1
    jr, ju = os.path.join(work, "r.json"), os.path.join(work, "u.json")
    run(exe, *dev, "--epochs", str(target), "--target", "0", "--checkpoint", ck, "--resume",
        "--json", jr)
    run(exe, *dev, "--epochs", str(target), "--target", "0", "--json", ju)
    (fr, er), (fu, eu) = epochs_of(jr), epochs_of(ju)
    if er != eu or fr["weights_fnv1a"] != fu["weights_fnv1a"]:
        fail(f"interrupted at step {steps} and resumed != uninterrupted:\n{er}\n{eu}")
    print(f"sigint: interrupted at step {steps}, resumed to epoch {target}: bit for bit")


def devices_sigint(exe, work):
    """Ctrl-C on three host replicas: saved, and resumed bit for bit."""
    sigint(exe, work, ("--devices", "host,host,host"))


def plot(exe, work):
    svg, js = os.path.join(work, "curve.svg"), os.path.join(work, "curve.json")
    run(exe, "--device", POCL, "--epochs", "4", "--target", "0", "--plot", svg, "--json", js)
    root = ET.parse(svg).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    if root.tag != ns + "svg":
        fail(f"root element {root.tag}")
    lines = root.findall(ns + "polyline")
    if len(lines) != 4:
        fail(f"{len(lines)} curves, expected 4")
    for pl in lines:
        pts = [tuple(map(float, p.split(","))) for p in pl.get("points").split()]
        w, h = float(root.get("width")), float(root.get("height"))
        if len(pts) != 4 or not all(0 <= x <= w and 0 <= y <= h for x, y in pts):
            fail(f"curve points {pts}")
    with open(js) as f:
        j = json.load(f)
    if len(j["epochs"]) != 4 or j["layers"] != [64, 256, 128, 10] or not j["ok"]:
        fail(f"JSON: {j}")
    if not j["epochs"][3]["loss"] < j["epochs"][0]["loss"]:
        fail("the loss did not fall")
    # Nothing comes back from the device per step: two more epochs (90 more steps) make two more
    # reads (the metric sums). (The host path reads its weights back every step by design.)
    reads = [j["host_reads"]]
    j2 = os.path.join(work, "reads.json")
    run(exe, "--device", POCL, "--epochs", "6", "--target", "0", "--json", j2)
    with open(j2) as f:
        reads.append(json.load(f)["host_reads"])
    if reads != [4, 6]:
        fail(f"reads from the device after 4 and 6 epochs: {reads}, expected [4, 6]")
    for leftover in (svg + ".tmp", js + ".tmp"):
        if os.path.exists(leftover):
            fail(f"{leftover} left behind")
    print("plot: SVG and JSON well formed")


def badargs(exe, work):
    missing = os.path.join(work, "missing.csv.gz")
    corrupt = os.path.join(work, "corrupt.csv.gz")
    good = gzip.compress(b"0," * 64 + b"3\n" * 1)
    with open(corrupt, "wb") as f:
        f.write(good[:10] + b"\xff" * 40 + good[10:])
    truncated = os.path.join(work, "truncated.csv.gz")
    with open(os.path.dirname(os.path.abspath(__file__)) + "/data/digits.csv.gz", "rb") as f:
        data = f.read()
    with open(truncated, "wb") as f:
        f.write(data[: len(data) // 2])
    badcfg = os.path.join(work, "bad.json")
    with open(badcfg, "w") as f:
        f.write('{"class_name": "Adamz", "config": {}}')
    badjson = os.path.join(work, "badjson.json")
    with open(badjson, "w") as f:
        f.write('{"class_name": "Adam", "config": {')
    ck = os.path.join(work, "none.safetensors")
    outs = [os.path.join(work, n) for n in ("out.svg", "out.json")]
    cases = [
        (["--frobnicate"], 2, "unknown option"),
        (["--epochs"], 2, "needs a value"),
        (["--hidden", "256,,128"], 2, "--hidden 256,,128"),
        (["--hidden", "0"], 2, "--hidden 0"),
        (["--hidden", "abc"], 2, "--hidden abc"),
        (["--hidden", "1,2,3,4,5,6,7,8"], 2, "1 to 7 layer widths"),
        (["--hidden", "70000"], 2, "--hidden 70000"),
        (["--epochs", "0"], 2, "--epochs 0"),
        (["--batch", "x"], 2, "--batch x"),
        (["--target", "1.5"], 2, "--target 1.5"),
        (["--devices", "host,host"], 2, "cannot be combined with --device"),
        (["--resume"], 2, "needs --checkpoint"),
        (["--data", missing], 1, "cannot open " + missing),
        (["--data", corrupt], 1, "not a readable gzip file"),
        (["--data", truncated], 1, "not a readable gzip file"),
        (["--config", badcfg], 1, "CLOPT_ERR_UNKNOWN_OPTIMIZER"),
        (["--config", badjson], 1, "CLOPT_ERR_JSON"),
        (["--config", missing], 1, "cannot open " + missing),
        (["--checkpoint", ck, "--resume"], 1, ck),
        (["--device", "nosuchplatform:gpu:7"], 1, "clopt_context_create"),
        (["--device", "host", "--synthetic", "64"], 1, "needs an OpenCL device"),
        (["--synthetic", "64", "--plot", outs[0]], 2, "no --checkpoint or --plot"),
    ]
    for args, rc, msg in cases:
        plot = [] if "--synthetic" in args else ["--plot", outs[0]]  # --synthetic takes none
        p = run(exe, "--device", POCL, *plot, "--json", outs[1], *args, rc=rc)
        if msg not in p.stderr:
            fail(f"{args}: stderr lacks {msg!r}:\n{p.stderr}")
        written = [o for o in outs + [ck] if os.path.exists(o) or os.path.exists(o + ".tmp")]
        if written:
            fail(f"{args}: wrote {written}")
        print(f"ok: {' '.join(args)} -> exit {rc}: {p.stderr.splitlines()[0]}")
    # --devices: a malformed list, the same device twice, no such device, with --synthetic.
    dcases = [
        (["--devices", "host,,host"], 2, "spec 1 of 'host,,host' is empty"),
        (["--devices", "host,"], 2, "is empty"),
        (["--devices", f"{POCL},{POCL}"], 2, "name the same device"),
        (["--devices", "host,nosuchplatform:gpu:7"], 1, "replica 1 ('nosuchplatform:gpu:7')"),
        (["--devices", "host,host", "--synthetic", "64"], 2, "no --devices"),
    ]
    for args, rc, msg in dcases:
        p = run(exe, "--checkpoint", ck, "--plot", outs[0], "--json", outs[1], *args, rc=rc)
        if msg not in p.stderr:
            fail(f"{args}: stderr lacks {msg!r}:\n{p.stderr}")
        written = [o for o in outs + [ck] if os.path.exists(o) or os.path.exists(o + ".tmp")]
        if written:
            fail(f"{args}: wrote {written}")
        print(f"ok: {' '.join(args)} -> exit {rc}: {p.stderr.splitlines()[0]}")


def synthetic(exe, work):
    p = run(exe, "--device", POCL, "--synthetic", "96", "--hidden", "64,32", "--steps", "2",
            "--batch", "16")
    for want in ("throughput: 2 steps of batch 16", "GEMMs (CLBlast)", "optimizer (clopt)",
                 "other kernels", "all GEMMs:"):
        if want not in p.stdout:
            fail(f"synthetic output lacks {want!r}:\n{p.stdout}")
    print(p.stdout)


def main():
    case, exe, work = sys.argv[1], sys.argv[2], sys.argv[3]
    work = os.path.join(work, case)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    globals()[case](exe, work)
    print("PASS", case)


if __name__ == "__main__":
    main()
