/* Muon's shape-group packer (src/optim/muon.c describes where it fits): the Muon-path
 * matrices grouped by (dtype, rows, cols), groups merged where a dtype has more than
 * CLOPT__MU_S_MAX (zero-padded to a common size), and each real dtype's scratch laid out so
 * that the products over a group are one batched matrix product. Plain host code: no device,
 * no optimizer (tests/test_optim_muon_pack.c). */
#ifndef CLOPT_MUON_PACK_H
#define CLOPT_MUON_PACK_H

#include <stddef.h>
#include "clopt/variable.h"

/* At most CLOPT__MU_S_MAX shape groups per dtype: with more distinct (dtype, rows, cols) shapes
 * among the Muon-path variables, groups are merged (merge_groups) and their matrices zero-padded to a
 * common size, so that the products of a step stay a constant number whatever the shapes. */
#define CLOPT__MU_S_MAX 8

/* Muon-path variables stored at one size, in built order: their scratch matrices lie one after
 * another at fixed strides, so that a run of them is one batched matrix product. rows x cols is
 * the stored (row-major) matrix: for a group of one (dtype, rows, cols) shape exactly that shape;
 * for merged shapes (more than CLOPT__MU_S_MAX of them) the oriented (after Muon's rows > cols
 * transposition) M x N = (max min(rows, cols), max max(rows, cols)) of its shapes, stored as M x N,
 * or as N x M when most of its elements are tall (rows > cols) and N > M; each matrix is then
 * zero outside its own block. rows > cols: the products use transpose flags. */
typedef struct clopt__mu_group {
    clopt_dtype dtype;
    size_t rows, cols;
    size_t first, count;      /* members[first .. first + count - 1]: built indices */
    size_t x0, xstride;       /* member r's X (and Y) start at x0 + r*xstride: its padded size */
    size_t a0, astride;       /* member r's A (and B) start at a0 + r*astride: min(rows, cols)^2 */
} clopt__mu_group;

/* A built variable as the packer sees it: its matrix's dtype and shape; rows = 0 leaves it out
 * (not on the Muon path, or empty). */
typedef struct clopt__mu_matrix {
    clopt_dtype dtype;
    size_t rows, cols;
} clopt__mu_matrix;

/* The packing of n built variables. */
typedef struct clopt__mu_pack {
    clopt__mu_group *groups; /* ngroups (at most n), in order of their first member */
    size_t ngroups;
    size_t *group_of;        /* per built variable: its group, or SIZE_MAX */
    size_t *members;         /* the groups' members (built indices), group after group */
    /* Per real dtype (0 float32, 1 float64: float16 and bfloat16 are iterated in float32): the
     * reals of X (and Y), a header of whole chunks then every group's matrices, 0 when the dtype
     * has no group; the reals of A (and B), every group's min(rows, cols)^2 blocks. */
    size_t xlen[2], alen[2];
} clopt__mu_pack;

/* The real dtype's index in clopt__mu_pack's xlen and alen: 1 for float64, else 0. */
static inline int clopt__mu_real_index(clopt_dtype d) { return d == CLOPT_FLOAT64; }

/* Packs m[0 .. n-1] into p (allocating its arrays); each real dtype's header takes header_bytes,
 * rounded up to whole chunks of reals. Returns 0, or -1 out of memory (p then holds nothing). */
int clopt__mu_pack_build(const clopt__mu_matrix *m, size_t n, size_t header_bytes,
                         clopt__mu_pack *p);
void clopt__mu_pack_free(clopt__mu_pack *p);

#endif
