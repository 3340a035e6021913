/* `clopt bench`'s C side: the hand-written OpenMP C loops (bench_loops.h, included once per
 * element type) that clopt's steps are compared with, their arrays, and the optimizers' table.
 * Built with the bench flags (tools/CMakeLists.txt: -fno-math-errno, optionally -march=native). */
#define _XOPEN_SOURCE 700 /* posix_memalign */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "bench_internal.h"

#include <tgmath.h>
#define BT float
#define BT_ID 0
#define BS(x) x##_f32
#include "bench_loops.h"
#undef BT
#undef BT_ID
#undef BS
#define BT double
#define BT_ID 1
#define BS(x) x##_f64
#include "bench_loops.h"
#undef BT
#undef BT_ID
#undef BS

#ifndef CLOPT_BENCH_BASELINE
#define CLOPT_BENCH_BASELINE "the build's own flags"
#endif
/* The instruction set the loops were compiled for, from the compiler's own macros. */
#if defined(__AVX512F__)
#define BENCH_ISA_ "AVX-512"
#elif defined(__AVX2__)
#define BENCH_ISA_ "AVX2"
#elif defined(__SSE2__)
#define BENCH_ISA_ "SSE2"
#else
#define BENCH_ISA_ "scalar"
#endif

const char *bench_c_baseline(void) { return CLOPT_BENCH_BASELINE ", " BENCH_ISA_; }

const bench_opt bench_opts[] = {
    {"SGD", "\"learning_rate\": 0.01, \"momentum\": 0.9", 0.01, 1, 0, 0, 0, 5, 1.15, c_sgd_f32,
     c_sgd_f64},
    {"Adam", "\"learning_rate\": 0.001", 0.001, 2, 0, 0, 0, 7, 1.15, c_adam_f32, c_adam_f64},
    {"AdamW", "\"learning_rate\": 0.001", 0.001, 2, 0, 0, 0, 7, 1.15, c_adamw_f32, c_adamw_f64},
    {"RMSprop", "\"learning_rate\": 0.001", 0.001, 1, 0, 0, 0, 5, 1.15, c_rmsprop_f32,
     c_rmsprop_f64},
    {"Adagrad", "\"learning_rate\": 0.001", 0.001, 1, 0.1, 0, 0, 5, 1.15, c_adagrad_f32,
     c_adagrad_f64},
    {"Adadelta", "\"learning_rate\": 0.001", 0.001, 2, 0, 0, 0, 7, 1.15, c_adadelta_f32,
     c_adadelta_f64},
    {"Adamax", "\"learning_rate\": 0.001", 0.001, 2, 0, 0, 0, 7, 1.15, c_adamax_f32,
     c_adamax_f64},
    {"Nadam", "\"learning_rate\": 0.001", 0.001, 2, 0, 0, 0, 7, 1.15, c_nadam_f32, c_nadam_f64},
    {"Ftrl", "\"learning_rate\": 0.001", 0.001, 2, 0.1, 0, 0, 7, 1.15, c_ftrl_f32, c_ftrl_f64},
    {"Lion", "\"learning_rate\": 0.001", 0.001, 1, 0, 0, 0, 5, 1.15, c_lion_f32, c_lion_f64},
    {"Lamb", "\"learning_rate\": 0.001", 0.001, 2, 0, 0, 0, 10, 1.3, c_lamb_f32, c_lamb_f64},
    {"ScheduleFreeAdamW", "\"learning_rate\": 0.0025", 0.0025, 2, 0, 1, 0, 7, 1.15,
     c_sfadamw_f32, c_sfadamw_f64},
    {"Adafactor", "\"learning_rate\": 0.001", 0.001, 1, 0, 0, 1, 7, 1.3, c_adafactor_f32,
     c_adafactor_f64},
    /* A program's class, registered by the bench (bench_adabelief.c): Adam's traffic. */
    {"AdaBelief", "\"learning_rate\": 0.001", 0.001, 2, 0, 0, 0, 7, 1.15, c_adabelief_f32,
     c_adabelief_f64},
    /* No C loop: Muon's step on a matrix is a Newton-Schulz iteration, matrix products of about
     * 30*R*C*min(R, C) flops, so its limit is the matrix-multiply rate, not memory:
     * `--optimizer Muon` alone measures it against the device's GEMM instead (bench_muon.c). */
    {"Muon", "\"learning_rate\": 0.001", 0.001, 0, 0, 0, 0, 0, 0, NULL, NULL},
};
const size_t bench_nopts = sizeof bench_opts / sizeof *bench_opts;

double bench_target(const bench_opt *o, size_t tensors, size_t n) {
    return tensors && n / tensors < 1024 && o->target < 1.3 ? 1.3 : o->target;
}

/* A deterministic value in [-1, 1) for element i of stream `seed` (splitmix64). */
static double rnd(uint64_t seed, uint64_t i) {
    uint64_t z = seed * 0x9e3779b97f4a7c15ULL + i + 0x632be59bd9b4e019ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

/* The matrix shape of a variable of n elements: rows the largest divisor of n not above sqrt(n). */
static void matrix_shape(size_t n, size_t *rows, size_t *cols) {
    size_t r = (size_t)sqrt((double)n);
    while (r > 1 && n % r) r--;
    *rows = r ? r : 1;
    *cols = n / *rows;
}

const bench_opt *bench_find_opt(const char *name) {
    for (size_t i = 0; i < bench_nopts; i++)
        if (!strcasecmp(bench_opts[i].name, name)) return &bench_opts[i];
    return NULL;
}

void cbench_free(cbench *b) {
    free(b->toff);
    free(b->trows);
    free(b->tcols);
    free(b->tblk);
    free(b->blk);
    free(b->w);
    free(b->g);
    for (int k = 0; k < 3; k++) free(b->s[k]);
    free(b->tfac);
    free(b->tfac2);
    free(b->tfac3);
    free(b->tfac4);
    free(b->bpart);
    free(b->af_r);
    free(b->af_c);
    free(b->af_colpart);
    free(b->row_off);
    free(b->col_off);
    free(b->colpart_off);
    memset(b, 0, sizeof *b);
}

static void *big_alloc(size_t bytes) {
    void *p = NULL;
    return posix_memalign(&p, 64, bytes ? bytes : 64) == 0 ? p : NULL;
}

/* The C side's arrays for `tensors` variables over n elements, filled (in parallel: first touch
 * by the threads that will use them) with the same values as clopt's variables. */
int cbench_init(cbench *b, const bench_opt *o, clopt_dtype dt, size_t n, size_t tensors,
                       int clip) {
    memset(b, 0, sizeof *b);
    const size_t es = clopt_dtype_size(dt), K = tensors;
    b->n = n;
    b->ntensors = K;
    b->clip = clip;
    b->clipv = clip == CB_CLIP_VALUE ? 0.5 : 1.0;
    b->lr = (double)(float)o->lr;
    b->u_product = 1.0;
    b->toff = malloc((K + 1) * sizeof *b->toff);
    b->trows = malloc(K * sizeof *b->trows);
    b->tcols = malloc(K * sizeof *b->tcols);
    b->tblk = malloc((K + 1) * sizeof *b->tblk);
    b->row_off = malloc((K + 1) * sizeof *b->row_off);
    b->col_off = malloc((K + 1) * sizeof *b->col_off);
    if (!b->toff || !b->trows || !b->tcols || !b->tblk || !b->row_off || !b->col_off) return -1;
    size_t nb = 0;
    b->row_off[0] = b->col_off[0] = 0;
    for (size_t k = 0; k < K; k++) {
        b->toff[k] = k * (n / K);
        const size_t sz = (k + 1 < K ? (k + 1) * (n / K) : n) - b->toff[k];
        matrix_shape(sz, &b->trows[k], &b->tcols[k]);
        const size_t rows_per = b->tcols[k] >= CB_BLOCK_ELEMS ? 1 : CB_BLOCK_ELEMS / b->tcols[k];
        nb += (b->trows[k] + rows_per - 1) / rows_per;
        b->row_off[k + 1] = b->row_off[k] + b->trows[k];
        b->col_off[k + 1] = b->col_off[k] + b->tcols[k];
    }
    b->toff[K] = n;
    b->blk = malloc(nb * sizeof *b->blk);
    b->colpart_off = malloc((nb + 1) * sizeof *b->colpart_off);
    b->bpart = malloc(2 * nb * sizeof *b->bpart);
    if (!b->blk || !b->colpart_off || !b->bpart) return -1;
    nb = 0;
    b->colpart_off[0] = 0;
    for (size_t k = 0; k < K; k++) {
        const size_t cols = b->tcols[k];
        const size_t rows_per = cols >= CB_BLOCK_ELEMS ? 1 : CB_BLOCK_ELEMS / cols;
        b->tblk[k] = nb;
        for (size_t r = 0; r < b->trows[k]; r += rows_per) {
            const size_t r1 = r + rows_per < b->trows[k] ? r + rows_per : b->trows[k];
            b->blk[nb] = (cb_block){b->toff[k] + r * cols, b->toff[k] + r1 * cols, k};
            b->colpart_off[nb + 1] = b->colpart_off[nb] + (o->factored ? cols : 0);
            nb++;
        }
    }
    b->tblk[K] = nb;
    b->nblocks = nb;
    b->tfac = calloc(K, sizeof *b->tfac);
    b->tfac2 = calloc(K, sizeof *b->tfac2);
    b->tfac3 = calloc(K, sizeof *b->tfac3);
    b->tfac4 = calloc(K, sizeof *b->tfac4);
    b->w = big_alloc(n * es);
    b->g = big_alloc(n * es);
    if (!b->tfac || !b->tfac2 || !b->tfac3 || !b->tfac4 || !b->w || !b->g) return -1;
    for (int k = 0; k < o->nslots; k++)
        if (!(b->s[k] = big_alloc(n * es))) return -1;
    if (o->factored) {
        b->af_r = calloc(b->row_off[K] ? b->row_off[K] : 1, es);
        b->af_c = calloc(b->col_off[K] ? b->col_off[K] : 1, es);
        b->af_colpart = big_alloc(b->colpart_off[nb] * es);
        if (!b->af_r || !b->af_c || !b->af_colpart) return -1;
    }
    const double s0 = o->slot_init;
    const int copy = o->slot0_copy, nslots = o->nslots;
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < nb; k++)
        for (size_t i = b->blk[k].lo; i < b->blk[k].hi; i++) {
            const double w = rnd(1, i), g = rnd(2, i);
            cli_store(b->w, dt, i, w);
            cli_store(b->g, dt, i, g);
            for (int j = 0; j < nslots; j++) cli_store(b->s[j], dt, i, j == 0 && copy ? w : j ? 0 : s0);
        }
    return 0;
}

void cbench_step(cbench *b, const bench_opt *o, clopt_dtype dt) {
    b->t++;
    (dt == CLOPT_FLOAT64 ? o->f64 : o->f32)(b);
}
