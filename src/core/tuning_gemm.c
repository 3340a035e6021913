/* CLBlast's GEMM parameters in the tuning database (written by `clopt tune --gemm`, which runs
 * CLBlast's own tuners). An entry of this kind names the device as the kernel-parameter entries
 * do (tuning.c, same levels and fallbacks) and holds, instead of "params", a "gemm" array:
 *   {"kernel": "XgemmDirect", "precision": 32, "params": {"WGD": 32, "MDIMCD": 16, ...}}
 * Each item must give every parameter of its kernel (CLBlastOverrideParameters refuses a partial
 * set) within range; an entry with any bad item is skipped whole. The parameters are handed to
 * the backend when an optimizer that multiplies matrices (Muon) is built. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core_internal.h"

#define MAX_ITEMS 8
#define MAX_NAMES 16

/* A parameter's range: a flag (0/1), a vector width (a power of two up to 16), or lo..hi. */
typedef struct gemm_param {
    const char *name;
    int lo, hi, pow2;
} gemm_param;

typedef struct gemm_kernel {
    const char *name;
    size_t n;
    gemm_param p[MAX_NAMES];
} gemm_kernel;

/* CLBlast 1.5's kernels whose parameters its GEMM routines read (the names of its database). */
static const gemm_kernel kernels[] = {
    {"Xgemm", 16, {{"GEMMK", 0, 1, 0}, {"KREG", 1, 16, 0}, {"KWG", 1, 256, 0},
                   {"KWI", 1, 16, 0}, {"MDIMA", 1, 256, 0}, {"MDIMC", 1, 256, 0},
                   {"MWG", 1, 256, 0}, {"NDIMB", 1, 256, 0}, {"NDIMC", 1, 256, 0},
                   {"NWG", 1, 256, 0}, {"SA", 0, 1, 0}, {"SB", 0, 1, 0}, {"STRM", 0, 1, 0},
                   {"STRN", 0, 1, 0}, {"VWM", 1, 16, 1}, {"VWN", 1, 16, 1}}},
    {"XgemmDirect", 10, {{"KWID", 1, 16, 0}, {"MDIMAD", 1, 256, 0}, {"MDIMCD", 1, 256, 0},
                         {"NDIMBD", 1, 256, 0}, {"NDIMCD", 1, 256, 0}, {"PADA", 0, 1, 0},
                         {"PADB", 0, 1, 0}, {"VWMD", 1, 16, 1}, {"VWND", 1, 16, 1},
                         {"WGD", 1, 256, 0}}},
    {"GemmRoutine", 1, {{"XGEMM_MIN_INDIRECT_SIZE", 0, 1 << 20, 0}}},
};
#define NKERNELS (sizeof kernels / sizeof *kernels)

typedef struct gemm_set {
    size_t n;
    struct {
        const gemm_kernel *k;
        int precision;
        size_t v[MAX_NAMES];
    } item[MAX_ITEMS];
} gemm_set;

static const gemm_kernel *find_kernel(const char *name) {
    for (size_t i = 0; name && i < NKERNELS; i++)
        if (strcmp(kernels[i].name, name) == 0) return &kernels[i];
    return NULL;
}

/* One item's "params": every name of the kernel, nothing else, each in range. */
static int parse_values(const gemm_kernel *k, json_t *o, size_t *v, char *why, size_t n) {
    if (!json_is_object(o)) {
        snprintf(why, n, "%s: \"params\" is missing or not an object", k->name);
        return -1;
    }
    const char *key;
    json_t *x;
    json_object_foreach(o, key, x) {
        size_t i = 0;
        while (i < k->n && strcmp(k->p[i].name, key) != 0) i++;
        if (i == k->n) {
            snprintf(why, n, "%s: unknown parameter \"%.40s\"", k->name, key);
            return -1;
        }
    }
    for (size_t i = 0; i < k->n; i++) {
        const gemm_param *p = &k->p[i];
        x = json_object_get(o, p->name);
        if (!x) {
            snprintf(why, n, "%s: parameter %s is missing", k->name, p->name);
            return -1;
        }
        const json_int_t y = json_is_integer(x) ? json_integer_value(x) : -1;
        if (!json_is_integer(x) || y < p->lo || y > p->hi || (p->pow2 && (y & (y - 1)))) {
            snprintf(why, n, "%s: %s is not %s in [%d, %d]", k->name, p->name,
                     p->pow2 ? "a power of two" : "an integer", p->lo, p->hi);
            return -1;
        }
        v[i] = (size_t)y;
    }
    return 0;
}

/* A GEMM entry (one with "gemm"); entries with "params" alone are the kernel parameters'. */
static int gemm_entry(json_t *e, void *out, char *why, size_t n) {
    json_t *g = json_object_get(e, "gemm");
    if (!g) return 0;
    gemm_set *s = out;
    if (!json_is_array(g) || json_array_size(g) == 0 || json_array_size(g) > MAX_ITEMS) {
        snprintf(why, n, "\"gemm\" is not an array of 1 to %d items", MAX_ITEMS);
        return -1;
    }
    s->n = json_array_size(g);
    for (size_t i = 0; i < s->n; i++) {
        json_t *it = json_array_get(g, i), *pr = json_object_get(it, "precision");
        const gemm_kernel *k = find_kernel(json_string_value(json_object_get(it, "kernel")));
        if (!k) {
            snprintf(why, n, "\"gemm\" item %zu: \"kernel\" is not Xgemm, XgemmDirect or "
                             "GemmRoutine", i);
            return -1;
        }
        if (!json_is_integer(pr) || (json_integer_value(pr) != 32 && json_integer_value(pr) != 64)) {
            snprintf(why, n, "\"gemm\" item %zu: \"precision\" is not 32 or 64", i);
            return -1;
        }
        s->item[i].k = k;
        s->item[i].precision = (int)json_integer_value(pr);
        if (parse_values(k, json_object_get(it, "params"), s->item[i].v, why, n)) return -1;
    }
    return 1;
}

/* "Kernel/precision: NAME=V ...; ..." */
static char *describe(const gemm_set *s) {
    size_t cap = 64;
    for (size_t i = 0; i < s->n; i++) cap += 32 + s->item[i].k->n * 40;
    char *t = malloc(cap);
    size_t used = 0;
    for (size_t i = 0; t && i < s->n; i++) {
        used += (size_t)snprintf(t + used, cap - used, "%s%s/%d:", i ? "; " : "",
                                 s->item[i].k->name, s->item[i].precision);
        for (size_t j = 0; j < s->item[i].k->n; j++)
            used += (size_t)snprintf(t + used, cap - used, " %s=%zu", s->item[i].k->p[j].name,
                                     s->item[i].v[j]);
    }
    if (t) t[used] = '\0';
    return t;
}

/* Hands the set to the backend; NULL, or why it was not applied (malloc'd). */
static char *apply(clopt_context *ctx, const gemm_set *s) {
    if (!ctx->ops->gemm_override)
        return clopt__format("the %s backend does not use CLBlast", ctx->ops->name);
    for (size_t i = 0; i < s->n; i++) {
        const char *names[MAX_NAMES];
        for (size_t j = 0; j < s->item[i].k->n; j++) names[j] = s->item[i].k->p[j].name;
        if (ctx->ops->gemm_override(ctx, s->item[i].k->name, s->item[i].precision,
                                    s->item[i].k->n, names, s->item[i].v) != CLOPT_OK) {
            char *why = clopt__strdup(clopt_context_last_error(ctx));
            clopt__clear_error(ctx);
            return why ? why : clopt__strdup("out of memory");
        }
    }
    return NULL;
}

void clopt__gemm_tuning_apply(clopt_context *ctx) {
    if (ctx->gemm_state) return;
    static gemm_set empty;
    gemm_set s = empty;
    int found;
    char *origin = clopt__tuning_lookup(ctx, gemm_entry, &s, "CLBlast's own parameters", &found);
    char *params = found ? describe(&s) : clopt__strdup("");
    char *why = found ? apply(ctx, &s) : NULL;
    if (why) { /* the entry's parameters stay visible; the origin says they are not in force */
        char *o = clopt__format("%s; not applied: %s", origin ? origin : "", why);
        free(origin);
        origin = o;
        free(why);
    }
    ctx->gemm_state = 1;
    ctx->gemm_params = params;
    ctx->gemm_origin = origin;
}

clopt_status clopt_context_gemm_params(clopt_context *ctx, const char **params,
                                       const char **origin) {
    if (!ctx || !params) return CLOPT_ERR_INVALID_ARGUMENT;
    clopt__gemm_tuning_apply(ctx);
    *params = ctx->gemm_params ? ctx->gemm_params : "";
    if (origin) *origin = ctx->gemm_origin ? ctx->gemm_origin : "(out of memory)";
    return CLOPT_OK;
}

clopt_status clopt_context_gemm_keep_defaults(clopt_context *ctx) {
    if (!ctx) return CLOPT_ERR_INVALID_ARGUMENT;
    if (ctx->gemm_state == 2) return CLOPT_OK;
    if (ctx->gemm_state)
        return clopt__fail(ctx, CLOPT_ERR_BAD_STATE,
                           "clopt_context_gemm_keep_defaults: the context's GEMM parameters were "
                           "already looked up (%s); CLBlast cannot take them back",
                           ctx->gemm_origin ? ctx->gemm_origin : "?");
    char *params = clopt__strdup("");
    char *origin = clopt__strdup("CLBlast's own parameters (the tuning database's GEMM entries "
                                 "skipped: clopt_context_gemm_keep_defaults)");
    if (!params || !origin) {
        free(params);
        free(origin);
        return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "clopt_context_gemm_keep_defaults");
    }
    ctx->gemm_state = 2;
    ctx->gemm_params = params;
    ctx->gemm_origin = origin;
    return CLOPT_OK;
}
