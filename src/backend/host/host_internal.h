/* The host backend's kernels: plain C loops, the numerical reference. Element values are loaded
 * into double, computed in double and stored back in the variable's dtype. */
#ifndef CLOPT_HOST_INTERNAL_H
#define CLOPT_HOST_INTERNAL_H

#include "../backend_internal.h"

/* Arguments of one fused update, resolved to host pointers. */
typedef struct clopt__host_update {
    const clopt__launch *launch;
    char *var, *grad, *slot; /* base pointers */
    void *seg;               /* per-segment reals (clopt__real_dtype) or NULL */
    int block_first;         /* a per-chunk kernel's chunk is the first of its block */
} clopt__host_update;


/* A per-element update: element `w` of the variable, `g` of the gradient, `s` of the slots
 * (slot kind k at s + k * slot_stride), segment `seg`. */
typedef void (*clopt__host_kernel_fn)(const clopt__host_update *u, size_t w, size_t g, size_t s,
                                      uint32_t seg);

/* A per-chunk kernel (reductions): chunk `ch` of block `entry` (a class's own table: entry
 * `entry` of it). */
typedef void (*clopt__host_chunk_fn)(const clopt__host_update *u, const clopt__chunk *ch,
                                     size_t entry);

typedef struct clopt__host_kernel {
    const char *name; /* as in clopt__launch.kernel */
    clopt__host_kernel_fn fn;
    clopt__host_chunk_fn chunk_fn; /* instead of fn */
} clopt__host_kernel;

/* The table of host kernels, NULL-terminated (defined in host_kernels.c). */
extern const clopt__host_kernel clopt__host_kernels[];

/* A segment pass's work on one segment (clopt__segment_launch; partials are doubles on the
 * host, two per block). */
typedef void (*clopt__host_segment_fn)(const clopt__segment_launch *l,
                                       const clopt__segment *range);

typedef struct clopt__host_segment_kernel {
    const char *name; /* as in clopt__segment_launch.kernel */
    clopt__host_segment_fn fn;
} clopt__host_segment_kernel;

/* The table of host segment kernels, NULL-terminated (defined in host_kernels.c). */
extern const clopt__host_segment_kernel clopt__host_segment_kernels[];

/* The gradient after the pipeline's stages (unscale, accumulation, clipping) and the variable
 * after weight decay: the host twins of GRAD() and WEIGHT() in cl/common.cl. */
double clopt__host_grad(const clopt__host_update *u, size_t g, size_t s, uint32_t seg);
double clopt__host_weight(const clopt__host_update *u, size_t w, uint32_t seg);

/* A kernel result as the OpenCL kernels hold it before their store: float16 and bfloat16 are
 * storage formats with float32 arithmetic (cl/common.cl), so their results pass through float32
 * (then clopt__elem_store rounds to the format; a double would round to it directly). */
static inline double clopt__host_arith(clopt_dtype dtype, double x) {
    return dtype == CLOPT_FLOAT16 || dtype == CLOPT_BFLOAT16 ? (double)(float)x : x;
}

/* HOST_SCALARS(K): a host kernel's names for its launch's scalars, from CLOPT_SCALARS_K in
 * cl/scalars.cl (const double lr = scalars[0]), as SCALARS(K) names them in the OpenCL kernel. */
#define HOST_SCALAR_LOCAL_(i, name, doc) const double name = u->launch->scalars[i]; (void)name;
#define HOST_SCALARS(K) CLOPT_SCALARS_##K(HOST_SCALAR_LOCAL_)

/* Shorthands for kernels. */
#define HL(base, i) clopt__elem_load((base), u->launch->dtype, (i))
#define HS(base, i, x) \
    clopt__elem_store((base), u->launch->dtype, (i), clopt__host_arith((u)->launch->dtype, (x)))
#define SLOT_ABS(k) (s + (size_t)(k) * u->launch->slot_stride)
#define SLOT(k) SLOT_ABS((k) + u->launch->slot_base)
#define GRAD() clopt__host_grad(u, g, s, seg)
#define SEG(i) clopt__elem_load(u->seg, clopt__real_dtype(u->launch->dtype), (i))
#define WEIGHT() clopt__host_weight(u, w, seg)

/* Adam's moment estimates in slots 0 and 1 of element s: the host twin of ADAM_MOMENTS in
 * cl/common.cl. *m and *v are the new values as computed (before the store rounds them). */
static inline void clopt__host_adam_moments(const clopt__host_update *u, size_t s, double gv,
                                            double one_minus_b1, double one_minus_b2, double *m,
                                            double *v) {
    double mm = HL(u->slot, SLOT(0)), vv = HL(u->slot, SLOT(1));
    mm += (gv - mm) * one_minus_b1;
    vv += (gv * gv - vv) * one_minus_b2;
    HS(u->slot, SLOT(0), mm);
    HS(u->slot, SLOT(1), vv);
    *m = mm;
    *v = vv;
}
/* Real k (< 2) of the per-block reals of block `entry` (clopt__launch.aux_buf); AUX_ADD adds a
 * chunk's x into it as cl/common.cl's AUX_ADD does (the block's first chunk stores it). */
#define AUX_AT(entry, k) (((double *)u->launch->aux_buf)[2 * (size_t)(entry) + (k)])
#define AUX_ADD(entry, k, x)                                                   \
    do {                                                                       \
        const double x_ = (x);                                                 \
        AUX_AT(entry, k) = u->block_first ? x_ : AUX_AT(entry, k) + x_;        \
    } while (0)

#endif
