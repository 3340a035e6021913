/* Muon (keras.optimizers.Muon). Kernels: cl/muon.cl; matrix products: the backend's gemm
 * (CLBlast on OpenCL, a plain loop on the host).
 *
 * Each built variable takes one of two paths, decided at build (Keras's _should_use_adamw; the
 * clopt variable name plays the part of Keras's variable path):
 * - the AdamW path when its rank is not 2, or exclude_embeddings is set and its lower-cased name
 *   contains "embedding", or an exclude_layers pattern matches its name (regexec with POSIX
 *   extended syntax: Keras's re.search takes Python syntax, which agrees for plain words,
 *   alternations and anchors but not for Python-only escapes such as \d);
 * - the Muon path otherwise (2-D).
 * AdamW path: Adam without amsgrad with adam_beta_1, adam_beta_2, epsilon and the learning rate
 * lr*adam_lr_ratio. Muon path: m := m + (g + m*(momentum-1)); G = g + momentum*m (nesterov) or
 * m; U = NS5(G, ns_steps); w := w - lr_adjust(lr*U), lr_adjust(x) = x*sqrt(max(rows, cols))*
 * rms_rate (x when rms_rate is null).
 *
 * Slots (Keras's order): "momentum" for every variable, then "velocity" right after it for
 * AdamW-path variables only. Storage is the same for every variable (two kinds at the slot
 * block's stride); a Muon-path variable's velocity storage has no Keras entry and holds G during
 * a step.
 *
 * Weight decay is Muon's own (Keras overrides _apply_weight_decay): w := w - w*wd*lr before the
 * step, with the full learning rate, wd = adam_weight_decay on the AdamW path and weight_decay on
 * the Muon path (skipped where that one is null, or the variable is excluded from weight decay).
 * Each variable's wd is its segment's decay multiplier (decay_rate) and the pipeline's q3 is the
 * learning rate, so WEIGHT() computes (w*wd)*lr as Keras does.
 *
 * A step, per plan launch (dtype, variable block, gradient block):
 * 1. muon.stats over every chunk of the launch: reads each gradient once (GRAD()); the AdamW path
 *    is complete after it; on the Muon path it updates m, stores G in the velocity storage and
 *    writes per-chunk sums of G^2;
 * 2. the segment pass muon.norm: ||G||_F of every variable, on the device (no host round trip);
 *    (left out when the launch holds no Muon-path variable)
 * 3. for EACH Muon-path variable of the launch, in list order:
 *    - muon.load over its chunks: X = G/(||G||_F + 1e-7) into a scratch matrix;
 *    - one fill of the scratch A (so that a product with beta 0 never sees a previous variable's
 *      non-finite values);
 *    - ns_steps iterations of five launches: gemm A = X X^T, copy B := A, gemm B = c*A*A + b*B,
 *      copy Y := X, gemm X = B*Y + a*X (rows > cols: the same with X stored transposed, through
 *      the products' transpose flags, so no transpose pass is needed);
 *    - muon.apply over its chunks: w := WEIGHT() - ((lr*X)*sqrt(max(rows, cols)))*rms_rate.
 * So a step takes 1 (+1 with Muon-path variables) launches per plan launch plus 3 + 5*ns_steps
 * per Muon-path variable (28 with the default ns_steps=5; CLBlast's gemm may itself enqueue
 * several kernels per product for larger matrices: padding/transposition passes). Unlike every
 * other clopt optimizer this is NOT constant in the number of variables: the Newton-Schulz
 * products are per matrix, and CLBlast's batched gemm needs equal shapes. Nothing is allocated
 * per step: the scratch X, Y (the largest Muon-path variable) and A, B (min(rows, cols)^2 of the
 * largest) are made at build, per real dtype (float32 for float32/float16/bfloat16 variables,
 * float64 for float64). A float16/bfloat16 variable's G is stored in its own dtype (as Keras
 * computes in that dtype) and iterated in float32.
 *
 * On OpenCL without CLBlast (CLOPT_WITH_CLBLAST off or not found at build time), building a Muon
 * optimizer with a Muon-path variable fails with CLOPT_ERR_UNSUPPORTED (the products are warmed
 * at build); AdamW-path variables alone still work.
 *
 * Ranges beyond Keras (which checks nothing): adam_beta_1, adam_beta_2 and momentum in [0, 1],
 * epsilon, adam_lr_ratio and rms_rate >= 0, ns_steps an integer in [0, 1000] (not null),
 * exclude_layers a list of strings that are valid POSIX extended regular expressions. */
#include <math.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include "optim_internal.h"

enum {
    ADAM_BETA_1,
    ADAM_BETA_2,
    EPSILON,
    EXCLUDE_LAYERS,
    MUON_A,
    MUON_B,
    MUON_C,
    ADAM_LR_RATIO,
    MOMENTUM,
    NS_STEPS,
    NESTEROV,
    EXCLUDE_EMBEDDINGS,
    ADAM_WEIGHT_DECAY,
    RMS_RATE,
    NPARAMS
};

#define INF HUGE_VAL
static const clopt__param params[NPARAMS] = {
    [ADAM_BETA_1] = {"adam_beta_1", CLOPT__P_FLOAT, 0.9, 0, 0.0, 1.0, 0, 0},
    [ADAM_BETA_2] = {"adam_beta_2", CLOPT__P_FLOAT, 0.999, 0, 0.0, 1.0, 0, 0},
    [EPSILON] = {"epsilon", CLOPT__P_FLOAT, 1e-7, 0, 0.0, INF, 0, 0},
    [EXCLUDE_LAYERS] = {"exclude_layers", CLOPT__P_STRING_LIST, 0, 0, 0, 0, 0, 0},
    [MUON_A] = {"muon_a", CLOPT__P_FLOAT, 3.4445, 0, -INF, INF, 0, 0},
    [MUON_B] = {"muon_b", CLOPT__P_FLOAT, -4.7750, 0, -INF, INF, 0, 0},
    [MUON_C] = {"muon_c", CLOPT__P_FLOAT, 2.0315, 0, -INF, INF, 0, 0},
    [ADAM_LR_RATIO] = {"adam_lr_ratio", CLOPT__P_NUMBER, 1, 0, 0.0, INF, 0, 0},
    [MOMENTUM] = {"momentum", CLOPT__P_FLOAT, 0.95, 0, 0.0, 1.0, 0, 0},
    [NS_STEPS] = {"ns_steps", CLOPT__P_INT_OR_NULL, 5, 0, 0.0, 1000.0, 0, 0},
    [NESTEROV] = {"nesterov", CLOPT__P_BOOL, 1, 0, 0, 1, 0, 0},
    [EXCLUDE_EMBEDDINGS] = {"exclude_embeddings", CLOPT__P_BOOL, 1, 0, 0, 1, 0, 0},
    [ADAM_WEIGHT_DECAY] = {"adam_weight_decay", CLOPT__P_FLOAT_OR_NULL, 0.004, 0, -INF, INF, 0,
                           0},
    [RMS_RATE] = {"rms_rate", CLOPT__P_FLOAT_OR_NULL, 0.2, 0, 0.0, INF, 0, 0},
};

/* ---- configuration ---- */

static void init(clopt_optimizer *o) {
    o->base[CLOPT__B_WEIGHT_DECAY] = (clopt__value){0.004, 0};
}

static clopt_status validate(clopt_optimizer *o) {
    if (o->hp[NS_STEPS].null)
        return clopt__fail(o->ctx, CLOPT_ERR_BAD_TYPE,
                           "Muon config: 'ns_steps' must be an integer, got null");
    size_t i;
    json_t *e;
    json_array_foreach(o->hp_list[EXCLUDE_LAYERS], i, e) {
        regex_t re;
        const char *pat = json_string_value(e);
        if (regcomp(&re, pat, REG_EXTENDED | REG_NOSUB) != 0)
            return clopt__fail(o->ctx, CLOPT_ERR_BAD_VALUE,
                               "Muon config: 'exclude_layers' entry %zu ('%s') is not a valid "
                               "POSIX extended regular expression",
                               i, pat);
        regfree(&re);
    }
    return CLOPT_OK;
}

/* Keras's _should_use_adamw. */
static int adamw_path(const clopt_optimizer *o, const clopt_variable *v) {
    if (v->ndim != 2) return 1;
    if (clopt__hp(o, EXCLUDE_EMBEDDINGS) != 0) {
        char *low = clopt__strdup(v->name);
        if (low) {
            for (char *p = low; *p; p++)
                if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
        }
        const int hit = low && strstr(low, "embedding") != NULL;
        free(low);
        if (hit) return 1;
    }
    size_t i;
    json_t *e;
    json_array_foreach(o->hp_list[EXCLUDE_LAYERS], i, e) {
        regex_t re;
        if (regcomp(&re, json_string_value(e), REG_EXTENDED | REG_NOSUB) != 0) continue;
        const int hit = regexec(&re, v->name, 0, NULL, 0) == 0;
        regfree(&re);
        if (hit) return 1;
    }
    return 0;
}

/* ---- slots and weight decay ---- */

static int slots(const clopt_optimizer *o, clopt__slot_kind *k) {
    (void)o;
    k[0] = (clopt__slot_kind){"momentum", 0, 0.0};
    k[1] = (clopt__slot_kind){"velocity", 0, 0.0};
    return 2;
}

/* Keras makes a velocity only for AdamW-path variables. */
static clopt_status slot_entry(const clopt_optimizer *o, size_t i, int k, clopt__slot_entry *e) {
    if (k == 1 && !adamw_path(o, o->vars[i])) e->absent = 1;
    return CLOPT_OK;
}

static double decay_rate(const clopt_optimizer *o, size_t i) {
    const clopt__value *wd =
        adamw_path(o, o->vars[i]) ? &o->hp[ADAM_WEIGHT_DECAY] : &o->base[CLOPT__B_WEIGHT_DECAY];
    return wd->null ? 0.0 : wd->v;
}

/* ---- build: the path table and the scratch matrices ---- */

typedef struct mu_state {
    void *info_buf;         /* uint32 per built variable: 1 on the Muon path */
    unsigned char *muon;    /* the same, on the host */
    void *x[2], *y[2];      /* per real dtype (0 float32, 1 float64): the iterate and its copy */
    void *a[2], *b[2];      /* X X^T and b*A + c*A*A */
} mu_state;

static void on_unbuild(clopt_optimizer *o) {
    mu_state *st = o->class_state;
    if (!st) return;
    clopt_context *ctx = o->ctx;
    if (st->info_buf) ctx->ops->buffer_release(ctx, st->info_buf);
    for (int r = 0; r < 2; r++) {
        void *bufs[4] = {st->x[r], st->y[r], st->a[r], st->b[r]};
        for (int k = 0; k < 4; k++)
            if (bufs[k]) ctx->ops->buffer_release(ctx, bufs[k]);
    }
    free(st->muon);
    free(st);
    o->class_state = NULL;
}

static size_t chunks_of(const clopt_variable *v) {
    return ((size_t)v->size + CLOPT__CHUNK - 1) / CLOPT__CHUNK;
}

static int real_index(clopt_dtype d) { return d == CLOPT_FLOAT64; }

static clopt_status on_build(clopt_optimizer *o) {
    clopt_context *ctx = o->ctx;
    mu_state *st = calloc(1, sizeof *st);
    if (!st) return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "build: out of host memory");
    o->class_state = st;
    uint32_t *info = calloc(o->nvars ? o->nvars : 1, sizeof *info);
    st->muon = calloc(o->nvars ? o->nvars : 1, 1);
    if (!info || !st->muon) {
        free(info);
        return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "build: out of host memory");
    }
    size_t xcap[2] = {0, 0}, acap[2] = {0, 0};
    for (size_t i = 0; i < o->nvars; i++) {
        const clopt_variable *v = o->vars[i];
        if (adamw_path(o, v)) continue;
        info[i] = 1;
        st->muon[i] = v->size > 0;
        const int r = real_index(v->dtype);
        const size_t small = (size_t)(v->shape[0] < v->shape[1] ? v->shape[0] : v->shape[1]);
        const size_t padded = chunks_of(v) * CLOPT__CHUNK;
        if (padded > xcap[r]) xcap[r] = padded;
        if (small * small > acap[r]) acap[r] = small * small;
    }
    clopt_status s = ctx->ops->buffer_create(ctx, o->nvars * sizeof *info, &st->info_buf);
    if (s == CLOPT_OK && o->nvars)
        s = ctx->ops->write(ctx, st->info_buf, 0, info, o->nvars * sizeof *info);
    free(info);
    for (int r = 0; r < 2 && s == CLOPT_OK; r++) {
        if (!xcap[r]) continue;
        const size_t es = r ? sizeof(double) : sizeof(float);
        const size_t ac = acap[r] ? acap[r] : 1;
        if ((s = ctx->ops->buffer_create(ctx, xcap[r] * es, &st->x[r])) != CLOPT_OK ||
            (s = ctx->ops->buffer_create(ctx, xcap[r] * es, &st->y[r])) != CLOPT_OK ||
            (s = ctx->ops->buffer_create(ctx, ac * es, &st->a[r])) != CLOPT_OK ||
            (s = ctx->ops->buffer_create(ctx, ac * es, &st->b[r])) != CLOPT_OK)
            break;
    }
    return s;
}

/* ---- a step ---- */

static void launch(const clopt_optimizer *o, const clopt__step_info *s, clopt__launch *l) {
    const double b1 = clopt__hp(o, ADAM_BETA_1), b2 = clopt__hp(o, ADAM_BETA_2);
    const double t = (double)s->t, mom = clopt__hp(o, MOMENTUM);
    /* Keras: learning_rate * adam_lr_ratio, a float32 product, then cast to the dtype. */
    const double adam_lr = (double)((float)s->lr * (float)clopt__hp(o, ADAM_LR_RATIO));
    l->kernel = "muon.stats";
    l->ndefines = 1;
    l->defines[0] = (clopt__define){"NESTEROV", clopt__hp(o, NESTEROV) != 0.0};
    l->scalars[0] = adam_lr * sqrt(1.0 - pow(b2, t)) / (1.0 - pow(b1, t));
    l->scalars[1] = 1.0 - b1;
    l->scalars[2] = 1.0 - b2;
    l->scalars[3] = clopt__hp(o, EPSILON);
    l->scalars[4] = mom - 1.0;
    l->scalars[5] = mom;
    l->scalars[6] = s->lr; /* the Muon path's, read by run_launch for muon.apply */
    /* Muon's weight decay: q3 is the learning rate (cast to the dtype, as Keras does), each
     * variable's rate is its segment's decay multiplier (decay_rate). */
    l->decay = !o->base[CLOPT__B_WEIGHT_DECAY].null || !o->hp[ADAM_WEIGHT_DECAY].null;
    l->pipe[3] = l->dtype == CLOPT_FLOAT64 ? s->lr : (double)(float)s->lr;
}

/* ns_steps Newton-Schulz iterations on the rows x cols matrix in x (row-major), in place, with y,
 * a and b as scratch (rd: float32 or float64). rows > cols: x holds Keras's transposed iterate
 * X^T, and the products use transpose flags: A = X X^T = x^T x, x := a*x + y*B^T. */
static clopt_status newton_schulz(clopt_optimizer *o, clopt_dtype rd, int ri, size_t rows,
                                  size_t cols, int64_t steps) {
    clopt_context *ctx = o->ctx;
    mu_state *st = o->class_state;
    void *x = st->x[ri], *y = st->y[ri], *a = st->a[ri], *b = st->b[ri];
    const int tr = rows > cols;
    const size_t m = tr ? cols : rows, n = tr ? rows : cols, ld = cols;
    const double ca = clopt__hp(o, MUON_A), cb = clopt__hp(o, MUON_B), cc = clopt__hp(o, MUON_C);
    clopt_status s = ctx->ops->fill(ctx, a, rd, 0, m * m, 0.0);
    for (int64_t it = 0; it < steps && s == CLOPT_OK; it++) {
        const clopt__gemm_launch xxt = {rd, tr, !tr, m, m, n, 1.0, 0.0, x, 0, ld, x, 0, ld,
                                        a, 0, m};
        const clopt__gemm_launch aa = {rd, 0, 0, m, m, m, cc, cb, a, 0, m, a, 0, m, b, 0, m};
        const clopt__gemm_launch bx =
            tr ? (clopt__gemm_launch){rd, 0, 1, n, m, m, 1.0, ca, y, 0, ld, b, 0, m, x, 0, ld}
               : (clopt__gemm_launch){rd, 0, 0, m, n, m, 1.0, ca, b, 0, m, y, 0, ld, x, 0, ld};
        if ((s = ctx->ops->gemm(ctx, &xxt)) != CLOPT_OK ||
            (s = ctx->ops->assign(ctx, CLOPT__ASSIGN, rd, b, 0, a, 0, m * m)) != CLOPT_OK ||
            (s = ctx->ops->gemm(ctx, &aa)) != CLOPT_OK ||
            (s = ctx->ops->assign(ctx, CLOPT__ASSIGN, rd, y, 0, x, 0, rows * cols)) != CLOPT_OK)
            break;
        s = ctx->ops->gemm(ctx, &bx);
    }
    return s;
}

/* Load, iterate and apply for one Muon-path variable whose chunks are table entries e0 .. e0 +
 * nch - 1 of the launch `l` (muon.stats's launch). */
static clopt_status muon_variable(clopt_optimizer *o, const clopt__launch *l,
                                  const clopt_variable *v, size_t e0, size_t nch) {
    clopt_context *ctx = o->ctx;
    mu_state *st = o->class_state;
    const clopt_dtype rd = clopt__real_dtype(v->dtype);
    const int ri = real_index(v->dtype);
    const size_t rows = (size_t)v->shape[0], cols = (size_t)v->shape[1];
    clopt__launch a = *l;
    a.table_base = e0;
    a.nchunks = nch;
    a.info_buf = st->x[ri];
    a.kernel = "muon.load";
    a.scalars[3] = (double)((size_t)v->size - (nch - 1) * CLOPT__CHUNK); /* last chunk's elements */
    clopt_status s = ctx->ops->update(ctx, &a);
    if (s == CLOPT_OK)
        s = newton_schulz(o, rd, ri, rows, cols, (int64_t)clopt__hp(o, NS_STEPS));
    if (s != CLOPT_OK) return s;
    const clopt__value *rms = &o->hp[RMS_RATE];
    a.kernel = "muon.apply";
    a.scalars[0] = l->scalars[6];
    a.scalars[1] = rms->null ? 1.0 : sqrt((double)(rows > cols ? rows : cols));
    a.scalars[2] = rms->null ? 1.0 : rms->v;
    return ctx->ops->update(ctx, &a);
}

/* Compiles and warms every pass of plan launch `pl`, and runs one Newton-Schulz iteration per
 * distinct Muon-path shape on the (zero) scratch, so that CLBlast compiles its kernels and the
 * device sees every product size at build rather than in step 1. */
static clopt_status warm(clopt_optimizer *o, const clopt__plan *p, const clopt__plan_launch *pl,
                         clopt__launch *l) {
    clopt_context *ctx = o->ctx;
    mu_state *st = o->class_state;
    clopt_status s = ctx->ops->prepare(ctx, l);
    const int ri = real_index(pl->dtype);
    if (s != CLOPT_OK || !st->x[ri]) return s;
    const clopt__segment_launch sl = {"muon.norm", pl->dtype, p->ranges_buf, 0, 0,
                                      p->partials_buf, NULL, {0, 0, 0, 0}};
    clopt__launch a = *l;
    a.info_buf = st->x[ri];
    if ((s = ctx->ops->segments(ctx, &sl)) != CLOPT_OK) return s;
    a.kernel = "muon.load";
    if ((s = ctx->ops->prepare(ctx, &a)) != CLOPT_OK) return s;
    a.kernel = "muon.apply";
    if ((s = ctx->ops->prepare(ctx, &a)) != CLOPT_OK) return s;
    for (size_t i = 0; i < o->nvars && s == CLOPT_OK; i++) {
        const clopt_variable *v = o->vars[i];
        if (!st->muon[i] || v->dtype != pl->dtype || v->block != pl->var_block) continue;
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = st->muon[j] && real_index(o->vars[j]->dtype) == ri &&
                   o->vars[j]->shape[0] == v->shape[0] && o->vars[j]->shape[1] == v->shape[1];
        if (seen) continue;
        s = newton_schulz(o, clopt__real_dtype(v->dtype), ri, (size_t)v->shape[0],
                          (size_t)v->shape[1], 1);
        if (s == CLOPT_ERR_UNSUPPORTED) { /* OpenCL without CLBlast: name the variable */
            char *why = clopt__strdup(ctx->error ? ctx->error : "");
            clopt__fail(ctx, s, "build: Muon variable '%s' (%lld x %lld) takes the Muon path: %s",
                        v->name, (long long)v->shape[0], (long long)v->shape[1],
                        why ? why : "");
            free(why);
        }
    }
    return s;
}

static clopt_status run_launch(clopt_optimizer *o, const clopt__plan *p,
                               const clopt__plan_launch *pl, clopt__launch *l, int warm_only) {
    clopt_context *ctx = o->ctx;
    mu_state *st = o->class_state;
    l->aux_buf = p->partials_buf;
    l->info_buf = st->info_buf;
    if (warm_only) return warm(o, p, pl, l);
    clopt_status s = ctx->ops->update(ctx, l);
    if (s != CLOPT_OK) return s;
    /* The launch's variables are the plan's pairs with its (dtype, variable block, gradient
     * block), in list order, their chunks one after another from table_base (apply.c, layout). */
    int any = 0;
    for (size_t j = 0; j < p->n && !any; j++) {
        const clopt_variable *v = o->vars[p->var_index[j]], *g = p->grads[j] ? p->grads[j] : v;
        any = st->muon[p->var_index[j]] && v->dtype == pl->dtype && v->block == pl->var_block &&
              g->block == pl->grad_block;
    }
    if (!any) return CLOPT_OK;
    const clopt__segment_launch sl = {"muon.norm", pl->dtype, p->ranges_buf, pl->range_base,
                                      pl->nranges, p->partials_buf, NULL, {0, 0, 0, 0}};
    if ((s = ctx->ops->segments(ctx, &sl)) != CLOPT_OK) return s;
    size_t entry = pl->table_base;
    for (size_t j = 0; j < p->n && s == CLOPT_OK; j++) {
        const clopt_variable *v = o->vars[p->var_index[j]], *g = p->grads[j] ? p->grads[j] : v;
        if (v->dtype != pl->dtype || v->block != pl->var_block || g->block != pl->grad_block)
            continue;
        const size_t e0 = entry;
        entry += chunks_of(v);
        if (st->muon[p->var_index[j]]) s = muon_variable(o, l, v, e0, chunks_of(v));
    }
    return s;
}

const clopt__optimizer_class clopt__muon_class = {
    .class_name = "Muon",
    .default_name = "muon",
    .default_lr = 0.001,
    .params = params,
    .nparams = NPARAMS,
    .slots = slots,
    .validate = validate,
    .launch = launch,
    .init = init,
    .slot_entry = slot_entry,
    .on_build = on_build,
    .on_unbuild = on_unbuild,
    .run_launch = run_launch,
    .decay_rate = decay_rate,
};
