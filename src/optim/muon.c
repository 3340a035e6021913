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
 * Shape groups: at build the Muon-path variables are grouped by (dtype, rows, cols), in built
 * order; a group's scratch matrices lie one after another at a fixed stride (the padded size for
 * X and Y, min(rows, cols)^2 for A and B), so a product over all of them is ONE batched gemm
 * (CLBlast's strided-batched GEMM on OpenCL: equal m, n, k; src/optim/muon_pack.c packs them).
 * A dtype has at most CLOPT__MU_S_MAX (8) groups: with more distinct shapes, groups are
 * merged greedily (repeatedly the two whose union adds the least padded work, k*(2*m*m*n + m^3) for k matrices padded to m x n; only then: with
 * 8 shapes or fewer the groups are exactly the shapes, as before). A merged group stores its
 * matrices zero-padded to its oriented (after the rows > cols transposition, so m <= n) M x N =
 * (max min(rows, cols), max max(rows, cols)), as M x N or, when most of its elements are tall and
 * N > M, as N x M (the products' transpose flags, as for a tall shape); a variable whose
 * orientation differs from its group's is stored transposed. This is exact: with X zero outside
 * its block, X X^T, A*A, B = b*A + c*A*A and B*X stay zero outside it, so the block is the
 * unpadded iteration's result, up to the summation order inside the products (equal within
 * round-off, not necessarily bitwise). muon.load writes each matrix's whole padded stride every
 * step (the block from G, zeros elsewhere), muon.apply reads only the block. Padding costs
 * memory and FLOPs, so many shapes far apart in size cost more than their own products (the
 * scratch grows to the padded sizes; a build whose scratch would exceed 2^32 - 1 reals fails, as
 * below). At the start of each real dtype's X buffer a header holds, per built variable, its
 * matrix's offset (0 off the Muon path), first slot chunk, size, max(rows, cols),
 * sqrt(max(rows, cols)), cols, the stored row length, whether it is stored transposed and the
 * group's stride: muon.load and muon.apply read it to run over every chunk of a plan launch at
 * once.
 *
 * A step, per plan launch (dtype, variable block, gradient block):
 * 1. muon.stats over every chunk of the launch: reads each gradient once (GRAD()); the AdamW path
 *    is complete after it; on the Muon path it updates m, stores G in the velocity storage and
 *    writes per-block sums of G^2;
 *    (the launch ends here when it holds no Muon-path variable)
 * 2. the segment pass muon.norm: ||G||_F of every variable, on the device (no host round trip);
 * 3. muon.load over every chunk of the launch: X = G/(||G||_F + 1e-7) into each Muon-path
 *    variable's scratch matrix, and zeros in the rest of its stride (a merged group's padding);
 *    AdamW-path chunks do nothing;
 * 4. one fill of the scratch A of the launch's groups (so that a product with beta 0 never sees
 *    non-finite values of an earlier step);
 * 5. ns_steps iterations, each: per run, a batched gemm A = X X^T; one copy B := A; per run, a
 *    batched gemm B = c*A*A + b*B; one copy Y := X; per run, a batched gemm X = B*Y + a*X
 *    (rows > cols: the same with X stored transposed, through the products' transpose flags, so
 *    no transpose pass is needed). A run is a group's members from the first the launch updates
 *    to the last: one per group, whatever gradients are missing in between (a skipped member's
 *    products then work on its stale scratch, finite or not, which only its own batch entry
 *    sees and nothing applies);
 * 6. muon.apply over every chunk of the launch: w := WEIGHT() - ((lr*X)*sqrt(max(rows, cols)))*
 *    rms_rate on the Muon path.
 * So a step takes, per plan launch, 1 launch without Muon-path variables, else
 * 5 + ns_steps*(2 + 3R) for R runs, R = the number of shape groups among its Muon-path variables
 * with a gradient: at most min(S, CLOPT__MU_S_MAX) for S distinct (dtype, rows, cols) shapes,
 * so 15 + 15R with the default ns_steps=5 (30 for one shape, 45 for two, ..., at most 135 for 8 or more),
 * whatever the number of variables and shapes (before batching: 2 + (3 + 5*ns_steps) per
 * Muon-path variable), missing gradients included. A CLBlast product
 * counts as one launch here; CLBlast itself may enqueue several kernels for one
 * (padding/transposition passes for larger matrices).
 * A group of one runs the unbatched CLBlastSgemm/Dgemm, the same products as before batching;
 * the batched products gave the same bits as the single ones on POCL in the tests
 * (test_optim_muon.c, grouped_agrees_with_host_and_per_variable), which need not hold on every
 * device. clopt allocates nothing per step (CLBlast may make temporary buffers of its own inside a
 * product, for padded copies of larger matrices): the scratch X, Y (the header, then the padded
 * matrices of every group) and A, B (min(rows, cols)^2 per Muon-path variable; M^2 in a merged
 * group) are made at build, per real dtype (float32 for float32/float16/bfloat16 variables,
 * float64 for float64); offsets are 32-bit
 * (a build whose scratch would exceed 2^32 - 1 reals fails with CLOPT_ERR_UNSUPPORTED). A
 * float16/bfloat16 variable's G is stored in its own dtype (as Keras computes in that dtype) and
 * iterated in float32.
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
#include "muon_pack.h"
#include "optim_internal.h"

/* The scalars of muon.stats and of muon.apply (cl/scalars.cl). */
#define APPLY_INDEX(i, name, doc) AP_##name = (i),
enum { CLOPT_SCALARS_MUON(CLOPT__SCALAR_INDEX) CLOPT_SCALARS_MUON_APPLY(APPLY_INDEX) };

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
        if (clopt__regcomp(&re, pat) != 0)
            return clopt__fail(o->ctx, CLOPT_ERR_BAD_VALUE,
                               "Muon config: 'exclude_layers' entry %zu ('%s') is not a valid "
                               "POSIX extended regular expression (or stacks repetitions)",
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
        if (clopt__regcomp(&re, json_string_value(e)) != 0) continue;
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

/* ---- build: the path table, the shape groups and the scratch matrices ---- */

/* The consecutive members of a group that one plan launch's products cover: from the first it
 * updates to the last (the whole group when every member has a gradient). */
typedef struct mu_run {
    const clopt__mu_group *g;
    size_t r0, len;
} mu_run;

/* The scratch header: at the start of each real dtype's X buffer, MU_HDR_WORDS uint32 words per
 * built variable, which muon.load and muon.apply read (cl/muon.cl): word 0 the element offset of
 * the variable's matrix in X (0: not on the Muon path in this dtype), word 1 its first slot
 * chunk, word 2 its size, word 3 max(rows, cols), then sqrt(max(rows, cols)) as a real at byte
 * 16 (words 4 and 5); word 6 its cols, word 7 the stored matrix's row length (its group's cols),
 * word 8 1 when the variable is stored transposed (element (i, j) at (j, i): a tall variable in
 * a group stored wide, or the reverse), word 9 the group's X stride (how many reals muon.load
 * writes, zero padding included). A group of one shape stores each variable as it is (word 7 =
 * word 6, word 8 = 0). The matrices start after the header, at a whole number of chunks. */
#define MU_HDR_WORDS 12

typedef struct mu_state {
    void *info_buf;         /* uint32 per built variable: 1 on the Muon path */
    unsigned char *muon;    /* the same, on the host (0 also for an empty matrix) */
    clopt__mu_pack pack;    /* the shape groups and the scratch layout (muon_pack.h) */
    unsigned char *present; /* per built variable, during a step: in the plan launch */
    mu_run *runs;           /* per step: at most one per Muon-path variable */
    void *x[2], *y[2];      /* per real dtype (0 float32, 1 float64): the iterates and copies */
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
    clopt__mu_pack_free(&st->pack);
    free(st->present);
    free(st->runs);
    free(st);
    o->class_state = NULL;
}

/* The header of real dtype r's X buffer (MU_HDR_WORDS words per built variable). */
static clopt_status write_header(clopt_optimizer *o, mu_state *st, int r) {
    clopt_context *ctx = o->ctx;
    uint32_t *h = calloc(o->nvars * MU_HDR_WORDS, sizeof *h);
    if (!h) return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "build: out of host memory");
    for (size_t g = 0; g < st->pack.ngroups; g++) {
        const clopt__mu_group *gr = &st->pack.groups[g];
        if (clopt__mu_real_index(gr->dtype) != r) continue;
        for (size_t k = 0; k < gr->count; k++) {
            const size_t i = st->pack.members[gr->first + k];
            const size_t rows = (size_t)o->vars[i]->shape[0], cols = (size_t)o->vars[i]->shape[1];
            const size_t big = rows > cols ? rows : cols;
            uint32_t *e = h + i * MU_HDR_WORDS;
            e[0] = (uint32_t)(gr->x0 + k * gr->xstride);
            e[1] = (uint32_t)(o->slot_off[i] / CLOPT__CHUNK);
            e[2] = (uint32_t)o->vars[i]->size;
            e[3] = (uint32_t)big;
            if (r) {
                const double sc = sqrt((double)big);
                memcpy(e + 4, &sc, sizeof sc);
            } else {
                const float sc = (float)sqrt((double)big);
                memcpy(e + 4, &sc, sizeof sc);
            }
            e[6] = (uint32_t)cols;
            e[7] = (uint32_t)gr->cols;
            e[8] = (rows > cols) != (gr->rows > gr->cols);
            e[9] = (uint32_t)gr->xstride;
        }
    }
    clopt_status s = ctx->ops->write(ctx, st->x[r], 0, h, o->nvars * MU_HDR_WORDS * sizeof *h);
    free(h);
    return s;
}

/* The paths (info: 1 on the Muon path) and the shape groups of the built variables (muon_pack.c),
 * refusing a scratch past 32-bit offsets. */
static clopt_status pack_groups(clopt_optimizer *o, mu_state *st, uint32_t *info) {
    clopt_context *ctx = o->ctx;
    clopt__mu_matrix *m = calloc(o->nvars ? o->nvars : 1, sizeof *m);
    if (!m) return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "build: out of host memory");
    for (size_t i = 0; i < o->nvars; i++) {
        const clopt_variable *v = o->vars[i];
        if (adamw_path(o, v)) continue;
        info[i] = 1;
        st->muon[i] = v->size > 0;
        if (st->muon[i])
            m[i] = (clopt__mu_matrix){v->dtype, (size_t)v->shape[0], (size_t)v->shape[1]};
    }
    const int bad = clopt__mu_pack_build(m, o->nvars, o->nvars * MU_HDR_WORDS * sizeof(uint32_t),
                                         &st->pack);
    free(m);
    if (bad) return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "build: out of host memory");
    for (int r = 0; r < 2; r++)
        if (st->pack.xlen[r] > UINT32_MAX)
            return clopt__fail(ctx, CLOPT_ERR_UNSUPPORTED,
                               "build: Muon's Newton-Schulz scratch would hold %zu elements of "
                               "%s (more than 2^32 - 1)",
                               st->pack.xlen[r], r ? "float64" : "float32");
    return CLOPT_OK;
}

static clopt_status on_build(clopt_optimizer *o) {
    clopt_context *ctx = o->ctx;
    mu_state *st = calloc(1, sizeof *st);
    if (!st) return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "build: out of host memory");
    o->class_state = st;
    clopt__gemm_tuning_apply(ctx); /* CLBlast's parameters from the tuning database */
    const size_t nv = o->nvars ? o->nvars : 1;
    uint32_t *info = calloc(nv, sizeof *info);
    st->muon = calloc(nv, 1);
    st->present = calloc(nv, 1);
    st->runs = malloc(nv * sizeof *st->runs);
    if (!info || !st->muon || !st->present || !st->runs) {
        free(info);
        return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "build: out of host memory");
    }
    clopt_status s = pack_groups(o, st, info);
    if (s == CLOPT_OK) s = ctx->ops->buffer_create(ctx, nv * sizeof *info, &st->info_buf);
    if (s == CLOPT_OK && o->nvars)
        s = ctx->ops->write(ctx, st->info_buf, 0, info, o->nvars * sizeof *info);
    free(info);
    for (int r = 0; r < 2 && s == CLOPT_OK; r++) {
        const size_t xlen = st->pack.xlen[r], alen = st->pack.alen[r];
        if (!xlen) continue;
        const size_t es = r ? sizeof(double) : sizeof(float);
        if ((s = ctx->ops->buffer_create(ctx, xlen * es, &st->x[r])) != CLOPT_OK ||
            (s = ctx->ops->buffer_create(ctx, xlen * es, &st->y[r])) != CLOPT_OK ||
            (s = ctx->ops->buffer_create(ctx, alen * es, &st->a[r])) != CLOPT_OK ||
            (s = ctx->ops->buffer_create(ctx, alen * es, &st->b[r])) != CLOPT_OK)
            break;
        s = write_header(o, st, r);
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
    l->scalars[SC_alpha] = adam_lr * sqrt(1.0 - pow(b2, t)) / (1.0 - pow(b1, t));
    l->scalars[SC_one_minus_beta_1] = 1.0 - b1;
    l->scalars[SC_one_minus_beta_2] = 1.0 - b2;
    l->scalars[SC_epsilon] = clopt__hp(o, EPSILON);
    l->scalars[SC_momentum_minus_1] = mom - 1.0;
    l->scalars[SC_momentum] = mom;
    l->scalars[SC_lr] = s->lr; /* the Muon path's, read by run_launch for muon.apply */
    /* Muon's weight decay: q3 is the learning rate (cast to the dtype, as Keras does), each
     * variable's rate is its segment's decay multiplier (decay_rate). */
    l->decay = !o->base[CLOPT__B_WEIGHT_DECAY].null || !o->hp[ADAM_WEIGHT_DECAY].null;
    l->pipe[3] = l->dtype == CLOPT_FLOAT64 ? s->lr : (double)(float)s->lr;
}

/* The runs of plan launch `pl`: marks its Muon-path variables in st->present, then collects, per
 * group of the launch's dtype with a present member, the one run from its first present member
 * to its last into st->runs (members in between without a gradient, or in another plan launch,
 * ride along: their products work on scratch that nothing of this launch loads or applies, so
 * the launch count stays one batched product per group), and the spans of scratch they cover;
 * clears st->present again. Returns the count. */
static size_t collect_runs(const clopt_optimizer *o, const clopt__plan *p,
                           const clopt__plan_launch *pl, size_t xspan[2], size_t aspan[2]) {
    mu_state *st = o->class_state;
    for (size_t j = 0; j < p->n; j++) {
        const size_t i = p->var_index[j];
        const clopt_variable *v = o->vars[i], *g = p->grads[j] ? p->grads[j] : v;
        if (st->muon[i] && v->dtype == pl->dtype && v->block == pl->var_block &&
            g->block == pl->grad_block)
            st->present[i] = 1;
    }
    size_t n = 0;
    xspan[0] = aspan[0] = SIZE_MAX;
    xspan[1] = aspan[1] = 0;
    for (size_t gi = 0; gi < st->pack.ngroups; gi++) {
        const clopt__mu_group *g = &st->pack.groups[gi];
        if (g->dtype != pl->dtype) continue;
        size_t lo = SIZE_MAX, hi = 0;
        for (size_t k = 0; k < g->count; k++) {
            if (!st->present[st->pack.members[g->first + k]]) continue;
            if (lo == SIZE_MAX) lo = k;
            hi = k + 1;
            st->present[st->pack.members[g->first + k]] = 0;
        }
        if (lo != SIZE_MAX) st->runs[n++] = (mu_run){g, lo, hi - lo};
    }
    for (size_t k = 0; k < n; k++) {
        const mu_run *r = &st->runs[k];
        const size_t x0 = r->g->x0 + r->r0 * r->g->xstride, a0 = r->g->a0 + r->r0 * r->g->astride;
        if (x0 < xspan[0]) xspan[0] = x0;
        if (x0 + r->len * r->g->xstride > xspan[1]) xspan[1] = x0 + r->len * r->g->xstride;
        if (a0 < aspan[0]) aspan[0] = a0;
        if (a0 + r->len * r->g->astride > aspan[1]) aspan[1] = a0 + r->len * r->g->astride;
    }
    return n;
}

/* ns_steps Newton-Schulz iterations, in place in X, on every run's matrices at once: per
 * iteration one batched product per run for each of A = X X^T, B = c*A*A + b*B and
 * X = B*Y + a*X, and one copy B := A and one Y := X over the spans of all runs. Each matrix is
 * rows x cols, row-major; rows > cols: X holds Keras's transposed iterate X^T, and the products
 * use transpose flags: A = X X^T = x^T x, x := a*x + y*B^T. First one fill of the runs' A, so
 * that a product with beta 0 never sees non-finite values from an earlier step. On a failure
 * *failed is the run whose product failed (NULL otherwise). */
static clopt_status newton_schulz(clopt_optimizer *o, clopt_dtype rd, int ri, size_t nruns,
                                  const size_t xspan[2], const size_t aspan[2], int64_t steps,
                                  const mu_run **failed) {
    clopt_context *ctx = o->ctx;
    mu_state *st = o->class_state;
    void *x = st->x[ri], *y = st->y[ri], *a = st->a[ri], *b = st->b[ri];
    const double ca = clopt__hp(o, MUON_A), cb = clopt__hp(o, MUON_B), cc = clopt__hp(o, MUON_C);
    *failed = NULL;
    clopt_status s = ctx->ops->fill(ctx, a, rd, aspan[0], aspan[1] - aspan[0], 0.0);
    for (int64_t it = 0; it < steps && s == CLOPT_OK; it++) {
        for (int pass = 0; pass < 3 && s == CLOPT_OK; pass++) {
            for (size_t k = 0; k < nruns && s == CLOPT_OK; k++) {
                const mu_run *r = &st->runs[k];
                const clopt__mu_group *g = r->g;
                const int tr = g->rows > g->cols;
                const size_t m = tr ? g->cols : g->rows, n = tr ? g->rows : g->cols, ld = g->cols;
                const size_t xo = g->x0 + r->r0 * g->xstride, ao = g->a0 + r->r0 * g->astride;
                const size_t xs = g->xstride, as = g->astride;
                clopt__gemm_launch gl;
                if (pass == 0) /* A = X X^T */
                    gl = (clopt__gemm_launch){rd, tr, !tr, m, m, n, 1.0, 0.0, x, xo, ld, x, xo,
                                              ld, a, ao, m, r->len, xs, xs, as};
                else if (pass == 1) /* B = c*A*A + b*B (B = A) */
                    gl = (clopt__gemm_launch){rd, 0, 0, m, m, m, cc, cb, a, ao, m, a, ao, m,
                                              b, ao, m, r->len, as, as, as};
                else if (tr) /* X = B*Y + a*X, transposed */
                    gl = (clopt__gemm_launch){rd, 0, 1, n, m, m, 1.0, ca, y, xo, ld, b, ao, m,
                                              x, xo, ld, r->len, xs, as, xs};
                else
                    gl = (clopt__gemm_launch){rd, 0, 0, m, n, m, 1.0, ca, b, ao, m, y, xo, ld,
                                              x, xo, ld, r->len, as, xs, xs};
                if ((s = ctx->ops->gemm(ctx, &gl)) != CLOPT_OK) *failed = r;
            }
            if (s != CLOPT_OK || pass == 2) break;
            s = pass == 0 ? ctx->ops->assign(ctx, CLOPT__ASSIGN, rd, b, aspan[0], a, aspan[0],
                                             aspan[1] - aspan[0])
                          : ctx->ops->assign(ctx, CLOPT__ASSIGN, rd, y, xspan[0], x, xspan[0],
                                             xspan[1] - xspan[0]);
        }
    }
    return s;
}

/* Muon's load and apply passes over every chunk of launch `l` (muon.stats's), reading the
 * scratch header for each variable (AdamW-path chunks do nothing). */
static clopt_status muon_pass(clopt_optimizer *o, const clopt__launch *l, int ri, int apply,
                              int prepare_only) {
    clopt_context *ctx = o->ctx;
    mu_state *st = o->class_state;
    clopt__launch a = *l;
    a.info_buf = st->x[ri];
    a.kernel = apply ? "muon.apply" : "muon.load";
    if (apply) {
        const clopt__value *rms = &o->hp[RMS_RATE];
        a.scalars[AP_lr] = l->scalars[SC_lr];
        a.scalars[AP_lr_adjust] = rms->null ? 0.0 : 1.0; /* sqrt(max(rows, cols)): the header */
        a.scalars[AP_rms_rate] = rms->null ? 1.0 : rms->v;
    }
    return prepare_only ? ctx->ops->prepare(ctx, &a) : ctx->ops->update(ctx, &a);
}

/* On OpenCL without CLBlast: names the first variable of the run whose product failed. */
static clopt_status name_failed(clopt_optimizer *o, clopt_status s, const mu_run *r) {
    clopt_context *ctx = o->ctx;
    if (s != CLOPT_ERR_UNSUPPORTED || !r) return s;
    const mu_state *st = o->class_state;
    const clopt_variable *v = o->vars[st->pack.members[r->g->first + r->r0]];
    char *why = clopt__strdup(ctx->error ? ctx->error : "");
    clopt__fail(ctx, s, "build: Muon variable '%s' (%lld x %lld) takes the Muon path: %s",
                v->name, (long long)v->shape[0], (long long)v->shape[1], why ? why : "");
    free(why);
    return s;
}

/* Compiles and warms every pass of plan launch `pl`, and runs one Newton-Schulz iteration on the
 * (zero) scratch of its runs, so that CLBlast compiles its kernels and the device sees every
 * product size and batch at build rather than in step 1. */
static clopt_status warm(clopt_optimizer *o, const clopt__plan *p, const clopt__plan_launch *pl,
                         clopt__launch *l) {
    clopt_context *ctx = o->ctx;
    mu_state *st = o->class_state;
    clopt_status s = ctx->ops->prepare(ctx, l);
    const int ri = clopt__mu_real_index(pl->dtype);
    if (s != CLOPT_OK || !st->x[ri]) return s;
    const clopt__segment_launch sl = {"muon.norm", pl->dtype, p->ranges_buf, 0, 0,
                                      p->partials_buf, NULL, {0, 0, 0, 0}};
    if ((s = ctx->ops->segments(ctx, &sl)) != CLOPT_OK ||
        (s = muon_pass(o, l, ri, 0, 1)) != CLOPT_OK || (s = muon_pass(o, l, ri, 1, 1)) != CLOPT_OK)
        return s;
    size_t xspan[2], aspan[2];
    const size_t nruns = collect_runs(o, p, pl, xspan, aspan);
    if (!nruns) return CLOPT_OK;
    const mu_run *failed;
    s = newton_schulz(o, clopt__real_dtype(pl->dtype), ri, nruns, xspan, aspan, 1, &failed);
    return name_failed(o, s, failed);
}

/* A step's launches for plan launch `pl`: muon.stats; with Muon-path variables in it, then
 * muon.norm, muon.load, the batched Newton-Schulz iteration and muon.apply. */
static clopt_status run_launch(clopt_optimizer *o, const clopt__plan *p,
                               const clopt__plan_launch *pl, clopt__launch *l, int warm_only) {
    clopt_context *ctx = o->ctx;
    mu_state *st = o->class_state;
    l->aux_buf = p->partials_buf;
    l->info_buf = st->info_buf;
    if (warm_only) return warm(o, p, pl, l);
    clopt_status s = ctx->ops->update(ctx, l);
    if (s != CLOPT_OK) return s;
    size_t xspan[2], aspan[2];
    const size_t nruns = collect_runs(o, p, pl, xspan, aspan);
    if (!nruns) return CLOPT_OK;
    const int ri = clopt__mu_real_index(pl->dtype);
    const clopt__segment_launch sl = {"muon.norm", pl->dtype, p->ranges_buf, pl->range_base,
                                      pl->nranges, p->partials_buf, NULL, {0, 0, 0, 0}};
    const mu_run *failed;
    if ((s = ctx->ops->segments(ctx, &sl)) != CLOPT_OK ||
        (s = muon_pass(o, l, ri, 0, 0)) != CLOPT_OK ||
        (s = newton_schulz(o, clopt__real_dtype(pl->dtype), ri, nruns, xspan, aspan,
                           (int64_t)clopt__hp(o, NS_STEPS), &failed)) != CLOPT_OK)
        return s;
    return muon_pass(o, l, ri, 1, 0);
}

const clopt__optimizer_class clopt__muon_class = {
    .class_name = "Muon",
    .default_name = "muon",
    .default_lr = 0.001,
    CLOPT__PARAMS(params),
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
