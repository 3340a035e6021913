#!/usr/bin/env python3
"""Writes the `clopt replay` parity cases of this directory and their expected results.

Pure Python (no NumPy, no Keras): run `python3 tests/replay/reference.py` to regenerate
*.case.json and *.expected.json. See README.md for where every number comes from.

Each expected file holds one or more checks:
  - "published": the numbers Keras's own tests assert, copied from the cited test file (or the
    closed-form expressions those tests write, evaluated here), with a tolerance that says how
    precise the published numbers are;
  - "reference": the trajectory evaluated here with Keras's update rule, in float64 arithmetic,
    with the stored state (variables, slots) rounded to the variable's dtype after every step,
    as Keras stores it. Compared at the tight default tolerance (float32: 1e-5 relative plus
    1e-6 absolute).

Independent on purpose: the update rules here are written again from Keras's sources, not
generated from clopt's (cl/scalars.cl, cl/*.cl, src/backend/host/kernels_*.c), so that a mistake
copied into clopt's one declaration of a rule cannot also pass here. Keep it that way.
"""
import json
import math
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

KERAS = "keras-team/keras"
TFKERAS = "keras-team/tf-keras"


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def f16(x):
    return struct.unpack("<e", struct.pack("<e", x))[0]


def bf16(x):
    (u,) = struct.unpack("<I", struct.pack("<f", x))
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return struct.unpack("<f", struct.pack("<I", u))[0]


ROUND = {"float32": f32, "float64": float, "float16": f16, "bfloat16": bf16}


def sgd(lr, momentum=0.0, nesterov=False):
    """keras.optimizers.SGD.update_step, one element."""

    def init():
        return {"momentum": 0.0} if momentum else {}

    def step(x, g, s, t, rnd):
        lr_, mu = rnd(f32(lr)), rnd(momentum)  # Keras keeps the learning rate in float32
        if not momentum:
            return rnd(x - lr_ * g)
        m = rnd(mu * s["momentum"] - lr_ * g)
        s["momentum"] = m
        return rnd(x + (mu * m - lr_ * g if nesterov else m))

    return init, step, ["momentum"] if momentum else []


def adam(lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False):
    """keras.optimizers.Adam.update_step, one element."""

    def init():
        s = {"momentum": 0.0, "velocity": 0.0}
        if amsgrad:
            s["velocity_hat"] = 0.0
        return s

    def step(x, g, s, t, rnd):
        b1, b2, eps = rnd(beta_1), rnd(beta_2), rnd(epsilon)
        alpha = rnd(f32(lr)) * math.sqrt(1 - b2**t) / (1 - b1**t)
        s["momentum"] = m = rnd(s["momentum"] + (g - s["momentum"]) * (1 - b1))
        s["velocity"] = v = rnd(s["velocity"] + (g * g - s["velocity"]) * (1 - b2))
        if amsgrad:
            s["velocity_hat"] = v = max(s["velocity_hat"], v)
        return rnd(x - alpha * m / (math.sqrt(v) + eps))

    return init, step, ["momentum", "velocity"]


def run(opt, variables, steps, lr):
    """The reference trajectory: expected "steps" and the slot values after the last step."""
    init, step, kinds = opt
    xs = [[ROUND[v["dtype"]](e) for e in v["value"]] for v in variables]
    states = [[init() for _ in v["value"]] for v in variables]
    out = []
    for i, grads in enumerate(steps):
        for j, g in enumerate(grads):
            if g is None:
                continue
            rnd = ROUND[variables[j]["dtype"]]
            xs[j] = [step(x, rnd(ge), s, i + 1, rnd) for x, ge, s in zip(xs[j], g, states[j])]
        out.append({"iterations": i + 1, "learning_rate": f32(lr), "variables": [list(x) for x in xs]})
    slots = {}
    for j, v in enumerate(variables):
        for k in kinds + (["velocity_hat"] if states[j] and "velocity_hat" in states[j][0] else []):
            slots[v["name"].replace("/", "_") + "_" + k] = [s[k] for s in states[j]]
    return out, slots


def clip_by_norm(g, c):
    """Keras's clipnorm on one gradient: g * c / max(norm, c)."""
    n = math.sqrt(sum(x * x for x in g))
    return [x * c / max(n, c) for x in g]


def replica_sum(per_replica, rnd, clipnorm=None):
    """Keras 3 on TensorFlow (keras/src/backend/tensorflow/optimizer.py): each replica clips its
    own gradient in BaseOptimizer.apply, as a tensor of the variable's dtype, and only then
    _backend_update_step all-reduces (SUM, here in replica order) before update_step."""
    total = None
    for g in per_replica:
        g = [rnd(x) for x in g]
        if clipnorm is not None:
            g = [rnd(x) for x in clip_by_norm(g, clipnorm)]
        total = g if total is None else [rnd(a + b) for a, b in zip(total, g)]
    return total


def optimizer_variables(n_steps, lr, variables, slot_order, slots):
    ov = [{"name": "iteration", "value": [n_steps]}, {"name": "learning_rate", "value": [f32(lr)]}]
    for name in slot_order:
        ov.append({"name": name, "value": slots[name]})
    return ov


def dump_case(name, comment, optimizer, variables, steps, replicas=None):
    case = {"comment": comment, "optimizer": optimizer, "variables": variables}
    if replicas:
        case["replicas"] = replicas
    lines = ["{"]
    for k, v in case.items():
        lines.append("  %s: %s," % (json.dumps(k), json.dumps(v)))
    lines.append('  "steps": [')
    lines.append(",\n".join("    " + json.dumps(s) for s in steps))
    lines.append("  ]")
    lines.append("}")
    with open(os.path.join(HERE, name + ".case.json"), "w") as f:
        f.write("\n".join(lines) + "\n")


def dump_expected(name, source, checks):
    lines = ["{", '  "source": %s,' % json.dumps(source), '  "checks": [']
    parts = []
    for c in checks:
        p = ["    {"]
        items = []
        for k in ("what", "tolerance"):
            if k in c:
                items.append("      %s: %s" % (json.dumps(k), json.dumps(c[k])))
        if "steps" in c:
            items.append('      "steps": [\n' + ",\n".join("        " + json.dumps(s) for s in c["steps"]) + "\n      ]")
        if "optimizer_variables" in c:
            items.append('      "optimizer_variables": [\n' + ",\n".join(
                "        " + json.dumps(s) for s in c["optimizer_variables"]) + "\n      ]")
        p.append(",\n".join(items))
        p.append("    }")
        parts.append("\n".join(p))
    lines.append(",\n".join(parts))
    lines.append("  ]")
    lines.append("}")
    with open(os.path.join(HERE, name + ".expected.json"), "w") as f:
        f.write("\n".join(lines) + "\n")


def published_steps(values_per_step, n_steps, nvars=1, lr=None):
    """Published values for some steps (None where the test asserts nothing)."""
    out = []
    for i in range(n_steps):
        v = values_per_step[i] if i < len(values_per_step) else None
        if v is None:
            out.append(None)
        else:
            e = {"iterations": i + 1, "variables": v}
            if lr is not None:
                e["learning_rate"] = lr
            out.append(e)
    return out


def keras_golden():
    """keras/src/optimizers/{sgd,adam}_test.py, test_correctness_with_golden: x = ones(10),
    one step with full(10, 0.01), then steps with arange(0.1, 1.1, 0.1); golden[i] is asserted
    after step i + 1 (the sixth step is not asserted)."""
    first = [0.01] * 10
    grads = [round(0.1 * (i + 1), 10) for i in range(10)]
    steps = [[first]] + [[grads]] * 5
    variables = [{"name": "x", "dtype": "float32", "shape": [10], "value": [1.0] * 10}]

    sgd_golden = [
        [0.9999] * 10,
        [0.9989, 0.9979, 0.9969, 0.9959, 0.9949, 0.9939, 0.9929, 0.9919, 0.9909, 0.9899],
        [0.9979, 0.9959, 0.9939, 0.9919, 0.9899, 0.9879, 0.9859, 0.9839, 0.9819, 0.9799],
        [0.9969, 0.9939, 0.9909, 0.9879, 0.9849, 0.9819, 0.9789, 0.9759, 0.9729, 0.9699],
        [0.9959, 0.9919, 0.9879, 0.9839, 0.9799, 0.9759, 0.9719, 0.9679, 0.9639, 0.9599],
    ]
    # SGD(nesterov=True): momentum defaults to 0, so this is plain SGD with lr 0.01.
    opt = {"module": "keras.optimizers", "class_name": "SGD",
           "config": {"name": "SGD", "learning_rate": 0.01, "momentum": 0.0, "nesterov": True},
           "registered_name": None}
    dump_case("keras_sgd_golden", "Keras 3 sgd_test.py test_correctness_with_golden: "
              "SGD(nesterov=True) on ones(10)", opt, variables, steps)
    ref, _ = run(sgd(0.01, 0.0, True), variables, steps, 0.01)
    dump_expected("keras_sgd_golden", KERAS + " keras/src/optimizers/sgd_test.py "
                  "SGDTest.test_correctness_with_golden", [
                      {"what": "published golden; exact decimals, so checked to 1e-6 (Keras "
                               "checks 5e-4)",
                       "tolerance": {"float32": [0, 1e-6]},
                       "steps": published_steps([[g] for g in sgd_golden], 6)},
                      {"what": "reference (reference.py)", "steps": ref,
                       "optimizer_variables": optimizer_variables(6, 0.01, variables, [], {})},
                  ])

    adam_golden = [[v] * 10 for v in (0.999, 0.9982, 0.9974, 0.9965, 0.9955)]
    opt = {"module": "keras.optimizers", "class_name": "Adam",
           "config": {"name": "adam", "learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999,
                      "epsilon": 1e-07, "amsgrad": True},
           "registered_name": None}
    dump_case("keras_adam_amsgrad_golden", "Keras 3 adam_test.py test_correctness_with_golden: "
              "Adam(amsgrad=True) on ones(10)", opt, variables, steps)
    ref, slots = run(adam(amsgrad=True), variables, steps, 0.001)
    dump_expected("keras_adam_amsgrad_golden", KERAS + " keras/src/optimizers/adam_test.py "
                  "AdamTest.test_correctness_with_golden", [
                      {"what": "published golden: one 4-decimal value per step for all ten "
                               "elements, which spread by up to 1.3e-4; checked to 2e-4 (Keras "
                               "checks 5e-4 + 5e-4 relative)",
                       "tolerance": {"float32": [0, 2e-4]},
                       "steps": published_steps([[g] for g in adam_golden], 6)},
                      {"what": "reference (reference.py)", "steps": ref,
                       "optimizer_variables": optimizer_variables(
                           6, 0.001, variables, ["x_momentum", "x_velocity", "x_velocity_hat"],
                           slots)},
                  ])


def keras_single_step():
    """keras/src/optimizers/{sgd,adam}_test.py test_single_step."""
    variables = [{"name": "vars", "dtype": "float32", "shape": [4], "value": [1.0, 2.0, 3.0, 4.0]}]
    steps = [[[1.0, 6.0, 7.0, 2.0]]]
    opt = {"class_name": "SGD", "config": {"learning_rate": 0.5}}
    dump_case("keras_sgd_single_step", "Keras 3 sgd_test.py test_single_step", opt, variables,
              steps)
    ref, _ = run(sgd(0.5), variables, steps, 0.5)
    dump_expected("keras_sgd_single_step", KERAS + " keras/src/optimizers/sgd_test.py "
                  "SGDTest.test_single_step", [
                      {"what": "published: vars [0.5, -1.0, -0.5, 3.0] (Keras checks 1e-4); "
                               "optimizer.variables == [1, 0.5], exactly two",
                       "tolerance": {"float32": [0, 1e-6]},
                       "steps": [{"iterations": 1, "variables": [[0.5, -1.0, -0.5, 3.0]]}],
                       "optimizer_variables": [{"name": "iteration", "value": [1]},
                                               {"name": "learning_rate", "value": [0.5]}]},
                      {"what": "reference (reference.py)", "steps": ref},
                  ])
    opt = {"class_name": "Adam", "config": {"learning_rate": 0.5}}
    dump_case("keras_adam_single_step", "Keras 3 adam_test.py test_single_step", opt, variables,
              steps)
    ref, slots = run(adam(lr=0.5), variables, steps, 0.5)
    dump_expected("keras_adam_single_step", KERAS + " keras/src/optimizers/adam_test.py "
                  "AdamTest.test_single_step", [
                      {"what": "published: vars [0.5, 1.5, 2.5, 3.5] with rtol = atol = 1e-4",
                       "tolerance": {"float32": [1e-4, 1e-4]},
                       "steps": [{"iterations": 1, "variables": [[0.5, 1.5, 2.5, 3.5]]}]},
                      {"what": "reference (reference.py)", "steps": ref,
                       "optimizer_variables": optimizer_variables(
                           1, 0.5, variables, ["vars_momentum", "vars_velocity"], slots)},
                  ])


def two_vars(dtype, suffix=""):
    return [{"name": "var0" + suffix, "dtype": dtype, "shape": [2], "value": [1.0, 2.0]},
            {"name": "var1" + suffix, "dtype": dtype, "shape": [2], "value": [3.0, 4.0]}]


def tfkeras_momentum():
    """tf_keras/optimizers/legacy/gradient_descent_test.py MomentumOptimizerTest.testBasic:
    SGD(learning_rate=2.0, momentum=0.9), var0 [1, 2], var1 [3, 4], grads [0.1, 0.1] and
    [0.01, 0.01], two steps, for half, float32 and float64."""
    pub_vars = [
        [[1.0 - (0.1 * 2.0), 2.0 - (0.1 * 2.0)], [3.0 - (0.01 * 2.0), 4.0 - (0.01 * 2.0)]],
        [[1.0 - (0.1 * 2.0) - ((0.9 * 0.1 + 0.1) * 2.0), 2.0 - (0.1 * 2.0) - ((0.9 * 0.1 + 0.1) * 2.0)],
         [2.98 - ((0.9 * 0.01 + 0.01) * 2.0), 3.98 - ((0.9 * 0.01 + 0.01) * 2.0)]],
    ]
    pub_slots = [[(0.9 * (-0.2) - 2.0 * 0.1)] * 2, [(0.9 * (-0.02) - 2.0 * 0.01)] * 2]
    opt = {"class_name": "SGD", "config": {"learning_rate": 2.0, "momentum": 0.9}}
    src = TFKERAS + " tf_keras/optimizers/legacy/gradient_descent_test.py MomentumOptimizerTest.testBasic"

    for name, dtypes, tol in (
            ("tfkeras_sgd_momentum", ("float32", "float64"), None),
            ("tfkeras_sgd_momentum_half", ("float16", "bfloat16"),
             {"float16": [1e-3, 1e-3], "bfloat16": [1e-2, 1e-2]})):
        variables = two_vars(dtypes[0], "") + two_vars(dtypes[1], "_" + dtypes[1])
        steps = [[[0.1, 0.1], [0.01, 0.01], [0.1, 0.1], [0.01, 0.01]]] * 2
        dump_case(name, "tf-keras MomentumOptimizerTest.testBasic, as %s and %s" % dtypes, opt,
                  variables, steps)
        ref, slots = run(sgd(2.0, 0.9), variables, steps, 2.0)
        names = [v["name"] + "_momentum" for v in variables]
        checks = [{"what": "published closed forms (Keras checks them with "
                           "assertAllCloseAccordingToType: 1e-6 for float32/float64, 1e-3 for "
                           "half; 1e-2 for bfloat16)",
                   "steps": [{"iterations": i + 1, "variables": pub_vars[i] + pub_vars[i]}
                             for i in range(2)],
                   "optimizer_variables": [{"name": "iteration", "value": [2]},
                                           {"name": "learning_rate", "value": [2.0]}] +
                   [{"name": n, "value": pub_slots[k % 2]} for k, n in enumerate(names)]}]
        if tol:
            checks[0]["tolerance"] = tol
            checks[0]["what"] = ("published closed forms, at the tolerance Keras's "
                                 "assertAllCloseAccordingToType uses for the dtype")
        else:
            checks.append({"what": "reference (reference.py)", "steps": ref,
                           "optimizer_variables": optimizer_variables(2, 2.0, variables, names,
                                                                      slots)})
        dump_expected(name, src, checks)

        if name == "tfkeras_sgd_momentum":
            # The same numbers with the gradients split over two replicas (Keras's SUM
            # contract), plus a variable that never gets a gradient.
            variables3 = variables + [{"name": "frozen", "dtype": "float32", "shape": [2],
                                       "value": [5.0, 6.0]}]
            rsteps = [[[[0.05, 0.05], [0.004, 0.004], [0.05, 0.05], [0.004, 0.004], None],
                       [[0.05, 0.05], [0.006, 0.006], [0.05, 0.05], [0.006, 0.006], None]]] * 2
            dump_case("sgd_momentum_replicas", "tfkeras_sgd_momentum with each gradient split "
                      "over 2 replicas (summed before the update) and a variable without "
                      "gradients", opt, variables3, rsteps, replicas=2)
            ref3, slots3 = run(sgd(2.0, 0.9), variables3, [s + [None] for s in steps], 2.0)
            names3 = names + ["frozen_momentum"]
            dump_expected("sgd_momentum_replicas", src + " (split over 2 replicas)", [
                {"what": "published closed forms; the frozen variable and its slot stay as "
                         "they were",
                 "steps": [{"iterations": i + 1, "variables": pub_vars[i] + pub_vars[i] +
                            [[5.0, 6.0]]} for i in range(2)]},
                {"what": "reference (reference.py)", "steps": ref3,
                 "optimizer_variables": optimizer_variables(2, 2.0, variables3, names3, slots3)},
            ])


def tfkeras_nesterov():
    """tf_keras/optimizers/legacy/gradient_descent_test.py
    MomentumOptimizerTest.testNesterovMomentum: SGD(learning_rate=2.0, momentum=0.9,
    nesterov=True) minimizing 5 * var0**2 + 3 * var1 for 4 steps, checked against the test's
    _update_nesterov_momentum_numpy; the gradients (10 * var0, and 3) are recorded from that
    trajectory, as testSparseNesterovMomentum does."""
    variables = two_vars("float32") + two_vars("float64", "_float64")
    opt = {"class_name": "SGD", "config": {"learning_rate": 2.0, "momentum": 0.9,
                                           "nesterov": True}}
    # The test's numpy reference, per dtype.
    steps = [[None] * 4 for _ in range(4)]
    expected = []
    for d, off in (("float32", 0), ("float64", 2)):
        rnd = ROUND[d]
        var0, var1 = [1.0, 2.0], [3.0, 4.0]
        acc0, acc1 = [0.0, 0.0], [0.0, 0.0]
        for t in range(4):
            g0 = [rnd(10 * x) for x in var0]
            g1 = [3.0, 3.0]
            steps[t][off], steps[t][off + 1] = g0, g1
            for var, acc, g in ((var0, acc0, g0), (var1, acc1, g1)):
                for k in range(2):
                    acc[k] = rnd(acc[k] * rnd(0.9) - g[k] * 2.0)
                    var[k] = rnd(var[k] + (acc[k] * rnd(0.9) - g[k] * 2.0))
            if len(expected) <= t:
                expected.append({"iterations": t + 1, "variables": [None] * 4})
            expected[t]["variables"][off] = list(var0)
            expected[t]["variables"][off + 1] = list(var1)
    dump_case("tfkeras_sgd_nesterov", "tf-keras MomentumOptimizerTest.testNesterovMomentum "
              "(float32 and float64)", opt, variables, steps)
    ref, slots = run(sgd(2.0, 0.9, True), variables, steps, 2.0)
    names = [v["name"] + "_momentum" for v in variables]
    dump_expected("tfkeras_sgd_nesterov", TFKERAS + " tf_keras/optimizers/legacy/"
                  "gradient_descent_test.py MomentumOptimizerTest.testNesterovMomentum", [
                      {"what": "published: the test's _update_nesterov_momentum_numpy "
                               "(Keras checks assertAllClose, 1e-6)",
                       "steps": expected},
                      {"what": "reference (reference.py)", "steps": ref,
                       "optimizer_variables": optimizer_variables(4, 2.0, variables, names,
                                                                  slots)},
                  ])


def tfkeras_adam_amsgrad():
    """tf_keras/optimizers/legacy/adam_test.py AdamOptimizerTest.testBasicWithAmsgrad:
    Adam(amsgrad=True), var0 [1, 2], var1 [3, 4], grads [0.1, 0.1] and [0.01, 0.01], three
    steps, checked against the test's adam_update_numpy_amsgrad."""
    variables = two_vars("float32") + two_vars("float64", "_float64")
    opt = {"class_name": "Adam", "config": {"amsgrad": True}}
    steps = [[[0.1, 0.1], [0.01, 0.01], [0.1, 0.1], [0.01, 0.01]]] * 3
    expected = [{"iterations": t + 1, "variables": [None] * 4} for t in range(3)]
    for d, off in (("float32", 0), ("float64", 2)):
        rnd = ROUND[d]
        for j, (var, g) in enumerate((([1.0, 2.0], 0.1), ([3.0, 4.0], 0.01))):
            g = rnd(g)
            m = v = vhat = 0.0
            var = list(var)
            for t in range(3):
                lr_t = 0.001 * math.sqrt(1 - 0.999 ** (t + 1)) / (1 - 0.9 ** (t + 1))
                m = rnd(0.9 * m + (1 - 0.9) * g)
                v = rnd(0.999 * v + (1 - 0.999) * g * g)
                vhat = max(vhat, v)
                var = [rnd(x - lr_t * m / (math.sqrt(vhat) + 1e-7)) for x in var]
                expected[t]["variables"][off + j] = list(var)
    dump_case("tfkeras_adam_amsgrad", "tf-keras AdamOptimizerTest.testBasicWithAmsgrad "
              "(float32 and float64)", opt, variables, steps)
    ref, slots = run(adam(amsgrad=True), variables, steps, 0.001)
    names = []
    for v in variables:
        names += [v["name"] + "_momentum", v["name"] + "_velocity"]
    names += [v["name"] + "_velocity_hat" for v in variables]
    dump_expected("tfkeras_adam_amsgrad", TFKERAS + " tf_keras/optimizers/legacy/adam_test.py "
                  "AdamOptimizerTest.testBasicWithAmsgrad", [
                      {"what": "published: the test's adam_update_numpy_amsgrad (Keras checks "
                               "assertAllCloseAccordingToType, 1e-6); float64 to 1e-9 because "
                               "the formula uses lr = 0.001 where Keras (and clopt) keep the "
                               "learning rate in a float32 variable, 0.0010000000475",
                       "tolerance": {"float64": [1e-9, 1e-12]},
                       "steps": expected},
                      {"what": "reference (reference.py)", "steps": ref,
                       "optimizer_variables": optimizer_variables(3, 0.001, variables, names,
                                                                  slots)},
                  ])


def sgd_clipnorm_replicas():
    """Where the order matters: clipnorm clips each replica's gradient before the sum."""
    opt = {"class_name": "SGD", "config": {"learning_rate": 0.5, "clipnorm": 1.0}}
    variables = [{"name": "w", "dtype": "float32", "shape": [4], "value": [1.0, 2.0, 3.0, 4.0]}]
    steps = [[[[3.0, 4.0, 0.0, 0.0]], [[0.0, 0.0, 1.0, 0.0]]],
             [[[0.0, 0.5, 0.0, 0.0]], [[2.0, 0.0, 0.0, 2.0]]]]
    dump_case("sgd_clipnorm_replicas", "SGD with clipnorm over 2 replicas: each replica clips its "
              "own gradient, then the sum (Keras 3 on TF); clipping the sum gives other numbers",
              opt, variables, steps, replicas=2)
    summed = [[replica_sum([rep[0] for rep in step], f32, 1.0)] for step in steps]
    ref, _ = run(sgd(0.5), variables, summed, 0.5)
    # By hand. Step 1: [3, 4] clipped to [0.6, 0.8], [0, 0, 1, 0] kept: the sum [0.6, 0.8, 1, 0].
    # Step 2: [0, 0.5] kept, [2, 0, 0, 2] clipped to [h, 0, 0, h] with h = sqrt(1/2).
    h = math.sqrt(0.5)
    by_hand = [[0.7, 1.6, 2.5, 4.0], [0.7 - 0.5 * h, 1.35, 2.5, 4.0 - 0.5 * h]]
    dump_expected("sgd_clipnorm_replicas", "Keras 3 BaseOptimizer.apply and TFOptimizer."
                  "_backend_update_step (clip per replica, then all-reduce)", [
                      {"what": "by hand: w - 0.5 * (clip(g0) + clip(g1)) each step",
                       "steps": [{"iterations": i + 1, "variables": [w]}
                                 for i, w in enumerate(by_hand)]},
                      {"what": "reference (reference.py)", "steps": ref},
                  ])


if __name__ == "__main__":
    keras_golden()
    keras_single_step()
    tfkeras_momentum()
    tfkeras_nesterov()
    tfkeras_adam_amsgrad()
    sgd_clipnorm_replicas()
