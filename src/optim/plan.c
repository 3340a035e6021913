/* Launch plans: the segment table of a step's (variable, gradient) pairs, grouped into launches
 * of one dtype and one arena block of variables and of gradients each, and cached: a step whose
 * pairs are the last step's allocates and uploads nothing (backend_internal.h, clopt__segment). */
#include <stdlib.h>
#include <string.h>
#include "optim_internal.h"

int clopt__plan_matches(const clopt__plan *p, const size_t *idx, clopt_variable *const *grads,
                        size_t n) {
    return p->n == n && p->var_index && memcmp(p->var_index, idx, n * sizeof *idx) == 0 &&
           memcmp(p->grads, grads, n * sizeof *grads) == 0;
}

static size_t chunks_of(const clopt_variable *v) {
    return ((size_t)v->size + CLOPT__CHUNK - 1) / CLOPT__CHUNK;
}

/* Grows a backend buffer to hold `need` entries of `esize` bytes (only when a plan changes). */
static clopt_status ensure_buffer(clopt_context *ctx, void **buf, size_t *cap, size_t need,
                                  size_t esize) {
    if (need <= *cap && *buf) return CLOPT_OK;
    void *nb;
    clopt_status st = ctx->ops->buffer_create(ctx, (need ? need : 1) * esize, &nb);
    if (st != CLOPT_OK) return st;
    if (*buf) ctx->ops->buffer_release(ctx, *buf);
    *buf = nb;
    *cap = need ? need : 1;
    return CLOPT_OK;
}

/* Lays out the segment table of the pairs (idx[i], grads[i]), one entry per variable, grouped
 * into launches, with blocks of `bchunks` chunks numbered on across the plan; a NULL gradient
 * stands for the variable itself (passes that read no gradient). Returns the launches. */
static size_t layout(const clopt_optimizer *o, const size_t *idx, clopt_variable *const *grads,
                     size_t n, uint32_t bchunks, clopt__segment *segs, clopt__plan_launch *ls,
                     char *done, size_t *nblocks) {
    size_t nl = 0, blocks = 0, nr = 0;
    for (size_t i = 0; i < n; i++) {
        if (done[i]) continue;
        const clopt_variable *vi = o->vars[idx[i]], *gi = grads[i] ? grads[i] : vi;
        clopt__plan_launch *l = &ls[nl++];
        *l = (clopt__plan_launch){vi->dtype, vi->block, gi->block, 0, nr, 0, 0, 0, 0};
        const size_t first = blocks;
        for (size_t j = i; j < n; j++) {
            const clopt_variable *v = o->vars[idx[j]], *g = grads[j] ? grads[j] : v;
            if (done[j] || v->dtype != l->dtype || v->block != l->var_block ||
                g->block != l->grad_block)
                continue;
            done[j] = 1;
            clopt__segment *sg = &segs[nr++];
            *sg = (clopt__segment){(uint32_t)idx[j],
                                   (uint32_t)chunks_of(v),
                                   (uint32_t)(v->offset / CLOPT__CHUNK),
                                   (uint32_t)(g->offset / CLOPT__CHUNK),
                                   (uint32_t)(o->slot_off[idx[j]] / CLOPT__CHUNK),
                                   (uint32_t)blocks,
                                   bchunks,
                                   0};
            blocks += clopt__segment_blocks(sg);
        }
        l->nblocks = blocks - first;
        l->nranges = nr - l->range_base;
    }
    *nblocks = blocks;
    return nl;
}

/* A run: segments of one launch that lie end to end in the variable, gradient and slot buffers
 * alike and share their weight-decay real, merged into one segment (the first one's index). A
 * launch whose kernel reads no per-variable data but the segment reals (stages.c, runs_fit)
 * goes over the runs: 10,000 variables of 256 elements laid out in order are one run of a few
 * hundred blocks instead of 10,000 one-chunk blocks, each of which costs its work-item a
 * dependent load of its entry before its loop can start (BENCHMARKS.md, "Many tiny variables").
 * Every element is updated by the same statements either way, so the bits are the same. */
static int continues(const clopt__segment *r, const clopt__segment *s, const double *decay) {
    return s->var == r->var + r->count && s->grad == r->grad + r->count &&
           s->slot == r->slot + r->count && decay[s->index] == decay[r->index];
}

/* Writes the runs of every launch's segments to runs (at most n entries), numbering their
 * blocks on across the plan as layout() does; returns the runs in all. */
static size_t layout_runs(const clopt__segment *segs, clopt__plan_launch *ls, size_t nl,
                          const double *decay, clopt__segment *runs) {
    size_t nr = 0, blocks = 0;
    for (size_t i = 0; i < nl; i++) {
        clopt__plan_launch *l = &ls[i];
        const size_t first = blocks;
        l->run_base = nr;
        for (size_t k = l->range_base; k < l->range_base + l->nranges; k++) {
            if (nr > l->run_base && continues(&runs[nr - 1], &segs[k], decay)) {
                runs[nr - 1].count += segs[k].count;
                continue;
            }
            if (nr > l->run_base) blocks += clopt__segment_blocks(&runs[nr - 1]);
            runs[nr] = segs[k];
            runs[nr++].block = (uint32_t)blocks;
        }
        if (nr > l->run_base) blocks += clopt__segment_blocks(&runs[nr - 1]);
        l->nruns = nr - l->run_base;
        l->nrun_blocks = blocks - first;
    }
    return nr;
}

/* Chunks per block for `total` chunks: the optimizer's kernel parameters (block_chunks,
 * max_blocks; built-in defaults CLOPT__BLOCK_CHUNKS, CLOPT__MAX_BLOCKS in backend_internal.h).
 * The kernels read it from the segment table, so host and device cannot disagree. */
static uint32_t block_chunks(const clopt_kernel_params *kp, size_t total) {
    const size_t mb = (size_t)kp->max_blocks, bc = (size_t)kp->block_chunks;
    const size_t b = (total + mb - 1) / mb;
    return (uint32_t)(b > bc ? b : bc);
}

/* Builds `p` for the pairs, uploading its segment table and, after its n entries, its runs.
 * Rebuilt only when the pattern changes. Device memory: at most 64 bytes per variable for the
 * segments and runs, and `pbytes` per block for the partials (at most CLOPT__MAX_BLOCKS blocks
 * plus one per variable; a one-entry placeholder when no step uses them: kernel arguments stay
 * valid buffers). */
clopt_status clopt__plan_build(clopt_optimizer *o, clopt__plan *p, const size_t *idx,
                               clopt_variable *const *grads, size_t n, size_t pbytes) {
    clopt_context *ctx = o->ctx;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += chunks_of(o->vars[idx[i]]);
    clopt__segment *segs = malloc((n ? 2 * n : 1) * sizeof *segs); /* segments, then runs */
    clopt__plan_launch *ls = malloc((n ? n : 1) * sizeof *ls);
    size_t *nidx = malloc((n ? n : 1) * sizeof *nidx);
    clopt_variable **ngrads = malloc((n ? n : 1) * sizeof *ngrads);
    char *done = calloc(n ? n : 1, 1);
    clopt_status st = CLOPT_OK;
    if (!segs || !ls || !nidx || !ngrads || !done) {
        st = clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "apply: out of host memory");
        goto out;
    }
    if (total > UINT32_MAX) {
        st = clopt__fail(ctx, CLOPT_ERR_UNSUPPORTED,
                         "apply: the variables hold more than 2^32 chunks of %d elements",
                         CLOPT__CHUNK);
        goto out;
    }
    size_t nblocks;
    size_t nl = layout(o, idx, grads, n, block_chunks(&o->kparams, total), segs, ls, done, &nblocks);
    const size_t nruns = layout_runs(segs, ls, nl, o->decay_real, segs + n);
    if ((st = ensure_buffer(ctx, &p->ranges_buf, &p->ranges_cap, n + nruns, sizeof *segs)) ||
        (st = ensure_buffer(ctx, &p->partials_buf, &p->partials_cap, pbytes ? nblocks : 0,
                            pbytes ? pbytes : 16)))
        goto out;
    if (n && (st = ctx->ops->write(ctx, p->ranges_buf, 0, segs, (n + nruns) * sizeof *segs)))
        goto out;
    memcpy(nidx, idx, n * sizeof *idx);
    memcpy(ngrads, grads, n * sizeof *grads);
    free(p->var_index);
    free(p->grads);
    free(p->launches);
    p->var_index = nidx;
    p->grads = ngrads;
    p->launches = ls;
    p->nlaunches = nl;
    p->n = n;
    p->whole = n == o->nvars;
    for (size_t i = 0; p->whole && i < n; i++) p->whole = p->var_index[i] == i;
    nidx = NULL;
    ngrads = NULL;
    ls = NULL;
out:
    free(segs);
    free(ls);
    free(nidx);
    free(ngrads);
    free(done);
    if (st != CLOPT_OK) p->n = 0; /* no valid plan: the next apply rebuilds */
    return st;
}

clopt_status clopt__all_plan_build(clopt_optimizer *o) {
    for (size_t i = 0; i < o->nvars; i++) {
        o->scratch_idx[i] = i;
        o->scratch_grads[i] = NULL;
    }
    /* Only EMA's passes launch over this plan; nothing uses its partials. */
    return clopt__plan_build(o, &o->all_plan, o->scratch_idx, o->scratch_grads, o->nvars, 0);
}

void clopt__plan_free(clopt_context *ctx, clopt__plan *p) {
    free(p->var_index);
    free(p->grads);
    free(p->launches);
    if (p->ranges_buf) ctx->ops->buffer_release(ctx, p->ranges_buf);
    if (p->partials_buf) ctx->ops->buffer_release(ctx, p->partials_buf);
    memset(p, 0, sizeof *p);
}
