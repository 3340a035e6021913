/* float16 and bfloat16 variables: conversions, assign ops and training.
 *
 * Reference conversions are written here independently of src/core/dtype.c: decoding by ldexp,
 * encoding by scaling to the format's quantum and rint (ties to even), from the exact double.
 *
 * - Every bit pattern decodes (clopt_optimizer_variable_read of an add_variable'd 16-bit
 *   variable) to its exact value, infinities and NaN included, and every finite value written
 *   back (clopt_optimizer_variable_write) gives its own pattern.
 * - Rounding of doubles: each midpoint between neighbouring values rounds to the even one, and
 *   the doubles just below and above it to the nearer one (no double rounding through float32);
 *   overflow gives infinity, underflow a signed zero; a few well-known patterns are checked by
 *   value (0.1 is 0x2e66 in float16, 0x3dcd in bfloat16).
 * - assign copies every pattern (NaN stays NaN); assign_add / assign_sub round the exact sum
 *   to nearest even, on the host and on OpenCL.
 * - Training: minimize sum 0.5 * (w - target)^2 over 64 elements with SGD (momentum) and Adam for
 *   50 steps, gradients computed on the host from the variable's current value and written each
 *   step, in float32, float16 and bfloat16, on the host and on OpenCL. See the tolerances by
 *   train_check. */
#include <fenv.h>
#include "optim_state.h"

/* ---- the formats ---- */

typedef struct fmt {
    clopt_dtype dtype;
    int mbits, bias; /* mantissa bits, exponent bias; exponent field 5 or 8 bits */
    uint16_t inf;    /* +infinity's pattern */
} fmt;

static const fmt F16 = {CLOPT_FLOAT16, 10, 15, 0x7c00};
static const fmt BF16 = {CLOPT_BFLOAT16, 7, 127, 0x7f80};

static int is_nan(const fmt *f, uint16_t p) { return (p & 0x7fff) > f->inf; }

static double dec(const fmt *f, uint16_t p) {
    const int sign = p >> 15, e = (p & 0x7fff) >> f->mbits, m = p & ((1 << f->mbits) - 1);
    double x;
    if ((p & 0x7fff) >= f->inf) x = m ? NAN : INFINITY;
    else if (e == 0) x = ldexp(m, 1 - f->bias - f->mbits);
    else x = ldexp(m + (1 << f->mbits), e - f->bias - f->mbits);
    return sign ? -x : x;
}

/* Round to nearest even from the exact double. */
static uint16_t enc(const fmt *f, double x) {
    if (isnan(x)) return (uint16_t)(f->inf | (1u << (f->mbits - 1)));
    const uint16_t sign = signbit(x) ? 0x8000 : 0;
    const double ax = fabs(x);
    if (isinf(ax)) return sign | f->inf;
    if (ax == 0) return sign;
    int k;
    frexp(ax, &k); /* ax = m * 2^k, m in [0.5, 1) */
    int biased = k - 1 + f->bias;
    const int sub = biased < 1;
    const double q = ldexp(1.0, (sub ? 1 - f->bias : k - 1) - f->mbits);
    cr_assert(fegetround() == FE_TONEAREST);
    const double r = rint(ax / q); /* ties to even */
    uint32_t bits = sub ? (uint32_t)r : ((uint32_t)biased << f->mbits) + ((uint32_t)r - (1u << f->mbits));
    if (bits >= f->inf) bits = f->inf;
    return (uint16_t)(sign | bits);
}

/* ---- a 16-bit optimizer variable to convert through ---- */

typedef struct conv {
    clopt_context *ctx;
    clopt_optimizer *o;
    clopt_variable *v;
    size_t index, n;
} conv;

static void conv_open(conv *c, const char *dev, const fmt *f, size_t n) {
    c->ctx = tu_context(dev);
    c->o = tu_optimizer(c->ctx, "{\"class_name\": \"SGD\"}");
    const int64_t shape = (int64_t)n;
    TU_OK(c->ctx, clopt_optimizer_add_variable(c->o, "x", f->dtype, 1, &shape, 0.0, &c->v));
    c->index = clopt_optimizer_variable_count(c->o) - 1;
    c->n = n;
}

/* doubles -> patterns through clopt_optimizer_variable_write. */
static void conv_encode(conv *c, const double *x, uint16_t *bits) {
    TU_OK(c->ctx, clopt_optimizer_variable_write(c->o, c->index, x, c->n));
    TU_OK(c->ctx, clopt_variable_read(c->v, bits, c->n * 2));
}

/* patterns -> doubles through clopt_optimizer_variable_read. */
static void conv_decode(conv *c, const uint16_t *bits, double *x) {
    TU_OK(c->ctx, clopt_variable_write(c->v, bits, c->n * 2));
    TU_OK(c->ctx, clopt_optimizer_variable_read(c->o, c->index, x, c->n));
}

/* ---- every pattern ---- */

static void all_patterns(const fmt *f) {
    conv c;
    conv_open(&c, TU_HOST, f, 65536);
    uint16_t *bits = malloc(65536 * 2), *back = malloc(65536 * 2);
    double *x = malloc(65536 * sizeof *x);
    cr_assert(bits && back && x);
    for (uint32_t p = 0; p < 65536; p++) bits[p] = (uint16_t)p;
    /* Raw bytes go in and come out as they are. */
    TU_OK(c.ctx, clopt_variable_write(c.v, bits, 65536 * 2));
    TU_OK(c.ctx, clopt_variable_read(c.v, back, 65536 * 2));
    tu_assert_same_bytes(back, bits, 65536 * 2, "raw round trip");
    conv_decode(&c, bits, x);
    for (uint32_t p = 0; p < 65536; p++) {
        const double want = dec(f, (uint16_t)p);
        if (is_nan(f, (uint16_t)p)) {
            cr_assert(isnan(x[p]), "%s 0x%04x decodes to %g, want NaN", clopt_dtype_name(f->dtype),
                      p, x[p]);
            continue;
        }
        cr_assert(memcmp(&x[p], &want, sizeof want) == 0, "%s 0x%04x decodes to %.17g, want %.17g",
                  clopt_dtype_name(f->dtype), p, x[p], want);
    }
    conv_encode(&c, x, back);
    for (uint32_t p = 0; p < 65536; p++) {
        if (is_nan(f, (uint16_t)p))
            cr_assert(is_nan(f, back[p]), "%s NaN 0x%04x encodes to 0x%04x",
                      clopt_dtype_name(f->dtype), p, back[p]);
        else
            cr_assert_eq(back[p], p, "%s: %.17g encodes to 0x%04x, want 0x%04x",
                         clopt_dtype_name(f->dtype), x[p], back[p], p);
    }
    free(bits);
    free(back);
    free(x);
    clopt_context_destroy(c.ctx);
}
Test(dtypes_host, float16_every_pattern) { all_patterns(&F16); }
Test(dtypes_host, bfloat16_every_pattern) { all_patterns(&BF16); }

/* Each midpoint between neighbours p and p + 1 (p from 0 to the largest finite value, whose
 * neighbour is infinity), both signs: the midpoint goes to the even pattern, the doubles just
 * below and above it to the nearer one. */
static void midpoints(const fmt *f) {
    const size_t npos = f->inf; /* patterns 0 .. inf - 1 */
    const size_t n = npos * 6;
    conv c;
    conv_open(&c, TU_HOST, f, n);
    double *x = malloc(n * sizeof *x);
    uint16_t *want = malloc(n * 2), *got = malloc(n * 2);
    cr_assert(x && want && got);
    size_t k = 0;
    for (uint16_t p = 0; p < f->inf; p++) {
        const uint16_t q = (uint16_t)(p + 1);
        const double a = dec(f, p), b = q == f->inf ? ldexp(1.0, f->inf >> f->mbits) *
                                                          ldexp(1.0, -f->bias)
                                                    : dec(f, q);
        const double m = a + (b - a) / 2; /* exact: a and b have few significant bits */
        for (int s = 0; s < 2; s++) {
            const uint16_t sg = s ? 0x8000 : 0;
            const double sx = s ? -1.0 : 1.0;
            x[k] = sx * m;
            want[k++] = sg | ((p & 1) ? q : p);
            x[k] = sx * nextafter(m, 0.0);
            want[k++] = sg | p;
            x[k] = sx * nextafter(m, INFINITY);
            want[k++] = sg | q;
        }
    }
    cr_assert_eq(k, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(enc(f, x[i]), want[i], "reference encoder: %.17g", x[i]);
    conv_encode(&c, x, got);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(got[i], want[i], "%s: %.17g (a %s) rounds to 0x%04x, want 0x%04x",
                     clopt_dtype_name(f->dtype), x[i],
                     i % 3 == 0 ? "midpoint" : i % 3 == 1 ? "double below a midpoint"
                                                          : "double above a midpoint",
                     got[i], want[i]);
    free(x);
    free(want);
    free(got);
    clopt_context_destroy(c.ctx);
}
Test(dtypes_host, float16_rounds_to_nearest_even) { midpoints(&F16); }
Test(dtypes_host, bfloat16_rounds_to_nearest_even) { midpoints(&BF16); }

/* Well-known values, overflow, underflow and the special values, by pattern; also through
 * add_variable's fill, on the host and on OpenCL. */
typedef struct known {
    double x;
    uint16_t h, b; /* float16, bfloat16 */
} known;
static const known KNOWN[] = {
    {1.0, 0x3c00, 0x3f80},
    {-2.0, 0xc000, 0xc000},
    {0.1, 0x2e66, 0x3dcd},
    {1.0 / 3.0, 0x3555, 0x3eab},
    {0.5, 0x3800, 0x3f00},
    {65504.0, 0x7bff, 0x4780},                 /* bfloat16: 65536 */
    {65519.99, 0x7bff, 0x4780},
    {65520.0, 0x7c00, 0x4780},                 /* float16: the tie above the maximum overflows */
    {1e10, 0x7c00, 0x5015},
    {3.3962e38, 0x7c00, 0x7f80},               /* bfloat16: past the tie above its maximum */
    {3.3961e38, 0x7c00, 0x7f7f},               /* just below that tie: the maximum */
    {3.38e38, 0x7c00, 0x7f7e},
    {-1e39, 0xfc00, 0xff80},
    {0x1p-24, 0x0001, 0x3380},                 /* float16's smallest subnormal */
    {0x1p-25, 0x0000, 0x3300},                 /* a tie: to even, zero */
    {0x1.0000001p-25, 0x0001, 0x3300},
    {-0x1p-26, 0x8000, 0xb280},                /* a negative underflow keeps its sign */
    {0x1p-133, 0x0000, 0x0001},                /* bfloat16's smallest subnormal */
    {0x1p-134, 0x0000, 0x0000},
    {0x1.00001p-134, 0x0000, 0x0001},
    {1.0 + 0x1p-11, 0x3c00, 0x3f80},           /* float16 tie to even */
    {1.0 + 0x1p-11 + 0x1p-40, 0x3c01, 0x3f80}, /* just above it: no rounding through float32 */
    {1.0 + 3 * 0x1p-11, 0x3c02, 0x3f80},
    {1.0 + 0x1p-8, 0x3c04, 0x3f80},            /* bfloat16 tie to even */
    {1.0 + 0x1p-8 + 0x1p-40, 0x3c04, 0x3f81},
    {1.0 + 3 * 0x1p-8, 0x3c0c, 0x3f82},
    {-0.0, 0x8000, 0x8000},
    {INFINITY, 0x7c00, 0x7f80},
    {-INFINITY, 0xfc00, 0xff80},
};
#define NKNOWN (sizeof KNOWN / sizeof *KNOWN)

Test(dtypes_host, known_values) {
    double x[NKNOWN + 1];
    for (size_t i = 0; i < NKNOWN; i++) x[i] = KNOWN[i].x;
    x[NKNOWN] = NAN;
    const fmt *fs[2] = {&F16, &BF16};
    for (int k = 0; k < 2; k++) {
        conv c;
        conv_open(&c, TU_HOST, fs[k], NKNOWN + 1);
        uint16_t got[NKNOWN + 1];
        conv_encode(&c, x, got);
        for (size_t i = 0; i < NKNOWN; i++) {
            const uint16_t want = k ? KNOWN[i].b : KNOWN[i].h;
            cr_assert_eq(enc(fs[k], x[i]), want, "reference %s of %.17g",
                         clopt_dtype_name(fs[k]->dtype), x[i]);
            cr_assert_eq(got[i], want, "%s of %.17g: 0x%04x, want 0x%04x",
                         clopt_dtype_name(fs[k]->dtype), x[i], got[i], want);
        }
        cr_assert(is_nan(fs[k], got[NKNOWN]), "NaN gives 0x%04x", got[NKNOWN]);
        clopt_context_destroy(c.ctx);
    }
}

/* add_variable's initial value goes through the same rounding, on both backends. */
static void fill_values(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    clopt_optimizer *o = tu_optimizer(ctx, "{\"class_name\": \"SGD\"}");
    const int64_t n = 300;
    const fmt *fs[2] = {&F16, &BF16};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < NKNOWN; i++) {
            if (!isfinite(KNOWN[i].x) || KNOWN[i].x == 0) continue; /* add_variable: finite */
            clopt_variable *v;
            char name[32]; /* optimizer variable names are unique (Keras paths) */
            snprintf(name, sizeof name, "filled_%d_%zu", k, i);
            TU_OK(ctx, clopt_optimizer_add_variable(o, name, fs[k]->dtype, 1, &n, KNOWN[i].x, &v));
            uint16_t got[300];
            TU_OK(ctx, clopt_variable_read(v, got, sizeof got));
            const uint16_t want = k ? KNOWN[i].b : KNOWN[i].h;
            for (int j = 0; j < 300; j++)
                cr_assert_eq(got[j], want, "%s %s fill of %.17g: [%d] = 0x%04x, want 0x%04x", dev,
                             clopt_dtype_name(fs[k]->dtype), KNOWN[i].x, j, got[j], want);
        }
    clopt_context_destroy(ctx);
}
Test(dtypes_host, fill_rounds_to_nearest_even) { fill_values(TU_HOST); }
Test(dtypes_pocl, fill_rounds_to_nearest_even) { fill_values(TU_POCL); }

/* ---- assign ops ---- */

/* assign copies every pattern (a NaN may come back as another NaN); assign_add and assign_sub
 * round the exact sum and difference to nearest even. Operands: every pair class that matters,
 * random patterns with nearby exponents, plus crafted ties and overflows. */
static void assign_ops(const char *dev, const fmt *f) {
    clopt_context *ctx = tu_context(dev);
    enum { N = 65536 };
    const int64_t n = N;
    uint16_t *a = malloc(N * 2), *b = malloc(N * 2), *got = malloc(N * 2);
    cr_assert(a && b && got);
    uint64_t rng = 99;
    const int ebits = f->mbits == 10 ? 5 : 8, emax = (1 << ebits) - 2;
    for (size_t i = 0; i < N; i++) {
        uint16_t p;
        do p = (uint16_t)tu_rand_u64(&rng);
        while ((p & 0x7fff) >= f->inf);
        a[i] = p;
        const int ea = (p & 0x7fff) >> f->mbits;
        int eb = ea + (int)(tu_rand_u64(&rng) % 25) - 12;
        eb = eb < 0 ? 0 : eb > emax ? emax : eb;
        b[i] = (uint16_t)((tu_rand_u64(&rng) & 0x8000) | ((unsigned)eb << f->mbits) |
                          (tu_rand_u64(&rng) & ((1u << f->mbits) - 1)));
    }
    /* Crafted: 1 + half an ulp (tie, to even), 1 + ulp + half an ulp (tie, up), the maximum plus
     * itself (overflow), x - x (+0), -0 + -0 (-0). */
    const uint16_t one = enc(f, 1.0), half_ulp = enc(f, ldexp(1.0, -f->mbits - 1));
    const uint16_t maxf = (uint16_t)(f->inf - 1);
    const uint16_t crafted[][2] = {{one, half_ulp},           {(uint16_t)(one + 1), half_ulp},
                                   {maxf, maxf},               {one, one},
                                   {0x8000, 0x8000},           {(uint16_t)(one | 0x8000), one},
                                   {maxf, enc(f, ldexp(dec(f, maxf), -f->mbits - 1))}};
    for (size_t i = 0; i < sizeof crafted / sizeof *crafted; i++) {
        a[i] = crafted[i][0];
        b[i] = crafted[i][1];
    }
    clopt_variable *vb = tu_var(ctx, "b", f->dtype, 1, &n, b);
    clopt_variable *vd = tu_var(ctx, "d", f->dtype, 1, &n, NULL);
    const char *dn = clopt_dtype_name(f->dtype);
    for (int op = 0; op < 3; op++) {
        TU_OK(ctx, clopt_variable_write(vd, a, N * 2));
        if (op == 0) TU_OK(ctx, clopt_variable_assign(vd, vb));
        if (op == 1) TU_OK(ctx, clopt_variable_assign_add(vd, vb));
        if (op == 2) TU_OK(ctx, clopt_variable_assign_sub(vd, vb));
        TU_OK(ctx, clopt_variable_read(vd, got, N * 2));
        for (size_t i = 0; i < N; i++) {
            const double x = dec(f, a[i]), y = dec(f, b[i]);
            const uint16_t want = op == 0 ? b[i] : enc(f, op == 1 ? x + y : x - y);
            cr_assert_eq(got[i], want, "%s %s %s: 0x%04x (%.9g) %s 0x%04x (%.9g) = 0x%04x, "
                         "want 0x%04x",
                         dev, dn, op == 0 ? "assign" : op == 1 ? "assign_add" : "assign_sub",
                         a[i], x, op == 0 ? ":=" : op == 1 ? "+" : "-", b[i], y, got[i], want);
        }
    }
    /* assign of every pattern, NaNs and infinities included. */
    for (uint32_t p = 0; p < N; p++) b[p] = (uint16_t)p;
    TU_OK(ctx, clopt_variable_write(vb, b, N * 2));
    TU_OK(ctx, clopt_variable_assign(vd, vb));
    TU_OK(ctx, clopt_variable_read(vd, got, N * 2));
    for (uint32_t p = 0; p < N; p++) {
        if (is_nan(f, (uint16_t)p)) cr_assert(is_nan(f, got[p]), "%s %s assign of NaN 0x%04x", dev,
                                              dn, p);
        else cr_assert_eq(got[p], p, "%s %s assign of 0x%04x gave 0x%04x", dev, dn, p, got[p]);
    }
    free(a);
    free(b);
    free(got);
    clopt_context_destroy(ctx);
}
Test(dtypes_host, float16_assign_ops) { assign_ops(TU_HOST, &F16); }
Test(dtypes_pocl, float16_assign_ops) { assign_ops(TU_POCL, &F16); }
Test(dtypes_host, bfloat16_assign_ops) { assign_ops(TU_HOST, &BF16); }
Test(dtypes_pocl, bfloat16_assign_ops) { assign_ops(TU_POCL, &BF16); }

/* ---- training ----
 *
 * minimize sum 0.5 * (w - target)^2 over 64 elements: the gradient w - target is computed on the
 * host in double from the variable's current value and written (rounded to the dtype) before
 * each of 50 steps. Targets k/64 in [-1, 1] and starts j/32 in [-2, 2] are exact in every dtype,
 * so the float32, float16 and bfloat16 runs solve the same problem.
 *
 * Checks, with u the format's unit roundoff (2^-24 float32, 2^-11 float16, 2^-8 bfloat16):
 * - convergence: SGD with momentum (lr 0.1, momentum 0.5, a contraction by sqrt(0.5) per step)
 *   reaches the target to the format's precision: final loss <= 64 * 0.5 * (4u)^2 (every
 *   element within about 4u of its target); Adam (lr 0.1), which ends up oscillating around the
 *   target with steps of the order of lr, brings the loss down a hundredfold (60.8 to 0.19).
 * - 16-bit against float32, both on the same backend: after every step,
 *   |w16 - w32| <= 16 u max(1, |w32|). Every step rounds w and each slot once to the format, a
 *   relative error of u each; the iteration contracts, so the errors do not add up over the 50
 *   steps: about 5u is what the runs show (Adam in float16), and 16u leaves a margin of 3 while
 *   staying far below a wrong update (a wrong beta or learning rate moves w by 1e-2 or more).
 * - host against OpenCL in the 16-bit formats: the weights and every slot within one unit in
 *   the last place of the format after every step (both compute in float32 and round once to
 *   the format, so they differ only when float32 round-off straddles a rounding boundary); in
 *   float32, test_util.h's tolerances. */

#define TN 64
#define TSTEPS 50
#define TSLOTS 2

static const fmt *fmt_of(clopt_dtype d) { return d == CLOPT_FLOAT16 ? &F16 : &BF16; }

static double unit_roundoff(clopt_dtype d) {
    return d == CLOPT_FLOAT32 ? 0x1p-24 : ldexp(1.0, -fmt_of(d)->mbits - 1);
}

/* A variable's values as doubles, and its raw 16-bit patterns (16-bit dtypes). */
static void read_any(clopt_variable *v, double *x, uint16_t *bits) {
    const clopt_dtype d = clopt_variable_dtype(v);
    if (d == CLOPT_FLOAT32 || d == CLOPT_FLOAT64) {
        double *r = tu_read_f64(v);
        memcpy(x, r, TN * sizeof *x);
        free(r);
        return;
    }
    TU_OK(clopt_variable_context(v), clopt_variable_read(v, bits, TN * 2));
    for (int i = 0; i < TN; i++) x[i] = dec(fmt_of(d), bits[i]);
}

static void write_any(clopt_variable *v, const double *x) {
    const clopt_dtype d = clopt_variable_dtype(v);
    if (d == CLOPT_FLOAT32 || d == CLOPT_FLOAT64) {
        tu_write_f64(v, x);
        return;
    }
    uint16_t bits[TN];
    for (int i = 0; i < TN; i++) bits[i] = enc(fmt_of(d), x[i]);
    TU_OK(clopt_variable_context(v), clopt_variable_write(v, bits, sizeof bits));
}

/* The problem: target k/64 in [-1, 1], start j/32 in [-2, 2]. */
static void problem(double *target, double *w0) {
    uint64_t rng = 2024;
    for (int i = 0; i < TN; i++) {
        target[i] = (double)((int)(tu_rand_u64(&rng) % 129) - 64) / 64.0;
        w0[i] = (double)((int)(tu_rand_u64(&rng) % 129) - 64) / 32.0;
    }
}

/* A run: after each step, the weights and each slot (the optimizer's device variables in
 * Keras's order), as values and as 16-bit patterns. */
typedef struct run {
    int nslots;
    double x[TSTEPS][1 + TSLOTS][TN];
    uint16_t bits[TSTEPS][1 + TSLOTS][TN];
} run;

static void train(run *r, const char *dev, clopt_dtype dt, const char *json) {
    clopt_context *ctx = tu_context(dev);
    double target[TN], w0[TN], w[TN], g[TN];
    uint16_t scratch[TN];
    problem(target, w0);
    const int64_t n = TN;
    clopt_variable *v = tu_var(ctx, "w", dt, 1, &n, NULL), *gv = tu_var(ctx, "g", dt, 1, &n, NULL);
    write_any(v, w0);
    clopt_optimizer *o = tu_optimizer(ctx, json);
    TU_OK(ctx, clopt_optimizer_build(o, &v, 1));
    clopt_variable *slots[TSLOTS];
    r->nslots = 0;
    for (size_t i = 0; i < clopt_optimizer_variable_count(o); i++) {
        clopt_variable *s = NULL;
        TU_OK(ctx, clopt_optimizer_variable(o, i, NULL, NULL, &s));
        if (!s) continue;
        cr_assert_lt(r->nslots, TSLOTS);
        slots[r->nslots++] = s;
    }
    for (int step = 0; step < TSTEPS; step++) {
        read_any(v, w, scratch);
        for (int i = 0; i < TN; i++) g[i] = w[i] - target[i];
        write_any(gv, g);
        TU_OK(ctx, clopt_optimizer_apply(o, &gv, &v, 1));
        read_any(v, r->x[step][0], r->bits[step][0]);
        for (int k = 0; k < r->nslots; k++)
            read_any(slots[k], r->x[step][1 + k], r->bits[step][1 + k]);
    }
    clopt_context_destroy(ctx);
}

static double loss_of(const double *w) {
    double target[TN], w0[TN], l = 0;
    problem(target, w0);
    for (int i = 0; i < TN; i++) l += 0.5 * (w[i] - target[i]) * (w[i] - target[i]);
    return l;
}

/* Distance in units in the last place between two patterns of a 16-bit format (through zero:
 * -0 and +0 are 0 apart). */
static long ulps(uint16_t a, uint16_t b) {
    const long ia = (a & 0x8000) ? -(long)(a & 0x7fff) : (long)a;
    const long ib = (b & 0x8000) ? -(long)(b & 0x7fff) : (long)b;
    return labs(ia - ib);
}

#define SGD_MOMENTUM                                                                             \
    "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.1, \"momentum\": 0.5}}"
#define ADAM "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": 0.1}}"

static void check_converged(const run *r, clopt_dtype dt, int adam, const char *what) {
    double target[TN], w0[TN];
    problem(target, w0);
    const double loss0 = loss_of(w0), loss = loss_of(r->x[TSTEPS - 1][0]);
    const double u = unit_roundoff(dt);
    const double bound = adam ? loss0 / 100 : TN * 0.5 * (4 * u) * (4 * u);
    cr_assert(loss <= bound, "%s: final loss %g (from %g), want <= %g", what, loss, loss0, bound);
}

/* With pocl 0 the OpenCL side is skipped (the host half runs where no device exists). */
static void train_check(const char *json, int adam, int pocl) {
    static run h32, c32, h16, c16;
    char what[192];
    train(&h32, TU_HOST, CLOPT_FLOAT32, json);
    if (pocl) train(&c32, TU_POCL, CLOPT_FLOAT32, json);
    else c32 = h32;
    snprintf(what, sizeof what, "%s float32 host", json);
    check_converged(&h32, CLOPT_FLOAT32, adam, what);
    snprintf(what, sizeof what, "%s float32 pocl", json);
    check_converged(&c32, CLOPT_FLOAT32, adam, what);
    for (int s = 0; s < TSTEPS; s++)
        for (int k = 0; k <= h32.nslots; k++) {
            snprintf(what, sizeof what, "%s float32, step %d, %s", json, s,
                     k ? "slot" : "weights");
            tu_assert_close(c32.x[s][k], h32.x[s][k], TN, TU_RTOL_F32, TU_ATOL_F32, what);
        }
    const clopt_dtype dts[2] = {CLOPT_FLOAT16, CLOPT_BFLOAT16};
    for (int d = 0; d < 2; d++) {
        const clopt_dtype dt = dts[d];
        const char *dn = clopt_dtype_name(dt);
        const double u = unit_roundoff(dt);
        train(&h16, TU_HOST, dt, json);
        if (pocl) train(&c16, TU_POCL, dt, json);
        else c16 = h16;
        cr_assert_eq(h16.nslots, h32.nslots);
        snprintf(what, sizeof what, "%s %s host", json, dn);
        check_converged(&h16, dt, adam, what);
        snprintf(what, sizeof what, "%s %s pocl", json, dn);
        check_converged(&c16, dt, adam, what);
        double worst = 0;
        for (int s = 0; s < TSTEPS; s++)
            for (int i = 0; i < TN; i++) {
                const run *r16[2] = {&h16, &c16}, *r32[2] = {&h32, &c32};
                for (int b = 0; b < 2; b++) {
                    const double w16 = r16[b]->x[s][0][i], w32 = r32[b]->x[s][0][i];
                    const double dev = fabs(w16 - w32) / fmax(1.0, fabs(w32));
                    if (dev > worst) worst = dev;
                    cr_assert(dev <= 16 * u, "%s %s %s, step %d, w[%d]: %.9g, float32 %.9g: %.3g "
                              "u apart (max 16)", json, dn, b ? "pocl" : "host", s, i, w16, w32,
                              dev / u);
                }
                for (int k = 0; k <= h16.nslots; k++)
                    cr_assert(ulps(h16.bits[s][k][i], c16.bits[s][k][i]) <= 1,
                              "%s %s, step %d, %s[%d]: host 0x%04x (%.9g), pocl 0x%04x (%.9g)",
                              json, dn, s, k ? "slot" : "w", i, h16.bits[s][k][i],
                              h16.x[s][k][i], c16.bits[s][k][i], c16.x[s][k][i]);
            }
        cr_log_info("%s %s: worst deviation from float32 %.2f u", json, dn, worst / u);
    }
}
Test(dtypes_host, train_sgd_momentum) { train_check(SGD_MOMENTUM, 0, 0); }
Test(dtypes_host, train_adam) { train_check(ADAM, 1, 0); }
Test(dtypes_pocl, train_sgd_momentum) { train_check(SGD_MOMENTUM, 0, 1); }
Test(dtypes_pocl, train_adam) { train_check(ADAM, 1, 1); }
