/* Adafactor (keras.optimizers.Adafactor). Kernels: cl/adafactor.cl.
 *
 * Slots, per variable in Keras's order r, c, velocity (interleaved). Each kind is stored at the
 * variable's size in the slot block, like every slot:
 * - rank >= 2 (shape [..., R, C], B = the product of the leading dimensions): r is the view
 *   shape[:-1] (B*R elements) at the start of its storage, c the view shape[:-2] + [C] (B*C
 *   elements) at the start of its own; both are named by the variable's Keras name (the last
 *   component of its clopt name), as Keras's add_variable(name=var.name). The rest of each
 *   storage is scratch: c's holds the per-batch means of r (B elements, when R >= 2; with R = 1
 *   the mean of r is r itself).
 * - rank < 2: r and c are Keras's dummy `Variable(0)` placeholders, integer scalars in the list
 *   (host entries reading o->state[0], 0: written as int64 by checkpoints, like the iteration
 *   counter; they share that one value, which the update never reads). Their slot storage is
 *   scratch for the update u between passes.
 * The velocity slot holds v; in a step of the work-group form (below) it first holds the
 * gradient, then u, then v (the CPU form writes only v).
 *
 * A step, per plan launch (dtype, variable block, gradient block), is six launches whatever the
 * number of variables. cl/adafactor.cl has each kernel in two forms with the same results to the
 * bit: the work-group form (work-groups of CHUNK over the plan's chunks or one per entry of its
 * own table, reductions through local memory: GPUs) and, on a CPU device (CLOPT_CPU), work-items
 * looping over the elements of their chunks or of a table entry (CHUNK_KERNEL, cl/common.cl),
 * which is what POCL runs fast. The passes:
 * 1. adafactor.stats, over the plan's chunks: marks the variable active. rank < 2: reads the
 *    gradient once (GRAD(): on an accumulation step it empties the accumulator) and w after
 *    weight decay, v := b*v + (1-b)*(g^2 + eps1), u = g/sqrt(v) into the r storage, per-block
 *    sums of w^2 and u^2. rank >= 2, work-group form: per-block sum of w^2, g copied into the
 *    velocity slot for the later passes; CPU form: only notes where the variable's gradient
 *    starts (AF_GCHUNK), and the later passes read the gradient buffer (and an accumulator,
 *    without emptying it until pass 6) as GRAD() would.
 * 2. adafactor.reduce over the rows and columns table of the variable block (built here at build
 *    time), r and c from the means of G = g^2 + eps1 over the last and second-to-last axes. Per
 *    factored variable, either blocks of whole rows (rows_per_block: long rows in float32 or
 *    float64), each entry summing its rows and its block's column partials, or its B*R rows
 *    (256 per entry, or one per entry when rows are at least CHUNK long) and its B*C columns
 *    (256 per entry). Rows and columns of variables not marked active (no gradient in this step)
 *    are skipped.
 * 3. adafactor.reduce over the same table's second part: mean(r, axis=-1) per batch, and c from
 *    the column partials of the row blocks.
 * 4. adafactor.velocity, over the plan's chunks (factored variables): v = (r/mean(r)) * c,
 *    u = g/sqrt(v), per-block sum of u^2 (work-group form: u stored over g; CPU form: nothing
 *    stored, and the chunk's sum of w^2 taken here).
 * 5. the segment pass adafactor.scale, one work-item per variable: RMS(w) and RMS(u) from the
 *    block sums, alpha = max(eps2, RMS(w)) * rho and max(1, RMS(u)/clip_threshold), written
 *    over the variable's chunk partials.
 * 6. adafactor, over the plan's chunks: w := w - alpha * (u / max(...)); rank >= 2: v into the
 *    velocity slot (CPU form: v and u recomputed as pass 4 did). Clears the active mark.
 * Launches 2 to 4 are left out for a block without factored variables (three launches, as Lamb).
 * The per-step work is O(elements): every element is read a constant number of times. CPU form,
 * per element of a factored variable: g read three times with row blocks (pass 2, passes 4 and
 * 6; plus the partials, at most 1/8 of a read and a write) and four without (rows and columns
 * apart), w twice, w and v written: 28 or 32 bytes in float32, as clopt bench's C loop (which
 * reads g three times); the row, column and batch of a chunk's elements are found with one set
 * of integer divisions per chunk. Nothing is allocated per step.
 *
 * The learning rate: lr := min(lr, 1/sqrt(t)) when the learning rate is a float (not a schedule)
 * and relative_step; then rho = min(lr, 1/sqrt(t)) in every case, so, as in Keras,
 * relative_step changes nothing numerically.
 *
 * Ranges beyond Keras (which checks nothing): beta_2_decay <= 0 (a positive decay makes
 * 1 - t^decay negative, and r negative), epsilon_1 and epsilon_2 >= 0, clip_threshold > 0. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "optim_internal.h"

/* The fused passes' scalars, and the finishing segment pass's (adafactor.scale) taken from
 * them by name (cl/scalars.cl). */
enum { CLOPT_SCALARS_ADAFACTOR(CLOPT__SCALAR_INDEX) };
#define FINISH_FROM_(i, name, doc) [i] = l->scalars[SC_##name],

enum { BETA_2_DECAY, EPSILON_1, EPSILON_2, CLIP_THRESHOLD, RELATIVE_STEP };

#define INF HUGE_VAL
static const clopt__param params[] = {
    [BETA_2_DECAY] = {"beta_2_decay", CLOPT__P_FLOAT, -0.8, 0, -INF, 0.0, 0, 0},
    [EPSILON_1] = {"epsilon_1", CLOPT__P_FLOAT, 1e-30, 0, 0.0, INF, 0, 0},
    [EPSILON_2] = {"epsilon_2", CLOPT__P_FLOAT, 1e-3, 0, 0.0, INF, 0, 0},
    [CLIP_THRESHOLD] = {"clip_threshold", CLOPT__P_FLOAT, 1.0, 0, 0.0, INF, 1, 0},
    [RELATIVE_STEP] = {"relative_step", CLOPT__P_BOOL, 1, 0, 0, 1, 0, 0},
};

/* ---- the per-variable table (uint32 words, AF_INFO_WORDS per built variable; cl/adafactor.cl
 * reads the same layout) ---- */
enum {
    AF_FACTORED, /* 1 for rank >= 2 */
    AF_B,        /* product of the leading dimensions (1 for rank 2) */
    AF_R,        /* shape[-2] */
    AF_C,        /* shape[-1] */
    AF_SLOT,     /* the variable's slot offset, in chunks */
    AF_ACTIVE,   /* set by pass 1, cleared by pass 6: the variable is updated in this step */
    AF_N_LO,     /* element count */
    AF_N_HI,
    AF_GCHUNK,   /* OpenCL on a CPU: the variable's gradient's first chunk, noted by pass 1 */
    AF_RPB,      /* rows per AF_ROW_BLOCK entry (0: the variable has no such entries) */
    AF_INFO_WORDS
};

/* Kinds of row/column table entries {variable, kind, first, count}: rows (count rows, or one
 * row with AF_ROW_GROUP), columns (of the B*C), per-batch means of r (batches); AF_ROW_BLOCK:
 * `count` whole rows of one batch, their sums and their column sums (partials, stored in the
 * scratch of r's storage), AF_COL_SUM: columns from those partials. */
enum { AF_ROWS, AF_ROW_GROUP, AF_COLS, AF_ROW_MEANS, AF_ROW_BLOCK, AF_COL_SUM };

typedef struct af_group { /* the factored variables of one (dtype, variable block) */
    clopt_dtype dtype;
    const clopt__arena_block *var_block;
    size_t base;         /* first table entry */
    size_t nstat, nmean; /* entries of phase 0 (rows, columns), then of phase 1 (row means) */
} af_group;

typedef struct af_state {
    void *info_buf;  /* AF_INFO_WORDS uint32 per built variable */
    void *table_buf; /* clopt__chunk entries read as {variable, kind, first, count} */
    af_group *groups;
    size_t ngroups;
} af_state;

static int slots(const clopt_optimizer *o, clopt__slot_kind *k) {
    (void)o;
    k[0] = (clopt__slot_kind){"r", 0, 0.0};
    k[1] = (clopt__slot_kind){"c", 0, 0.0};
    k[2] = (clopt__slot_kind){"velocity", 0, 0.0};
    return 3;
}

/* Keras's name of a variable: clopt names are Keras paths ("dense/kernel"), Keras's `.name` is
 * the last component ("kernel"). */
static const char *keras_name(const clopt_variable *v) {
    const char *slash = strrchr(v->name, '/');
    return slash ? slash + 1 : v->name;
}

static clopt_status slot_entry(const clopt_optimizer *o, size_t i, int k, clopt__slot_entry *e) {
    const clopt_variable *v = o->vars[i];
    if (k == 2) return CLOPT_OK; /* velocity: add_variable_from_reference, the default */
    if (!(e->name = clopt__strdup(keras_name(v)))) return CLOPT_ERR_OUT_OF_MEMORY;
    if (v->ndim < 2) {
        e->placeholder = 1;
        e->state_index = 0;
        return CLOPT_OK;
    }
    e->ndim = v->ndim - 1;
    memcpy(e->shape, v->shape, (size_t)(v->ndim - 1) * sizeof *e->shape);
    if (k == 1) e->shape[v->ndim - 2] = v->shape[v->ndim - 1];
    return CLOPT_OK;
}

/* The per-step scalars op by op in the variable's dtype, as Keras's update_step computes them. */
static void launch(const clopt_optimizer *o, const clopt__step_info *s, clopt__launch *l) {
    const clopt_dtype d = l->dtype;
    const double t = (double)s->t;
    const double inv_sqrt_t = clopt__in_dtype(1.0 / clopt__in_dtype(sqrt(t), d), d);
    double lr = clopt__in_dtype(s->lr, d);
    if (!o->schedule && clopt__hp(o, RELATIVE_STEP) != 0.0) lr = fmin(lr, inv_sqrt_t);
    const double beta_2_t =
        clopt__in_dtype(1.0 - clopt__pow_dtype(t, clopt__hp(o, BETA_2_DECAY), d), d);
    l->kernel = "adafactor";
    l->ndefines = 0;
    l->scalars[SC_beta_2_t] = beta_2_t;
    l->scalars[SC_one_minus_beta_2_t] = clopt__in_dtype(1.0 - beta_2_t, d);
    l->scalars[SC_epsilon_1] = clopt__in_dtype(clopt__hp(o, EPSILON_1), d);
    l->scalars[SC_rho] = fmin(lr, inv_sqrt_t);
    l->scalars[SC_epsilon_2] = clopt__in_dtype(clopt__hp(o, EPSILON_2), d);
    l->scalars[SC_clip_threshold] = clopt__in_dtype(clopt__hp(o, CLIP_THRESHOLD), d);
}

/* ---- build: the per-variable table and the row/column tables ---- */

static void on_unbuild(clopt_optimizer *o) {
    af_state *st = o->class_state;
    if (!st) return;
    if (st->info_buf) o->ctx->ops->buffer_release(o->ctx, st->info_buf);
    if (st->table_buf) o->ctx->ops->buffer_release(o->ctx, st->table_buf);
    free(st->groups);
    free(st);
    o->class_state = NULL;
}

/* B, R, C of a factored variable. */
static void dims(const clopt_variable *v, uint64_t *b, uint64_t *r, uint64_t *c) {
    *b = 1;
    for (int d = 0; d < v->ndim - 2; d++) *b *= (uint64_t)v->shape[d];
    *r = (uint64_t)v->shape[v->ndim - 2];
    *c = (uint64_t)v->shape[v->ndim - 1];
}

/* Rows per AF_ROW_BLOCK entry of a factored variable, or 0 to use AF_ROW_GROUP and AF_COLS.
 * Row blocks read each element once for both its row and its column, where row groups and
 * column entries read it twice, a column entry with a stride of C (slow on a CPU for wide rows);
 * they cost a partial column sum per block (C reals, written and read back: 1/8 of the
 * variable at most). For rows of CHUNK or more elements in float32 or float64 (the partials
 * are reals, stored in the slot dtype), at least 8 rows and at least 16384 elements per block,
 * and at least 4 blocks per batch (parallel work: otherwise the row and column entries are
 * more). Batch b's block p (of nbb = ceil(R / rpb) per batch) keeps its C partials from element
 * B*R + (b*nbb + p)*C of r's storage, after r (cl/adafactor.cl, AF_PART), which fits since
 * R >= 32: B*R + B*ceil(R/8)*C <= B*R*C. */
static uint64_t rows_per_block(const clopt_variable *v) {
    uint64_t b, r, c;
    dims(v, &b, &r, &c);
    if (c < CLOPT__CHUNK || (v->dtype != CLOPT_FLOAT32 && v->dtype != CLOPT_FLOAT64)) return 0;
    uint64_t rpb = (16384 + c - 1) / c;
    if (rpb < 8) rpb = 8;
    return r >= 4 * rpb ? rpb : 0;
}

/* Appends variable i's entries of one phase (0: rows and columns, 1: row means and columns from
 * partials) to `t` (NULL: only counts them). Returns the count. */
static size_t entries(const clopt_variable *v, uint32_t i, int phase, clopt__chunk *t) {
    uint64_t b, r, c, n = 0;
    dims(v, &b, &r, &c);
    const uint64_t K = CLOPT__CHUNK, rpb = rows_per_block(v);
#define PUT(kind, first, count)                                                              \
    do {                                                                                     \
        if (t) t[n] = (clopt__chunk){i, (kind), (uint32_t)(first), (uint32_t)(count)};       \
        n++;                                                                                 \
    } while (0)
    if (phase == 0 && rpb) {
        for (uint64_t q = 0; q < b * r; q += r)
            for (uint64_t k = 0; k < r; k += rpb)
                PUT(AF_ROW_BLOCK, q + k, r - k < rpb ? r - k : rpb);
    } else if (phase == 0) {
        if (c >= K)
            for (uint64_t k = 0; k < b * r; k++) PUT(AF_ROW_GROUP, k, 1);
        else
            for (uint64_t k = 0; k < b * r; k += K) PUT(AF_ROWS, k, b * r - k < K ? b * r - k : K);
        for (uint64_t k = 0; k < b * c; k += K) PUT(AF_COLS, k, b * c - k < K ? b * c - k : K);
    } else {
        if (rpb)
            for (uint64_t k = 0; k < b * c; k += K)
                PUT(AF_COL_SUM, k, b * c - k < K ? b * c - k : K);
        if (r >= 2)
            for (uint64_t k = 0; k < b; k += K) PUT(AF_ROW_MEANS, k, b - k < K ? b - k : K);
    }
#undef PUT
    return (size_t)n;
}

static af_group *find_group(af_state *st, clopt_dtype d, const clopt__arena_block *blk) {
    for (size_t g = 0; g < st->ngroups; g++)
        if (st->groups[g].dtype == d && st->groups[g].var_block == blk) return &st->groups[g];
    return NULL;
}

static clopt_status on_build(clopt_optimizer *o) {
    clopt_context *ctx = o->ctx;
    af_state *st = calloc(1, sizeof *st);
    if (!st) return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "build: out of host memory");
    o->class_state = st;
    uint32_t *info = calloc(o->nvars * AF_INFO_WORDS, sizeof *info);
    st->groups = calloc(o->nvars ? o->nvars : 1, sizeof *st->groups);
    clopt__chunk *table = NULL;
    clopt_status s = CLOPT_OK;
    if (!info || !st->groups) {
        s = clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "build: out of host memory");
        goto out;
    }
    size_t total = 0;
    for (size_t i = 0; i < o->nvars; i++) {
        const clopt_variable *v = o->vars[i];
        uint32_t *w = info + i * AF_INFO_WORDS;
        uint64_t b = 1, r = 1, c = (uint64_t)v->size;
        if (v->ndim >= 2) dims(v, &b, &r, &c);
        /* Row, column and batch indices are 32-bit in the tables. */
        if (b * r > UINT32_MAX || b * c > UINT32_MAX || c > UINT32_MAX || r > UINT32_MAX) {
            s = clopt__fail(ctx, CLOPT_ERR_UNSUPPORTED,
                            "build: Adafactor variable '%s' has more than 2^32 rows or columns",
                            v->name);
            goto out;
        }
        w[AF_FACTORED] = v->ndim >= 2;
        w[AF_B] = (uint32_t)b;
        w[AF_R] = (uint32_t)r;
        w[AF_C] = (uint32_t)c;
        w[AF_SLOT] = (uint32_t)(o->slot_off[i] / CLOPT__CHUNK);
        w[AF_N_LO] = (uint32_t)((uint64_t)v->size & 0xffffffffu);
        w[AF_N_HI] = (uint32_t)((uint64_t)v->size >> 32);
        if (v->ndim < 2) continue;
        w[AF_RPB] = (uint32_t)rows_per_block(v);
        total += entries(v, (uint32_t)i, 0, NULL) + entries(v, (uint32_t)i, 1, NULL);
        if (!find_group(st, v->dtype, v->block))
            st->groups[st->ngroups++] = (af_group){v->dtype, v->block, 0, 0, 0};
    }
    if (total && !(table = malloc(total * sizeof *table))) {
        s = clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "build: out of host memory");
        goto out;
    }
    /* Per group: every row and column entry, then every row-mean entry. */
    size_t used = 0;
    for (size_t g = 0; g < st->ngroups; g++) {
        af_group *grp = &st->groups[g];
        grp->base = used;
        for (int phase = 0; phase < 2; phase++)
            for (size_t i = 0; i < o->nvars; i++) {
                const clopt_variable *v = o->vars[i];
                if (v->ndim < 2 || v->dtype != grp->dtype || v->block != grp->var_block) continue;
                size_t k = entries(v, (uint32_t)i, phase, table + used);
                used += k;
                if (phase == 0) grp->nstat += k;
                else grp->nmean += k;
            }
    }
    if ((s = ctx->ops->buffer_create(ctx, o->nvars * AF_INFO_WORDS * sizeof *info,
                                     &st->info_buf)) ||
        (s = ctx->ops->write(ctx, st->info_buf, 0, info,
                             o->nvars * AF_INFO_WORDS * sizeof *info)) ||
        (s = ctx->ops->buffer_create(ctx, (total ? total : 1) * sizeof *table, &st->table_buf)) ||
        (total && (s = ctx->ops->write(ctx, st->table_buf, 0, table, total * sizeof *table))))
        goto out;
out:
    free(info);
    free(table);
    return s;
}

/* ---- a step ---- */

static clopt_status run_launch(clopt_optimizer *o, const clopt__plan *p,
                               const clopt__plan_launch *pl, clopt__launch *l, int warm) {
    clopt_context *ctx = o->ctx;
    af_state *st = o->class_state;
    const af_group *grp = find_group(st, pl->dtype, pl->var_block);
    l->aux_buf = p->partials_buf;
    l->info_buf = st->info_buf;
    clopt__launch a = *l;
    clopt_status s;
#define RUN(launch) (warm ? ctx->ops->prepare(ctx, &(launch)) : ctx->ops->update(ctx, &(launch)))
    a.kernel = "adafactor.stats";
    if ((s = RUN(a)) != CLOPT_OK) return s;
    if (grp) {
        a = *l;
        a.kernel = "adafactor.reduce";
        a.table_buf = st->table_buf;
        a.own_table = 1;
        a.table_base = grp->base;
        a.ntable = a.nunits = grp->nstat;
        if ((s = RUN(a)) != CLOPT_OK) return s;
        if (grp->nmean && !warm) {
            a.table_base = grp->base + grp->nstat;
            a.ntable = a.nunits = grp->nmean;
            if ((s = ctx->ops->update(ctx, &a)) != CLOPT_OK) return s;
        }
        a = *l;
        a.kernel = "adafactor.velocity";
        if ((s = RUN(a)) != CLOPT_OK) return s;
    }
    const clopt__segment_launch sl = {"adafactor.scale", pl->dtype, p->ranges_buf,
                                      pl->range_base, warm ? 0 : pl->nranges, p->partials_buf,
                                      st->info_buf,
                                      {CLOPT_SCALARS_ADAFACTOR_FINISH(FINISH_FROM_)}};
    if ((s = ctx->ops->segments(ctx, &sl)) != CLOPT_OK) return s;
    return RUN(*l);
#undef RUN
}

const clopt__optimizer_class clopt__adafactor_class = {
    .class_name = "Adafactor",
    .default_name = "adafactor",
    .default_lr = 0.001,
    CLOPT__PARAMS(params),
    .slots = slots,
    .launch = launch,
    .slot_entry = slot_entry,
    .on_build = on_build,
    .on_unbuild = on_unbuild,
    .run_launch = run_launch,
};
