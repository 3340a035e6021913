/* The host backend's kernels: plain C loops, the numerical reference. Element values are loaded
 * into double, computed in double and stored back in the variable's dtype. */
#ifndef CLOPT_HOST_INTERNAL_H
#define CLOPT_HOST_INTERNAL_H

#include "../backend_internal.h"

/* Arguments of one fused update, resolved to host pointers. */
typedef struct clopt__host_update {
    const clopt__launch *launch;
    char *var, *grad, *slot; /* base pointers */
    const float *seg;        /* per-segment scalars or NULL */
} clopt__host_update;

/* Loads and stores one element of `dtype` (float16 and bfloat16 round to nearest even). */
double clopt__host_load(const void *base, clopt_dtype dtype, size_t i);
void clopt__host_store(void *base, clopt_dtype dtype, size_t i, double x);

/* A per-element update: element `w` of the variable, `g` of the gradient, `s` of the slots
 * (slot kind k at s + k * slot_stride), segment `seg`. */
typedef void (*clopt__host_kernel_fn)(const clopt__host_update *u, size_t w, size_t g, size_t s,
                                      uint32_t seg);

typedef struct clopt__host_kernel {
    const char *name;
    clopt__host_kernel_fn fn;
} clopt__host_kernel;

/* The table of host kernels, NULL-terminated (defined in host_kernels.c). */
extern const clopt__host_kernel clopt__host_kernels[];

/* Shorthands for kernels. */
#define HL(base, i) clopt__host_load((base), u->launch->dtype, (i))
#define HS(base, i, x) clopt__host_store((base), u->launch->dtype, (i), (x))
#define SLOT(k) (s + (size_t)(k) * u->launch->slot_stride)

#endif
