/* Keras learning-rate schedules (keras.optimizers.schedules, semantics doc section 4): parsing the
 * serialized form, evaluating at an optimizer step, writing the serialized form back.
 *
 * How the float32 computation is reproduced. Keras converts initial_learning_rate to a tensor and
 * uses its dtype for the whole computation; a value read from JSON is a Python float, so that
 * dtype is float32. Every other config number (decay_steps, decay_rate, alpha, ...) and the raw
 * int64 step are cast to float32 first, and each tensor operation rounds its result to float32.
 * Here every config number is cast to float once ((float)x, the same round-to-nearest as TF's and
 * JAX's casts), the step with (float)step, and each Keras operation is one C operation on floats
 * stored in a float variable, using the float functions powf/floorf/ceilf/cosf/logf. Two details
 * keep the C arithmetic from being more precise than TF's:
 *   - no excess precision: on the targets we support FLT_EVAL_METHOD is 0 (SSE, NEON), so a float
 *     operation rounds to float (an x87 build, FLT_EVAL_METHOD 2, could differ in the last bit);
 *   - no FMA contraction: a multiply and the add that uses it are separate statements, and C only
 *     contracts within one expression (GCC in ISO C mode, which CMake selects, never contracts).
 * Where Keras combines a Python float constant with a tensor ((1 - self.alpha) * x in
 * CosineDecay), the constant is computed in double as Python does and then rounded to float32,
 * as TF/JAX convert a Python scalar operand. The transcendental functions are the C library's
 * float versions; TF's kernels (Eigen) may differ from them by an ulp, so results agree with Keras
 * to float32 round-off, not always bit for bit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "../core/core_internal.h"
#include "json_internal.h"
#include "schedule_internal.h"

#define SCHED_MODULE "keras.optimizers.schedules"
#define MAX_KEYS 6

/* Python's math.pi, as np.array(math.pi, dtype="float32") gives it. */
#define PI_F ((float)3.14159265358979323846)

typedef enum sched_kind {
    K_EXPONENTIAL,
    K_PIECEWISE,
    K_POLYNOMIAL,
    K_INVERSE_TIME,
    K_COSINE,
    K_COSINE_RESTARTS
} sched_kind;

typedef enum key_type {
    T_NUMBER,         /* any JSON number (a rate, a multiplier, ...) */
    T_NUMBER_OR_NULL, /* warmup_target */
    T_STEPS,          /* a step count: a JSON integer or an integral real */
    T_BOOL,           /* staircase, cycle */
    T_NAME,           /* a string or null */
    T_LIST            /* boundaries, values: an array of numbers */
} key_type;

typedef struct key_spec {
    const char *key;
    key_type type;
    int required;
    double def;  /* default for an optional number */
    int def_int; /* the default is written as a JSON integer (Keras's default is a Python int) */
} key_spec;

typedef struct class_spec {
    const char *class_name;
    const char *default_name;
    sched_kind kind;
    int nkeys;
    key_spec keys[MAX_KEYS]; /* Keras get_config order */
} class_spec;

/* Indices into class_spec.keys and clopt__schedule.num, per class. */
enum { EXP_LR0, EXP_STEPS, EXP_RATE, EXP_STAIRCASE, EXP_NAME };
enum { PCD_BOUNDARIES, PCD_VALUES, PCD_NAME };
enum { POLY_LR0, POLY_STEPS, POLY_END, POLY_POWER, POLY_CYCLE, POLY_NAME };
enum { COS_LR0, COS_STEPS, COS_ALPHA, COS_NAME, COS_WARMUP_TARGET, COS_WARMUP_STEPS };
enum { SGDR_LR0, SGDR_STEPS, SGDR_T_MUL, SGDR_M_MUL, SGDR_ALPHA, SGDR_NAME };

static const class_spec classes[] = {
    {"ExponentialDecay", "ExponentialDecay", K_EXPONENTIAL, 5,
     {{"initial_learning_rate", T_NUMBER, 1, 0, 0},
      {"decay_steps", T_STEPS, 1, 0, 0},
      {"decay_rate", T_NUMBER, 1, 0, 0},
      {"staircase", T_BOOL, 0, 0, 0},
      {"name", T_NAME, 0, 0, 0}}},
    {"PiecewiseConstantDecay", "PiecewiseConstant", K_PIECEWISE, 3,
     {{"boundaries", T_LIST, 1, 0, 0},
      {"values", T_LIST, 1, 0, 0},
      {"name", T_NAME, 0, 0, 0}}},
    {"PolynomialDecay", "PolynomialDecay", K_POLYNOMIAL, 6,
     {{"initial_learning_rate", T_NUMBER, 1, 0, 0},
      {"decay_steps", T_STEPS, 1, 0, 0},
      {"end_learning_rate", T_NUMBER, 0, 0.0001, 0},
      {"power", T_NUMBER, 0, 1.0, 0},
      {"cycle", T_BOOL, 0, 0, 0},
      {"name", T_NAME, 0, 0, 0}}},
    {"InverseTimeDecay", "InverseTimeDecay", K_INVERSE_TIME, 5,
     {{"initial_learning_rate", T_NUMBER, 1, 0, 0},
      {"decay_steps", T_STEPS, 1, 0, 0},
      {"decay_rate", T_NUMBER, 1, 0, 0},
      {"staircase", T_BOOL, 0, 0, 0},
      {"name", T_NAME, 0, 0, 0}}},
    {"CosineDecay", "CosineDecay", K_COSINE, 6,
     {{"initial_learning_rate", T_NUMBER, 1, 0, 0},
      {"decay_steps", T_STEPS, 1, 0, 0},
      {"alpha", T_NUMBER, 0, 0.0, 0},
      {"name", T_NAME, 0, 0, 0},
      {"warmup_target", T_NUMBER_OR_NULL, 0, 0, 0}, /* default None */
      {"warmup_steps", T_STEPS, 0, 0, 1}}},
    {"CosineDecayRestarts", "SGDRDecay", K_COSINE_RESTARTS, 6,
     {{"initial_learning_rate", T_NUMBER, 1, 0, 0},
      {"first_decay_steps", T_STEPS, 1, 0, 0},
      {"t_mul", T_NUMBER, 0, 2.0, 0},
      {"m_mul", T_NUMBER, 0, 1.0, 0},
      {"alpha", T_NUMBER, 0, 0.0, 0},
      {"name", T_NAME, 0, 0, 0}}},
};
#define NCLASSES (sizeof classes / sizeof *classes)

/* A config number as the user wrote it: a JSON integer stays one when written back, a real stays
 * a real (Keras keeps whatever Python value it was given). */
typedef struct num {
    double v;   /* the value (for an integer, (double)i) */
    int64_t i;  /* the integer value, when is_int */
    int is_int; /* written as a JSON integer */
    int null;   /* JSON null (warmup_target only) */
} num;

struct clopt__schedule {
    const class_spec *cls;
    num num[MAX_KEYS];  /* numbers and booleans (v = 0 or 1), indexed like cls->keys */
    char *name;         /* NULL when the config's name is null */
    num *lists[2];      /* PiecewiseConstantDecay: boundaries, values */
    size_t nlist[2];
};

/* ---- Parsing ---- */


static const char *expected(key_type t) {
    switch (t) {
    case T_NUMBER: return "a number";
    case T_NUMBER_OR_NULL: return "a number or null";
    case T_STEPS: return "an integer";
    case T_BOOL: return "a boolean";
    case T_NAME: return "a string or null";
    case T_LIST: return "a list of numbers";
    }
    return "?";
}

static num num_of(const json_t *v) {
    num n = {0, 0, 0, 0};
    if (json_is_integer(v)) {
        n.i = (int64_t)json_integer_value(v);
        n.v = (double)n.i;
        n.is_int = 1;
    } else {
        n.v = json_number_value(v);
        /* Only read for integral reals, which are range-checked; other reals may lie beyond
         * int64's range, where the conversion would be undefined. */
        n.i = fabs(n.v) < 9.2e18 ? (int64_t)n.v : 0;
    }
    return n;
}

/* The value rounded to float32, as Keras's cast to the computation dtype does. */
static float f32(const num *n) { return n->is_int ? (float)n->i : (float)n->v; }

/* Python's repr of the number, for error messages. */
static void num_repr(const num *n, char *out, size_t size) {
    if (n->is_int)
        snprintf(out, size, "%lld", (long long)n->i);
    else
        clopt__format_real(n->v, out, size);
}

static int is_integral_real(const json_t *v) {
    double x = json_real_value(v);
    return isfinite(x) && x == floor(x) && fabs(x) < 9.2e18;
}

static clopt_status parse_list(clopt_context *ctx, clopt__schedule *s, int which, const char *key,
                               const json_t *v) {
    const char *cls = s->cls->class_name;
    if (!json_is_array(v))
        return clopt__fail(ctx, CLOPT_ERR_BAD_TYPE, "%s config: '%s' must be %s, got %s", cls, key,
                           expected(T_LIST), clopt__json_type_name(v));
    size_t n = json_array_size(v);
    num *l = calloc(n ? n : 1, sizeof *l);
    if (!l) return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "out of host memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_number(e)) {
            free(l);
            return clopt__fail(ctx, CLOPT_ERR_BAD_TYPE,
                               "%s config: '%s' must be %s, but element %zu is %s", cls, key,
                               expected(T_LIST), i, clopt__json_type_name(e));
        }
        l[i] = num_of(e);
    }
    free(s->lists[which]);
    s->lists[which] = l;
    s->nlist[which] = n;
    return CLOPT_OK;
}

static clopt_status parse_key(clopt_context *ctx, clopt__schedule *s, int k, const json_t *v) {
    const key_spec *ks = &s->cls->keys[k];
    const char *cls = s->cls->class_name;
    int ok = 0;
    switch (ks->type) {
    case T_NUMBER: ok = json_is_number(v); break;
    case T_NUMBER_OR_NULL: ok = json_is_number(v) || json_is_null(v); break;
    case T_STEPS: ok = json_is_integer(v) || (json_is_real(v) && is_integral_real(v)); break;
    case T_BOOL: ok = json_is_boolean(v); break;
    case T_NAME: ok = json_is_string(v) || json_is_null(v); break;
    case T_LIST:
        return parse_list(ctx, s, k == PCD_BOUNDARIES ? 0 : 1, ks->key, v);
    }
    if (!ok) {
        if (ks->type == T_STEPS && json_is_real(v))
            return clopt__fail(ctx, CLOPT_ERR_BAD_TYPE,
                               "%s config: '%s' must be an integer, got %g", cls, ks->key,
                               json_real_value(v));
        return clopt__fail(ctx, CLOPT_ERR_BAD_TYPE, "%s config: '%s' must be %s, got %s", cls,
                           ks->key, expected(ks->type), clopt__json_type_name(v));
    }
    switch (ks->type) {
    case T_BOOL: s->num[k] = (num){json_is_true(v) ? 1 : 0, json_is_true(v) ? 1 : 0, 1, 0}; break;
    case T_NAME: {
        char *n = NULL;
        if (json_is_string(v) && !(n = clopt__strdup(json_string_value(v))))
            return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "out of host memory");
        free(s->name);
        s->name = n;
        break;
    }
    default:
        if (json_is_null(v))
            s->num[k] = (num){0, 0, 0, 1};
        else
            s->num[k] = num_of(v);
        break;
    }
    return CLOPT_OK;
}

/* Numbers that make the float32 computation NaN or inf at some step, which Keras accepts and
 * then trains on: a number beyond float32, a negative rate to a fractional power (ExponentialDecay
 * without staircase), 1 + rate * p reaching 0 (InverseTimeDecay), 0 to a negative power
 * (PolynomialDecay at decay_steps), the log of t_mul <= 0 (CosineDecayRestarts). A finite rate
 * that overflows only at some step is caught when apply reads it (clopt__apply_prepare). */
static clopt_status check_finite(clopt_context *ctx, const clopt__schedule *s) {
    const class_spec *c = s->cls;
    char a[64];
    for (size_t i = 0; c->kind == K_PIECEWISE && i < s->nlist[1]; i++)
        if (!isfinite(f32(&s->lists[1][i]))) {
            num_repr(&s->lists[1][i], a, sizeof a);
            return clopt__fail(ctx, CLOPT_ERR_BAD_VALUE,
                               "%s config: 'values'[%zu] = %s is not finite as a float32",
                               c->class_name, i, a);
        }
    int bad = -1;
    const char *why = NULL;
    for (int k = 0; k < c->nkeys && bad < 0; k++)
        if ((c->keys[k].type == T_NUMBER || c->keys[k].type == T_NUMBER_OR_NULL) &&
            !s->num[k].null && !isfinite(f32(&s->num[k])))
            bad = k, why = "is not finite as a float32";
    const num *n = s->num;
    if (bad >= 0) {
    } else if (c->kind == K_EXPONENTIAL && n[EXP_RATE].v < 0 && !n[EXP_STAIRCASE].v) {
        bad = EXP_RATE, why = "must be >= 0 unless staircase is true (a negative rate to a "
                              "fractional power is NaN)";
    } else if (c->kind == K_INVERSE_TIME && n[EXP_RATE].v < 0) {
        bad = EXP_RATE, why = "must be >= 0 (1 + decay_rate * step / decay_steps would reach 0)";
    } else if (c->kind == K_POLYNOMIAL && n[POLY_POWER].v < 0) {
        bad = POLY_POWER, why = "must be >= 0 (0 to a negative power is inf at decay_steps)";
    } else if (c->kind == K_COSINE_RESTARTS && !(n[SGDR_T_MUL].v > 0)) {
        bad = SGDR_T_MUL, why = "must be > 0 (its logarithm gives the period; the learning rate "
                                "would be NaN)";
    }
    if (bad < 0) return CLOPT_OK;
    num_repr(&n[bad], a, sizeof a);
    return clopt__fail(ctx, CLOPT_ERR_BAD_VALUE, "%s config: '%s' = %s %s", c->class_name,
                       c->keys[bad].key, a, why);
}

/* Keras's constructor checks (semantics doc section 4), then clopt's (check_finite). */
static clopt_status validate(clopt_context *ctx, const clopt__schedule *s) {
    const class_spec *c = s->cls;
    char a[64];
    clopt_status fin = check_finite(ctx, s);
    if (fin != CLOPT_OK) return fin;
    if (c->kind == K_PIECEWISE) {
        size_t nb = s->nlist[0], nv = s->nlist[1];
        if (nb + 1 != nv) {
            /* Keras's text, with Python's list repr of both lists. */
            json_t *jb = json_array(), *jv = json_array();
            for (size_t i = 0; jb && jv && i < nb; i++)
                json_array_append_new(jb, s->lists[0][i].is_int
                                              ? json_integer(s->lists[0][i].i)
                                              : json_real(s->lists[0][i].v));
            for (size_t i = 0; jb && jv && i < nv; i++)
                json_array_append_new(jv, s->lists[1][i].is_int
                                              ? json_integer(s->lists[1][i].i)
                                              : json_real(s->lists[1][i].v));
            char *tb = jb ? clopt__json_dump(jb) : NULL, *tv = jv ? clopt__json_dump(jv) : NULL;
            clopt_status st = clopt__fail(
                ctx, CLOPT_ERR_BAD_VALUE,
                "%s config: 'boundaries', 'values': The length of boundaries should be 1 less "
                "than the length of values. Received: boundaries=%s of length %zu, and values=%s "
                "of length %zu.",
                c->class_name, tb ? tb : "[...]", nb, tv ? tv : "[...]", nv);
            free(tb);
            free(tv);
            json_decref(jb);
            json_decref(jv);
            return st;
        }
        /* Keras accepts ([], [v]) in the constructor but fails on the first call (it reads
         * boundaries[0]), so such a schedule can never produce a learning rate. */
        if (nb == 0)
            return clopt__fail(ctx, CLOPT_ERR_BAD_VALUE,
                               "%s config: 'boundaries' must not be empty (Keras fails with an "
                               "IndexError when such a schedule is called)",
                               c->class_name);
        return CLOPT_OK;
    }
    /* Every other class has its step count at index 1. */
    const num *d = &s->num[1];
    const char *key = c->keys[1].key;
    if (d->v <= 0) {
        num_repr(d, a, sizeof a);
        return clopt__fail(ctx, CLOPT_ERR_BAD_VALUE,
                           "%s config: '%s': Argument `%s` must be > 0. Received: %s=%s",
                           c->class_name, key, key, key, a);
    }
    return CLOPT_OK;
}

clopt_status clopt__schedule_from_json(clopt_context *ctx, const json_t *obj,
                                       clopt__schedule **out) {
    if (!out || !obj)
        return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT, "learning-rate schedule: NULL argument");
    *out = NULL;
    if (!json_is_object(obj))
        return clopt__fail(ctx, CLOPT_ERR_BAD_TYPE,
                           "learning-rate schedule must be an object, got %s", clopt__json_type_name(obj));
    const json_t *jcls = json_object_get(obj, "class_name");
    if (!jcls)
        return clopt__fail(ctx, CLOPT_ERR_BAD_TYPE,
                           "learning-rate schedule: missing key 'class_name'");
    if (!json_is_string(jcls))
        return clopt__fail(ctx, CLOPT_ERR_BAD_TYPE,
                           "learning-rate schedule: 'class_name' must be a string, got %s",
                           clopt__json_type_name(jcls));
    const char *name = json_string_value(jcls);
    const class_spec *c = NULL;
    for (size_t i = 0; i < NCLASSES && !c; i++)
        if (strcmp(classes[i].class_name, name) == 0) c = &classes[i];
    for (size_t i = 0; i < NCLASSES && !c; i++)
        if (strcasecmp(classes[i].class_name, name) == 0) c = &classes[i];
    if (!c)
        return clopt__fail(ctx, CLOPT_ERR_UNKNOWN_SCHEDULE,
                           "unknown learning-rate schedule class '%s' (expected one of "
                           "ExponentialDecay, PiecewiseConstantDecay, PolynomialDecay, "
                           "InverseTimeDecay, CosineDecay, CosineDecayRestarts)",
                           name);
    /* The serialize() wrapper's other keys: type-checked, values not interpreted (Keras resolves
     * built-in schedules by class name). Keys beyond these are ignored, as Keras ignores them. */
    const json_t *jmod = json_object_get(obj, "module");
    if (jmod && !json_is_string(jmod) && !json_is_null(jmod))
        return clopt__fail(ctx, CLOPT_ERR_BAD_TYPE,
                           "%s: 'module' must be a string or null, got %s", c->class_name,
                           clopt__json_type_name(jmod));
    const json_t *jreg = json_object_get(obj, "registered_name");
    if (jreg && !json_is_string(jreg) && !json_is_null(jreg))
        return clopt__fail(ctx, CLOPT_ERR_BAD_TYPE,
                           "%s: 'registered_name' must be a string or null, got %s",
                           c->class_name, clopt__json_type_name(jreg));
    const json_t *cfg = json_object_get(obj, "config");
    if (!cfg)
        return clopt__fail(ctx, CLOPT_ERR_BAD_TYPE, "%s: missing key 'config'", c->class_name);
    if (!json_is_object(cfg))
        return clopt__fail(ctx, CLOPT_ERR_BAD_TYPE, "%s: 'config' must be an object, got %s",
                           c->class_name, clopt__json_type_name(cfg));

    clopt__schedule *s = calloc(1, sizeof *s);
    if (!s) return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "out of host memory");
    s->cls = c;
    clopt_status st = CLOPT_OK;
    if (!(s->name = clopt__strdup(c->default_name)))
        st = clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "out of host memory");
    for (int k = 0; k < c->nkeys; k++) {
        const key_spec *ks = &c->keys[k];
        if (ks->type == T_NUMBER_OR_NULL)
            s->num[k] = (num){0, 0, 0, 1};
        else if (ks->def_int)
            s->num[k] = (num){ks->def, (int64_t)ks->def, 1, 0};
        else if (ks->type == T_BOOL)
            s->num[k] = (num){0, 0, 1, 0};
        else
            s->num[k] = (num){ks->def, 0, 0, 0};
    }
    int seen[MAX_KEYS] = {0};
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)cfg, key, v) {
        if (st != CLOPT_OK) break;
        int k = 0;
        while (k < c->nkeys && strcmp(c->keys[k].key, key) != 0) k++;
        if (k == c->nkeys) {
            st = clopt__fail(ctx, CLOPT_ERR_UNKNOWN_KEY, "%s config: unknown key '%s'",
                             c->class_name, key);
            break;
        }
        seen[k] = 1;
        st = parse_key(ctx, s, k, v);
    }
    for (int k = 0; st == CLOPT_OK && k < c->nkeys; k++)
        if (c->keys[k].required && !seen[k])
            st = clopt__fail(ctx, CLOPT_ERR_BAD_TYPE, "%s config: missing required key '%s'",
                             c->class_name, c->keys[k].key);
    if (st == CLOPT_OK) st = validate(ctx, s);
    if (st != CLOPT_OK) {
        clopt__schedule_free(s);
        return st;
    }
    *out = s;
    return CLOPT_OK;
}

/* ---- Evaluation (float32, see the top of the file) ---- */

/* A float boundary cast to the int64 step dtype: truncation toward zero, saturating where the C
 * cast would be undefined. */
static int64_t boundary_i64(const num *b) {
    if (b->is_int) return b->i;
    float f = (float)b->v; /* Keras first makes a float32 tensor of the Python float */
    if (f >= 9223372036854775807.0f) return INT64_MAX;
    if (f <= -9223372036854775808.0f) return INT64_MIN;
    return (int64_t)f;
}

/* PiecewiseConstantDecay: Keras's sum of indicator * value, in its order (first interval, last
 * interval, then the inner ones), so that even non-increasing boundaries give Keras's result. */
static float piecewise(const clopt__schedule *s, int64_t step) {
    const num *b = s->lists[0], *v = s->lists[1];
    size_t nb = s->nlist[0];
    float r = 0.0f, t;
    t = (float)(step <= boundary_i64(&b[0])) * f32(&v[0]);
    r = r + t;
    t = (float)(step > boundary_i64(&b[nb - 1])) * f32(&v[nb]);
    r = r + t;
    for (size_t i = 0; i + 1 < nb; i++) {
        int in = step > boundary_i64(&b[i]) && step <= boundary_i64(&b[i + 1]);
        t = (float)in * f32(&v[i + 1]);
        r = r + t;
    }
    return r;
}

/* CosineDecay's _decay_function: from * ((1 - alpha) * 0.5 * (1 + cos(pi * s / d)) + alpha), with
 * alpha a Python float (so 1 - alpha is computed in double, then rounded). */
static float cosine_decay(float s, float d, float from, double alpha) {
    float frac = s / d;
    float arg = PI_F * frac;
    float c = cosf(arg);
    c = 1.0f + c;
    c = 0.5f * c;
    float decayed = (float)(1.0 - alpha) * c;
    decayed = decayed + (float)alpha;
    return from * decayed;
}

static float evaluate(const clopt__schedule *s, int64_t step) {
    const num *n = s->num;
    float x = (float)step; /* ops.cast(step, float32) */
    switch (s->cls->kind) {
    case K_EXPONENTIAL: {
        float lr0 = f32(&n[EXP_LR0]), d = f32(&n[EXP_STEPS]), rate = f32(&n[EXP_RATE]);
        float p = x / d;
        if (n[EXP_STAIRCASE].v) p = floorf(p);
        return lr0 * powf(rate, p);
    }
    case K_INVERSE_TIME: {
        float lr0 = f32(&n[EXP_LR0]), d = f32(&n[EXP_STEPS]), rate = f32(&n[EXP_RATE]);
        float p = x / d;
        if (n[EXP_STAIRCASE].v) p = floorf(p);
        float denom = rate * p;
        denom = 1.0f + denom;
        return lr0 / denom;
    }
    case K_PIECEWISE: return piecewise(s, step);
    case K_POLYNOMIAL: {
        float lr0 = f32(&n[POLY_LR0]), end = f32(&n[POLY_END]), power = f32(&n[POLY_POWER]);
        float d = f32(&n[POLY_STEPS]);
        if (n[POLY_CYCLE].v) {
            /* The first multiple of decay_steps not below the step; 1 at step 0. */
            float mult = x == 0.0f ? 1.0f : ceilf(x / d);
            d = d * mult;
        } else if (!(x <= d)) {
            x = d; /* minimum(step, decay_steps) */
        }
        float p = x / d;
        float r = powf(1.0f - p, power);
        r = (lr0 - end) * r;
        return r + end;
    }
    case K_COSINE: {
        float lr0 = f32(&n[COS_LR0]), d = f32(&n[COS_STEPS]);
        double alpha = n[COS_ALPHA].v;
        if (n[COS_WARMUP_TARGET].null) {
            if (!(x <= d)) x = d;
            return cosine_decay(x, d, lr0, alpha);
        }
        float target = f32(&n[COS_WARMUP_TARGET]), w = f32(&n[COS_WARMUP_STEPS]);
        float last = d + w;
        if (!(x <= last)) x = last;
        if (x < w) {
            float frac = x / w;
            float delta = target - lr0;
            float r = delta * frac;
            return r + lr0;
        }
        return cosine_decay(x - w, d, target, alpha);
    }
    case K_COSINE_RESTARTS: {
        float lr0 = f32(&n[SGDR_LR0]), d = f32(&n[SGDR_STEPS]), alpha = f32(&n[SGDR_ALPHA]);
        float t_mul = f32(&n[SGDR_T_MUL]), m_mul = f32(&n[SGDR_M_MUL]);
        float frac = x / d, i;
        if (t_mul == 1.0f) {
            i = floorf(frac);
            frac = frac - i;
        } else {
            /* i = floor(log(1 - frac (1 - t_mul)) / log(t_mul)); frac is then the fraction of
             * period i, which lasts t_mul^i first periods and starts at (1 - t_mul^i)/(1 - t_mul). */
            float one_minus_t = 1.0f - t_mul;
            float arg = frac * one_minus_t;
            arg = 1.0f - arg;
            i = floorf(logf(arg) / logf(t_mul));
            float ti = powf(t_mul, i);
            float sum_r = (1.0f - ti) / one_minus_t;
            frac = (frac - sum_r) / ti;
        }
        float m_fac = powf(m_mul, i);
        float c = cosf(PI_F * frac);
        c = 1.0f + c;
        float cd = 0.5f * m_fac;
        cd = cd * c;
        float decayed = (1.0f - alpha) * cd;
        decayed = decayed + alpha;
        return lr0 * decayed;
    }
    }
    return 0.0f;
}

double clopt__schedule_value(const clopt__schedule *s, int64_t step) {
    return s ? (double)evaluate(s, step) : 0.0;
}

/* ---- Serialization ---- */

static json_t *num_json(const num *n) {
    if (n->null) return json_null();
    return n->is_int ? json_integer((json_int_t)n->i) : json_real(n->v);
}

static json_t *list_json(const num *l, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, num_json(&l[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

json_t *clopt__schedule_to_json(const clopt__schedule *s) {
    if (!s) return NULL;
    const class_spec *c = s->cls;
    json_t *cfg = json_object();
    if (!cfg) return NULL;
    int bad = 0;
    for (int k = 0; k < c->nkeys && !bad; k++) {
        const key_spec *ks = &c->keys[k];
        json_t *v;
        switch (ks->type) {
        case T_BOOL: v = json_boolean(s->num[k].v != 0); break;
        case T_NAME: v = s->name ? json_string(s->name) : json_null(); break;
        case T_LIST:
            v = k == PCD_BOUNDARIES ? list_json(s->lists[0], s->nlist[0])
                                    : list_json(s->lists[1], s->nlist[1]);
            break;
        default: v = num_json(&s->num[k]); break;
        }
        bad = json_object_set_new(cfg, ks->key, v) != 0;
    }
    json_t *o = bad ? NULL : json_object();
    if (!o) {
        json_decref(cfg);
        return NULL;
    }
    /* json_object_set_new consumes the value even when it fails. */
    if (json_object_set_new(o, "module", json_string(SCHED_MODULE)) ||
        json_object_set_new(o, "class_name", json_string(c->class_name)) ||
        json_object_set_new(o, "config", cfg) ||
        json_object_set_new(o, "registered_name", json_null())) {
        if (!json_object_get(o, "config")) json_decref(cfg);
        json_decref(o);
        return NULL;
    }
    return o;
}

const char *clopt__schedule_class_name(const clopt__schedule *s) {
    return s ? s->cls->class_name : NULL;
}

void clopt__schedule_free(clopt__schedule *s) {
    if (!s) return;
    free(s->name);
    free(s->lists[0]);
    free(s->lists[1]);
    free(s);
}
