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
 * (CLBlast's strided-batched GEMM on OpenCL: equal m, n, k). A dtype has at most MU_S_MAX (8)
 * groups: with more distinct shapes, groups are merged greedily (repeatedly the two whose union
 * adds the least padded work, k*(2*m*m*n + m^3) for k matrices padded to m x n; only then: with
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
 * with a gradient: at most min(S, MU_S_MAX) for S distinct (dtype, rows, cols) shapes, so 15 + 15R
 * with the default ns_steps=5 (30 for one shape, 45 for two, ..., at most 135 for 8 or more),
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

/* ---- build: the path table, the shape groups and the scratch matrices ---- */

/* At most MU_S_MAX shape groups per dtype: with more distinct (dtype, rows, cols) shapes among the
 * Muon-path variables, groups are merged (merge_groups) and their matrices zero-padded to a
 * common size, so that the products of a step stay a constant number whatever the shapes. */
#define MU_S_MAX 8

/* Muon-path variables stored at one size, in built order: their scratch matrices lie one after
 * another at fixed strides, so that a run of them is one batched matrix product. rows x cols is
 * the stored (row-major) matrix: for a group of one (dtype, rows, cols) shape exactly that shape;
 * for merged shapes (more than MU_S_MAX of them) the oriented (after Muon's rows > cols
 * transposition) M x N = (max min(rows, cols), max max(rows, cols)) of its shapes, stored as M x N,
 * or as N x M when most of its elements are tall (rows > cols) and N > M; each matrix is then
 * zero outside its own block. rows > cols: the products use transpose flags. */
typedef struct mu_group {
    clopt_dtype dtype;
    size_t rows, cols;
    size_t first, count;      /* members[first .. first + count - 1]: built indices */
    size_t x0, xstride;       /* member r's X (and Y) start at x0 + r*xstride: its padded size */
    size_t a0, astride;       /* member r's A (and B) start at a0 + r*astride: min(rows, cols)^2 */
} mu_group;

/* The consecutive members of a group that one plan launch's products cover: from the first it
 * updates to the last (the whole group when every member has a gradient). */
typedef struct mu_run {
    const mu_group *g;
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
    size_t *group_of;       /* per built variable: its group, or SIZE_MAX */
    size_t *members;        /* the groups' members, group after group */
    mu_group *groups;
    size_t ngroups;
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
    free(st->group_of);
    free(st->members);
    free(st->groups);
    free(st->present);
    free(st->runs);
    free(st);
    o->class_state = NULL;
}

static int real_index(clopt_dtype d) { return d == CLOPT_FLOAT64; }

static size_t small_dim(const mu_group *g) { return g->rows < g->cols ? g->rows : g->cols; }

/* Merging shape groups (only when a dtype has more than MU_S_MAX of them). A candidate is a
 * (dtype, rows, cols) group or a union of them: k matrices padded to the oriented m x n (m the
 * largest min(rows, cols), n the largest max(rows, cols)); tall counts the elements of its tall
 * (rows > cols) matrices, wide the others'. Work per Newton-Schulz iteration, up to a factor 2:
 * k*(m*m*n (X X^T) + m^3 (A*A) + m*m*n (B*X)). */
typedef struct mu_cand {
    clopt_dtype dtype;
    double k, m, n, tall, wide;
    size_t into;     /* SIZE_MAX while a candidate of its own, else the one it was merged into */
    size_t best;     /* the live candidate of its dtype whose union with it adds the least work */
    double best_add; /* that work */
} mu_cand;

static double mu_work(double k, double m, double n) { return k * m * m * (2 * n + m); }

static double merge_add(const mu_cand *a, const mu_cand *b) {
    const double m = a->m > b->m ? a->m : b->m, n = a->n > b->n ? a->n : b->n;
    return mu_work(a->k + b->k, m, n) - mu_work(a->k, a->m, a->n) - mu_work(b->k, b->m, b->n);
}

/* c[i]'s best partner among the live candidates of its dtype (the lowest index on ties). */
static void find_best(mu_cand *c, size_t nc, size_t i) {
    c[i].best = SIZE_MAX;
    c[i].best_add = HUGE_VAL;
    for (size_t j = 0; j < nc; j++) {
        if (j == i || c[j].into != SIZE_MAX || c[j].dtype != c[i].dtype) continue;
        const double add = merge_add(&c[i], &c[j]);
        if (c[i].best == SIZE_MAX || add < c[i].best_add) c[i].best = j, c[i].best_add = add;
    }
}

/* Greedy: while dtype d has more than MU_S_MAX live candidates, merges the pair whose union adds
 * the least padded work (the lowest indices on ties) into the lower index. A merge changes only
 * the pairs with the merged candidates, so each round rescans only the candidates whose best
 * partner was one of them: about O(S^2) work for S shapes in practice. */
static void merge_groups(mu_cand *c, size_t nc, clopt_dtype d) {
    size_t live = 0;
    for (size_t i = 0; i < nc; i++) live += c[i].dtype == d;
    if (live <= MU_S_MAX) return;
    for (size_t i = 0; i < nc; i++)
        if (c[i].dtype == d) find_best(c, nc, i);
    for (; live > MU_S_MAX; live--) {
        size_t i = SIZE_MAX;
        for (size_t j = 0; j < nc; j++)
            if (c[j].dtype == d && c[j].into == SIZE_MAX &&
                (i == SIZE_MAX || c[j].best_add < c[i].best_add))
                i = j;
        const size_t a = i < c[i].best ? i : c[i].best, b = i < c[i].best ? c[i].best : i;
        c[a].m = c[a].m > c[b].m ? c[a].m : c[b].m;
        c[a].n = c[a].n > c[b].n ? c[a].n : c[b].n;
        c[a].k += c[b].k;
        c[a].tall += c[b].tall;
        c[a].wide += c[b].wide;
        c[b].into = a;
        for (size_t h = 0; h < nc; h++) {
            if (h == a || c[h].dtype != d || c[h].into != SIZE_MAX) continue;
            if (c[h].best == a || c[h].best == b) {
                find_best(c, nc, h);
            } else {
                const double add = merge_add(&c[h], &c[a]);
                if (add < c[h].best_add || (add == c[h].best_add && a < c[h].best))
                    c[h].best = a, c[h].best_add = add;
            }
        }
        find_best(c, nc, a);
    }
}

/* Groups the Muon-path variables by (dtype, rows, cols), merges groups where a dtype has more than
 * MU_S_MAX (merge_groups), and lays out each real dtype's scratch: X and Y hold the header, then
 * every group's matrices; A and B every group's min^2 blocks. */
static clopt_status layout_groups(clopt_optimizer *o, mu_state *st, uint32_t *info,
                                  size_t xlen[2], size_t alen[2]) {
    clopt_context *ctx = o->ctx;
    const size_t nv = o->nvars ? o->nvars : 1;
    size_t *count = calloc(nv, sizeof *count), *final = malloc(nv * sizeof *final);
    mu_cand *cand = malloc(nv * sizeof *cand);
    if (!count || !final || !cand) {
        free(count), free(final), free(cand);
        return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "build: out of host memory");
    }
    /* the (dtype, rows, cols) groups, in order of first appearance (st->groups for now) */
    size_t nshapes = 0;
    for (size_t i = 0; i < o->nvars; i++) {
        st->group_of[i] = SIZE_MAX;
        const clopt_variable *v = o->vars[i];
        if (adamw_path(o, v)) continue;
        info[i] = 1;
        st->muon[i] = v->size > 0;
        if (!st->muon[i]) continue;
        const size_t rows = (size_t)v->shape[0], cols = (size_t)v->shape[1];
        size_t g = 0;
        while (g < nshapes && !(st->groups[g].dtype == v->dtype && st->groups[g].rows == rows &&
                                st->groups[g].cols == cols))
            g++;
        if (g == nshapes) {
            st->groups[nshapes] = (mu_group){v->dtype, rows, cols, 0, 0, 0, 0, 0, 0};
            const double lo = (double)(rows < cols ? rows : cols);
            const double hi = (double)(rows < cols ? cols : rows);
            cand[nshapes++] = (mu_cand){v->dtype, 0, lo, hi, 0, 0, SIZE_MAX, SIZE_MAX, 0};
        }
        st->group_of[i] = g;
        cand[g].k += 1;
        if (rows > cols) cand[g].tall += (double)v->size;
        else cand[g].wide += (double)v->size;
    }
    for (size_t g = 0; g < nshapes; g++) {
        size_t f = 0;
        while (cand[f].dtype != cand[g].dtype) f++;
        if (f == g) merge_groups(cand, nshapes, cand[g].dtype); /* once per dtype */
    }
    /* the final groups: one per live candidate, in order of first appearance; a merged group is
     * stored M x N, or N x M when most of its elements are tall (and N > M) */
    st->ngroups = 0;
    for (size_t g = 0; g < nshapes; g++) {
        size_t root = g;
        while (cand[root].into != SIZE_MAX) root = cand[root].into;
        if (root != g) {
            final[g] = final[root]; /* root < g: already numbered */
            continue;
        }
        final[g] = st->ngroups;
        mu_group *gr = &st->groups[st->ngroups++];
        const size_t m = (size_t)cand[g].m, n = (size_t)cand[g].n;
        const int tall = cand[g].tall > cand[g].wide && n > m;
        *gr = (mu_group){cand[g].dtype, tall ? n : m, tall ? m : n, 0, 0, 0, 0, 0, 0};
    }
    for (size_t i = 0; i < o->nvars; i++)
        if (st->group_of[i] != SIZE_MAX) count[st->group_of[i] = final[st->group_of[i]]]++;
    free(final);
    free(cand);
    size_t first = 0;
    for (size_t g = 0; g < st->ngroups; g++) {
        mu_group *gr = &st->groups[g];
        const int r = real_index(gr->dtype);
        if (!xlen[r]) { /* the header, in whole chunks of reals (so never 0: offsets are > 0) */
            const size_t es = r ? sizeof(double) : sizeof(float);
            const size_t words = (o->nvars * MU_HDR_WORDS * sizeof(uint32_t) + es - 1) / es;
            xlen[r] = (words + CLOPT__CHUNK - 1) / CLOPT__CHUNK * CLOPT__CHUNK;
        }
        gr->first = first;
        first += count[g];
        gr->xstride = (gr->rows * gr->cols + CLOPT__CHUNK - 1) / CLOPT__CHUNK * CLOPT__CHUNK;
        gr->astride = small_dim(gr) * small_dim(gr);
        gr->x0 = xlen[r];
        gr->a0 = alen[r];
        xlen[r] += count[g] * gr->xstride;
        alen[r] += count[g] * gr->astride;
    }
    free(count);
    for (size_t i = 0; i < o->nvars; i++) {
        if (st->group_of[i] == SIZE_MAX) continue;
        mu_group *gr = &st->groups[st->group_of[i]];
        st->members[gr->first + gr->count++] = i;
    }
    for (int r = 0; r < 2; r++)
        if (xlen[r] > UINT32_MAX)
            return clopt__fail(ctx, CLOPT_ERR_UNSUPPORTED,
                               "build: Muon's Newton-Schulz scratch would hold %zu elements of "
                               "%s (more than 2^32 - 1)",
                               xlen[r], r ? "float64" : "float32");
    return CLOPT_OK;
}

/* The header of real dtype r's X buffer (MU_HDR_WORDS words per built variable). */
static clopt_status write_header(clopt_optimizer *o, mu_state *st, int r) {
    clopt_context *ctx = o->ctx;
    uint32_t *h = calloc(o->nvars * MU_HDR_WORDS, sizeof *h);
    if (!h) return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "build: out of host memory");
    for (size_t g = 0; g < st->ngroups; g++) {
        const mu_group *gr = &st->groups[g];
        if (real_index(gr->dtype) != r) continue;
        for (size_t k = 0; k < gr->count; k++) {
            const size_t i = st->members[gr->first + k];
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

static clopt_status on_build(clopt_optimizer *o) {
    clopt_context *ctx = o->ctx;
    mu_state *st = calloc(1, sizeof *st);
    if (!st) return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "build: out of host memory");
    o->class_state = st;
    const size_t nv = o->nvars ? o->nvars : 1;
    uint32_t *info = calloc(nv, sizeof *info);
    st->muon = calloc(nv, 1);
    st->group_of = malloc(nv * sizeof *st->group_of);
    st->members = malloc(nv * sizeof *st->members);
    st->groups = malloc(nv * sizeof *st->groups);
    st->present = calloc(nv, 1);
    st->runs = malloc(nv * sizeof *st->runs);
    if (!info || !st->muon || !st->group_of || !st->members || !st->groups || !st->present ||
        !st->runs) {
        free(info);
        return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "build: out of host memory");
    }
    size_t xlen[2] = {0, 0}, alen[2] = {0, 0};
    clopt_status s = layout_groups(o, st, info, xlen, alen);
    if (s == CLOPT_OK) s = ctx->ops->buffer_create(ctx, nv * sizeof *info, &st->info_buf);
    if (s == CLOPT_OK && o->nvars)
        s = ctx->ops->write(ctx, st->info_buf, 0, info, o->nvars * sizeof *info);
    free(info);
    for (int r = 0; r < 2 && s == CLOPT_OK; r++) {
        if (!xlen[r]) continue;
        const size_t es = r ? sizeof(double) : sizeof(float);
        if ((s = ctx->ops->buffer_create(ctx, xlen[r] * es, &st->x[r])) != CLOPT_OK ||
            (s = ctx->ops->buffer_create(ctx, xlen[r] * es, &st->y[r])) != CLOPT_OK ||
            (s = ctx->ops->buffer_create(ctx, alen[r] * es, &st->a[r])) != CLOPT_OK ||
            (s = ctx->ops->buffer_create(ctx, alen[r] * es, &st->b[r])) != CLOPT_OK)
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
    for (size_t gi = 0; gi < st->ngroups; gi++) {
        const mu_group *g = &st->groups[gi];
        if (g->dtype != pl->dtype) continue;
        size_t lo = SIZE_MAX, hi = 0;
        for (size_t k = 0; k < g->count; k++) {
            if (!st->present[st->members[g->first + k]]) continue;
            if (lo == SIZE_MAX) lo = k;
            hi = k + 1;
            st->present[st->members[g->first + k]] = 0;
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
                const mu_group *g = r->g;
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
    const clopt_variable *v = o->vars[st->members[r->g->first + r->r0]];
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
    const int ri = real_index(pl->dtype);
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
    const int ri = real_index(pl->dtype);
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
    .params = params,
    .nparams = CLOPT__COUNTOF(params),
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
