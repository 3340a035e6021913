/* Muon's shape-group packer on its own (src/optim/muon_pack.c): grouping by (dtype, rows, cols)
 * in built order, the variables it leaves out, merging past CLOPT__MU_S_MAX shapes (the pair that
 * adds the least padded work, the merged size and orientation), and the scratch layout (header,
 * strides, offsets per real dtype). Host code only: no device, no optimizer. test_optim_muon.c
 * checks the steps that run on this layout. */
#include <criterion/criterion.h>
#include <stdint.h>
#include "backend/backend_internal.h"
#include "optim/muon_pack.h"
#include "test_util.h"

TU_SUITE(muon_pack);

#define F32 CLOPT_FLOAT32
#define F64 CLOPT_FLOAT64
#define CH CLOPT__CHUNK

static size_t round_chunks(size_t n) { return (n + CH - 1) / CH * CH; }

static clopt__mu_pack pack(const clopt__mu_matrix *m, size_t n, size_t header_bytes) {
    clopt__mu_pack p;
    cr_assert_eq(clopt__mu_pack_build(m, n, header_bytes, &p), 0);
    return p;
}

/* The group holding built variable i. */
static const clopt__mu_group *group_of(const clopt__mu_pack *p, size_t i) {
    cr_assert_neq(p->group_of[i], SIZE_MAX, "variable %zu is not packed", i);
    cr_assert_lt(p->group_of[i], p->ngroups);
    return &p->groups[p->group_of[i]];
}

Test(muon_pack, groups_by_shape_in_built_order) {
    /* 0: 4x8, 1: left out, 2: 3x5, 3: 4x8, 4: 4x8 float64, 5: 8x4 (another shape), 6: 3x5 */
    const clopt__mu_matrix m[] = {{F32, 4, 8}, {F32, 0, 0}, {F32, 3, 5}, {F32, 4, 8},
                                  {F64, 4, 8}, {F32, 8, 4}, {F32, 3, 5}};
    clopt__mu_pack p = pack(m, 7, 100);
    cr_assert_eq(p.ngroups, 4);
    cr_assert_eq(p.group_of[1], SIZE_MAX);
    const size_t want_group[] = {0, SIZE_MAX, 1, 0, 2, 3, 1};
    for (size_t i = 0; i < 7; i++) cr_assert_eq(p.group_of[i], want_group[i], "variable %zu", i);
    const struct {
        clopt_dtype dtype;
        size_t rows, cols, count, members[2];
    } want[] = {{F32, 4, 8, 2, {0, 3}}, {F32, 3, 5, 2, {2, 6}}, {F64, 4, 8, 1, {4}},
                {F32, 8, 4, 1, {5}}};
    for (size_t g = 0; g < 4; g++) {
        const clopt__mu_group *gr = &p.groups[g];
        cr_assert_eq(gr->dtype, want[g].dtype, "group %zu", g);
        cr_assert_eq(gr->rows, want[g].rows, "group %zu", g);
        cr_assert_eq(gr->cols, want[g].cols, "group %zu", g);
        cr_assert_eq(gr->count, want[g].count, "group %zu", g);
        for (size_t k = 0; k < gr->count; k++)
            cr_assert_eq(p.members[gr->first + k], want[g].members[k], "group %zu member %zu", g, k);
    }
    clopt__mu_pack_free(&p);
}

Test(muon_pack, layout_per_real_dtype) {
    /* float16 and bfloat16 matrices are iterated in float32: the same scratch as float32, but
     * groups of their own. 300 header bytes: 75 float reals or 38 doubles, one chunk either way. */
    const clopt__mu_matrix m[] = {{F32, 16, 20}, {CLOPT_FLOAT16, 16, 20}, {F64, 30, 10},
                                  {F32, 16, 20}, {CLOPT_BFLOAT16, 2, 3}};
    clopt__mu_pack p = pack(m, 5, 300);
    cr_assert_eq(p.ngroups, 4);
    const clopt__mu_group *a = group_of(&p, 0), *h = group_of(&p, 1), *d = group_of(&p, 2),
                          *b = group_of(&p, 4);
    cr_assert_eq(group_of(&p, 3), a);
    /* float32 scratch: header chunk, then a's two 16x20 (320 -> 512 reals each), h's one, b's one */
    cr_assert_eq(a->x0, CH);
    cr_assert_eq(a->xstride, round_chunks(320));
    cr_assert_eq(a->astride, 16 * 16);
    cr_assert_eq(a->a0, 0);
    cr_assert_eq(h->x0, a->x0 + 2 * a->xstride);
    cr_assert_eq(h->a0, 2 * a->astride);
    cr_assert_eq(b->x0, h->x0 + h->xstride);
    cr_assert_eq(b->xstride, CH);
    cr_assert_eq(b->astride, 4);
    cr_assert_eq(b->a0, h->a0 + h->astride);
    cr_assert_eq(p.xlen[0], b->x0 + b->xstride);
    cr_assert_eq(p.alen[0], 2 * 256 + 256 + 4);
    /* float64 scratch: its own header chunk, then d (30x10: 300 -> 512 reals; A 10x10) */
    cr_assert_eq(d->x0, CH);
    cr_assert_eq(d->a0, 0);
    cr_assert_eq(d->astride, 100);
    cr_assert_eq(p.xlen[1], CH + round_chunks(300));
    cr_assert_eq(p.alen[1], 100);
    clopt__mu_pack_free(&p);
}

Test(muon_pack, header_rounds_up_to_whole_chunks) {
    const clopt__mu_matrix m[] = {{F32, 2, 2}, {F64, 2, 2}};
    /* 4100 bytes: 1025 floats (5 chunks of 256) or 513 doubles (3 chunks) */
    clopt__mu_pack p = pack(m, 2, 4100);
    cr_assert_eq(group_of(&p, 0)->x0, 5 * CH);
    cr_assert_eq(group_of(&p, 1)->x0, 3 * CH);
    clopt__mu_pack_free(&p);
}

Test(muon_pack, nothing_to_pack) {
    clopt__mu_pack p = pack(NULL, 0, 64);
    cr_assert_eq(p.ngroups, 0);
    cr_assert_eq(p.xlen[0] + p.xlen[1] + p.alen[0] + p.alen[1], 0);
    clopt__mu_pack_free(&p);
    const clopt__mu_matrix none[] = {{F32, 0, 0}, {F64, 0, 0}};
    p = pack(none, 2, 64);
    cr_assert_eq(p.ngroups, 0);
    cr_assert_eq(p.group_of[0], SIZE_MAX);
    cr_assert_eq(p.group_of[1], SIZE_MAX);
    cr_assert_eq(p.xlen[0] + p.xlen[1], 0, "no scratch, not even a header");
    clopt__mu_pack_free(&p);
}

/* Up to CLOPT__MU_S_MAX shapes of a dtype: the groups are exactly the shapes, whatever their
 * sizes; other dtypes do not count towards a dtype's limit. */
Test(muon_pack, at_most_eight_shapes_stay_apart) {
    clopt__mu_matrix m[2 * CLOPT__MU_S_MAX];
    for (size_t i = 0; i < CLOPT__MU_S_MAX; i++) {
        m[i] = (clopt__mu_matrix){F32, 2 + i, 3 + 40 * i};
        m[CLOPT__MU_S_MAX + i] = (clopt__mu_matrix){F64, 2 + i, 3 + 40 * i};
    }
    clopt__mu_pack p = pack(m, 2 * CLOPT__MU_S_MAX, 64);
    cr_assert_eq(p.ngroups, 2 * CLOPT__MU_S_MAX);
    for (size_t i = 0; i < 2 * CLOPT__MU_S_MAX; i++) {
        const clopt__mu_group *g = group_of(&p, i);
        cr_assert_eq(g->rows, m[i].rows);
        cr_assert_eq(g->cols, m[i].cols);
        cr_assert_eq(g->count, 1);
    }
    clopt__mu_pack_free(&p);
}

/* Nine shapes: the two whose union adds the least padded work merge, into the oriented
 * (max min, max max) size. Eight squares 64 apart and a 65 x 63 next to the 64 x 64: padding
 * the 65 x 63 (oriented 63 x 65) into 64 x 65 adds about 3.7e4 (k*m*m*(2n + m) units), joining
 * any two squares at least 5.5e6; so it and the 64 x 64 share a group of 64 x 65, stored wide
 * (one tall matrix of 4095 elements against 4096 wide ones). */
Test(muon_pack, ninth_shape_merges_with_its_nearest) {
    const size_t sq[CLOPT__MU_S_MAX] = {64, 128, 192, 256, 320, 384, 448, 512};
    clopt__mu_matrix m[CLOPT__MU_S_MAX + 1];
    for (size_t i = 0; i < CLOPT__MU_S_MAX; i++) m[i] = (clopt__mu_matrix){F32, sq[i], sq[i]};
    m[CLOPT__MU_S_MAX] = (clopt__mu_matrix){F32, 65, 63};
    clopt__mu_pack p = pack(m, CLOPT__MU_S_MAX + 1, 64);
    cr_assert_eq(p.ngroups, CLOPT__MU_S_MAX);
    const clopt__mu_group *g = group_of(&p, 0);
    cr_assert_eq(group_of(&p, CLOPT__MU_S_MAX), g, "65 x 63 merges with 64 x 64");
    cr_assert_eq(g->rows, 64);
    cr_assert_eq(g->cols, 65);
    cr_assert_eq(g->count, 2);
    cr_assert_eq(p.members[g->first], 0);
    cr_assert_eq(p.members[g->first + 1], CLOPT__MU_S_MAX);
    cr_assert_eq(g->xstride, round_chunks(64 * 65));
    cr_assert_eq(g->astride, 64 * 64);
    for (size_t i = 0; i < CLOPT__MU_S_MAX; i++)
        if (i) cr_assert_eq(group_of(&p, i)->count, 1, "square %zu stays alone", sq[i]);
    clopt__mu_pack_free(&p);
}

/* A merged group whose elements are mostly tall is stored tall (N x M): here three 40 x 30
 * against one 30 x 40. Eight far-apart shapes besides them force the merge. */
Test(muon_pack, merged_group_takes_the_majority_orientation) {
    clopt__mu_matrix m[CLOPT__MU_S_MAX + 3];
    size_t n = 0;
    const size_t far[CLOPT__MU_S_MAX - 1] = {2, 5, 9, 100, 200, 300, 400};
    for (size_t i = 0; i < CLOPT__MU_S_MAX - 1; i++)
        m[n++] = (clopt__mu_matrix){F32, far[i], far[i]};
    m[n++] = (clopt__mu_matrix){F32, 40, 30};
    m[n++] = (clopt__mu_matrix){F32, 30, 40};
    m[n++] = (clopt__mu_matrix){F32, 40, 30};
    /* 9 shapes (7 squares, 40 x 30, 30 x 40): the two 40 x 30 orientations merge for free */
    clopt__mu_pack p = pack(m, n, 64);
    cr_assert_eq(p.ngroups, CLOPT__MU_S_MAX);
    const clopt__mu_group *g = group_of(&p, CLOPT__MU_S_MAX - 1);
    cr_assert_eq(group_of(&p, CLOPT__MU_S_MAX), g);
    cr_assert_eq(group_of(&p, CLOPT__MU_S_MAX + 1), g);
    cr_assert_eq(g->count, 3);
    cr_assert_eq(g->rows, 40, "stored tall: most elements are tall");
    cr_assert_eq(g->cols, 30);
    const size_t want[] = {CLOPT__MU_S_MAX - 1, CLOPT__MU_S_MAX, CLOPT__MU_S_MAX + 1};
    for (size_t k = 0; k < 3; k++) cr_assert_eq(p.members[g->first + k], want[k]);
    clopt__mu_pack_free(&p);
}

/* Many shapes: every dtype ends at CLOPT__MU_S_MAX groups, every packed variable in one whose
 * oriented size holds it, and the members of each group in built order. */
Test(muon_pack, many_shapes_fit_their_groups) {
    enum { N = 60 };
    clopt__mu_matrix m[N];
    for (size_t i = 0; i < N; i++)
        m[i] = (clopt__mu_matrix){i % 3 ? F32 : F64, 1 + (i * 7) % 23, 1 + (i * 11) % 31};
    clopt__mu_pack p = pack(m, N, 64);
    cr_assert_eq(p.ngroups, 2 * CLOPT__MU_S_MAX);
    size_t total = 0;
    for (size_t g = 0; g < p.ngroups; g++) {
        const clopt__mu_group *gr = &p.groups[g];
        total += gr->count;
        const size_t lo = gr->rows < gr->cols ? gr->rows : gr->cols;
        const size_t hi = gr->rows < gr->cols ? gr->cols : gr->rows;
        for (size_t k = 0; k < gr->count; k++) {
            const size_t i = p.members[gr->first + k];
            cr_assert_eq(p.group_of[i], g);
            cr_assert_eq(m[i].dtype, gr->dtype);
            const size_t a = m[i].rows < m[i].cols ? m[i].rows : m[i].cols;
            const size_t b = m[i].rows < m[i].cols ? m[i].cols : m[i].rows;
            cr_assert(a <= lo && b <= hi, "variable %zu (%zu x %zu) fits group %zu", i, a, b, g);
            if (k) cr_assert_lt(p.members[gr->first + k - 1], i, "built order");
        }
    }
    cr_assert_eq(total, N);
    clopt__mu_pack_free(&p);
}
