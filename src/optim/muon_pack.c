/* Muon's shape-group packer: grouping, merging, scratch layout (muon_pack.h). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include "../backend/backend_internal.h"
#include "muon_pack.h"

static size_t small_dim(const clopt__mu_group *g) { return g->rows < g->cols ? g->rows : g->cols; }

/* Merging shape groups (only when a dtype has more than CLOPT__MU_S_MAX of them). A candidate is a
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

/* Greedy: while dtype d has more than CLOPT__MU_S_MAX live candidates, merges the pair whose
 * union adds the least padded work (the lowest indices on ties) into the lower index. A merge changes only
 * the pairs with the merged candidates, so each round rescans only the candidates whose best
 * partner was one of them: about O(S^2) work for S shapes in practice. */
static void merge_groups(mu_cand *c, size_t nc, clopt_dtype d) {
    size_t live = 0;
    for (size_t i = 0; i < nc; i++) live += c[i].dtype == d;
    if (live <= CLOPT__MU_S_MAX) return;
    for (size_t i = 0; i < nc; i++)
        if (c[i].dtype == d) find_best(c, nc, i);
    for (; live > CLOPT__MU_S_MAX; live--) {
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

void clopt__mu_pack_free(clopt__mu_pack *p) {
    free(p->groups);
    free(p->group_of);
    free(p->members);
    *p = (clopt__mu_pack){0};
}

/* The (dtype, rows, cols) shapes in order of first appearance, as candidates (and first as
 * p->groups); p->group_of[i] its shape. Returns the number of shapes. */
static size_t find_shapes(const clopt__mu_matrix *m, size_t n, clopt__mu_pack *p, mu_cand *cand) {
    size_t nshapes = 0;
    for (size_t i = 0; i < n; i++) {
        p->group_of[i] = SIZE_MAX;
        if (!m[i].rows) continue;
        const size_t rows = m[i].rows, cols = m[i].cols;
        size_t g = 0;
        while (g < nshapes && !(p->groups[g].dtype == m[i].dtype && p->groups[g].rows == rows &&
                                p->groups[g].cols == cols))
            g++;
        if (g == nshapes) {
            p->groups[nshapes] = (clopt__mu_group){m[i].dtype, rows, cols, 0, 0, 0, 0, 0, 0};
            const double lo = (double)(rows < cols ? rows : cols);
            const double hi = (double)(rows < cols ? cols : rows);
            cand[nshapes++] = (mu_cand){m[i].dtype, 0, lo, hi, 0, 0, SIZE_MAX, SIZE_MAX, 0};
        }
        p->group_of[i] = g;
        cand[g].k += 1;
        if (rows > cols) cand[g].tall += (double)(rows * cols);
        else cand[g].wide += (double)(rows * cols);
    }
    return nshapes;
}

/* The final groups: one per live candidate, in order of first appearance; a merged group is
 * stored M x N, or N x M when most of its elements are tall (and N > M). final[g] is shape g's
 * group. */
static void final_groups(const mu_cand *cand, size_t nshapes, clopt__mu_pack *p, size_t *final) {
    p->ngroups = 0;
    for (size_t g = 0; g < nshapes; g++) {
        size_t root = g;
        while (cand[root].into != SIZE_MAX) root = cand[root].into;
        if (root != g) {
            final[g] = final[root]; /* root < g: already numbered */
            continue;
        }
        final[g] = p->ngroups;
        clopt__mu_group *gr = &p->groups[p->ngroups++];
        const size_t m = (size_t)cand[g].m, n = (size_t)cand[g].n;
        const int tall = cand[g].tall > cand[g].wide && n > m;
        *gr = (clopt__mu_group){cand[g].dtype, tall ? n : m, tall ? m : n, 0, 0, 0, 0, 0, 0};
    }
}

/* Each group's members and its place in its real dtype's scratch: X and Y hold the header, then
 * every group's matrices; A and B every group's min^2 blocks. */
static void lay_out(size_t n, size_t header_bytes, const size_t *count, clopt__mu_pack *p) {
    size_t first = 0;
    for (size_t g = 0; g < p->ngroups; g++) {
        clopt__mu_group *gr = &p->groups[g];
        const int r = clopt__mu_real_index(gr->dtype);
        if (!p->xlen[r]) { /* the header, in whole chunks of reals (so never 0: offsets are > 0) */
            const size_t es = r ? sizeof(double) : sizeof(float);
            const size_t words = (header_bytes + es - 1) / es;
            p->xlen[r] = (words + CLOPT__CHUNK - 1) / CLOPT__CHUNK * CLOPT__CHUNK;
            if (!p->xlen[r]) p->xlen[r] = CLOPT__CHUNK;
        }
        gr->first = first;
        first += count[g];
        gr->xstride = (gr->rows * gr->cols + CLOPT__CHUNK - 1) / CLOPT__CHUNK * CLOPT__CHUNK;
        gr->astride = small_dim(gr) * small_dim(gr);
        gr->x0 = p->xlen[r];
        gr->a0 = p->alen[r];
        p->xlen[r] += count[g] * gr->xstride;
        p->alen[r] += count[g] * gr->astride;
    }
    for (size_t i = 0; i < n; i++) {
        if (p->group_of[i] == SIZE_MAX) continue;
        clopt__mu_group *gr = &p->groups[p->group_of[i]];
        p->members[gr->first + gr->count++] = i;
    }
}

int clopt__mu_pack_build(const clopt__mu_matrix *m, size_t n, size_t header_bytes,
                         clopt__mu_pack *p) {
    *p = (clopt__mu_pack){0};
    const size_t nv = n ? n : 1;
    p->groups = malloc(nv * sizeof *p->groups);
    p->group_of = malloc(nv * sizeof *p->group_of);
    p->members = malloc(nv * sizeof *p->members);
    size_t *count = calloc(nv, sizeof *count), *final = malloc(nv * sizeof *final);
    mu_cand *cand = malloc(nv * sizeof *cand);
    const int ok = p->groups && p->group_of && p->members && count && final && cand;
    if (ok) {
        const size_t nshapes = find_shapes(m, n, p, cand);
        for (size_t g = 0; g < nshapes; g++) {
            size_t f = 0;
            while (cand[f].dtype != cand[g].dtype) f++;
            if (f == g) merge_groups(cand, nshapes, cand[g].dtype); /* once per dtype */
        }
        final_groups(cand, nshapes, p, final);
        for (size_t i = 0; i < n; i++)
            if (p->group_of[i] != SIZE_MAX) count[p->group_of[i] = final[p->group_of[i]]]++;
        lay_out(n, header_bytes, count, p);
    } else {
        clopt__mu_pack_free(p);
    }
    free(count);
    free(final);
    free(cand);
    return ok ? 0 : -1;
}
