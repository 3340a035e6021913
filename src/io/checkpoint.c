/* Checkpoints: optimizer and model state as safetensors tensors (include/clopt/checkpoint.h).
 *
 * A save or load first makes a plan: one item per tensor, with its Keras name, safetensors dtype
 * and shape, and where its value lives (a device variable, or a host-side entry of the
 * optimizer's variable list). Saving streams the items into safetensors.c's durable writer.
 * Loading reads and validates the whole file, matches it item by item, and only then writes. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "clopt/checkpoint.h"
#include "clopt/version.h"
#include "core/core_internal.h"
#include "io_internal.h"
#include "optim/json_internal.h"
#include "optim/optim_access.h"

#define OPT_PREFIX "optimizer/vars/"
#define MODEL_PREFIX "model/"

typedef struct ck_item {
    char *name; /* tensor name, owned */
    clopt__st_dtype dtype;
    int ndim;
    int64_t shape[CLOPT_MAX_NDIM];
    clopt_variable *var;        /* a slot or model variable; NULL for a host-side entry */
    clopt__entry_info entry;    /* optimizer entries: the list entry */
    size_t opt_index;           /* optimizer entries: index in clopt_optimizer_variable order */
    int is_opt;
} ck_item;

typedef struct ck_plan {
    clopt_context *ctx;
    const clopt_optimizer *opt;
    const char *fn; /* the public function, for messages */
    ck_item *items;
    size_t n;
} ck_plan;

static void plan_free(ck_plan *p) {
    for (size_t i = 0; i < p->n; i++) free(p->items[i].name);
    free(p->items);
    p->items = NULL;
    p->n = 0;
}

/* The file dtype of a host-side entry. */
static clopt__st_dtype host_dtype(const clopt__entry_info *e) {
    switch (e->kind) {
    case CLOPT__OV_ITERATION: return CLOPT__ST_I64;
    case CLOPT__OV_LR: return CLOPT__ST_F32;
    case CLOPT__OV_SCALAR: return e->integer ? CLOPT__ST_I64 : clopt__st_from_clopt(e->dtype);
    case CLOPT__OV_SLOT: break;
    }
    return clopt__st_from_clopt(e->var->dtype);
}

static clopt_status check_vars(clopt_context *ctx, const char *fn, clopt_variable *const *vars,
                               size_t n) {
    if (n && !vars) return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT, "%s: vars is NULL", fn);
    for (size_t i = 0; i < n; i++) {
        if (!vars[i])
            return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT, "%s: variable %zu is NULL", fn, i);
        if (vars[i]->ctx != ctx)
            return clopt__fail(ctx, CLOPT_ERR_CONTEXT_MISMATCH,
                               "%s: variable %zu ('%s') belongs to another context", fn, i,
                               vars[i]->name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(vars[j]->name, vars[i]->name) == 0)
                return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT,
                                   "%s: variables %zu and %zu are both named '%s' (checkpoint "
                                   "tensors are named by variable names)",
                                   fn, j, i, vars[i]->name);
    }
    return CLOPT_OK;
}

/* Makes the plan: model variables first (Keras writes layers before the optimizer), then the
 * optimizer's variable list. */
static clopt_status plan_make(ck_plan *p, clopt_context *ctx, const char *fn,
                              const clopt_optimizer *opt, clopt_variable *const *vars, size_t n) {
    memset(p, 0, sizeof *p);
    p->ctx = ctx;
    p->opt = opt;
    p->fn = fn;
    if (opt && !clopt__optimizer_is_built(opt))
        return clopt__fail(ctx, CLOPT_ERR_NOT_BUILT,
                           "%s: the optimizer '%s' is not built; call clopt_optimizer_build "
                           "first (Keras would warn and skip; clopt refuses)",
                           fn, clopt_optimizer_name(opt));
    clopt_status st = check_vars(ctx, fn, vars, n);
    if (st != CLOPT_OK) return st;
    size_t nopt = opt ? clopt_optimizer_variable_count(opt) : 0;
    p->items = calloc(n + nopt + 1, sizeof *p->items);
    if (!p->items) return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
    for (size_t i = 0; i < n; i++) {
        ck_item *it = &p->items[p->n++];
        it->name = clopt__format(MODEL_PREFIX "%s", vars[i]->name);
        it->var = vars[i];
        it->dtype = clopt__st_from_clopt(vars[i]->dtype);
        it->ndim = vars[i]->ndim;
        memcpy(it->shape, vars[i]->shape, sizeof it->shape);
        if (!it->name) goto oom;
    }
    for (size_t i = 0; i < nopt; i++) {
        ck_item *it = &p->items[p->n++];
        it->is_opt = 1;
        it->opt_index = i;
        it->name = clopt__format(OPT_PREFIX "%zu", i);
        if (!it->name || clopt__optimizer_entry_info(opt, i, &it->entry) != CLOPT_OK) goto oom;
        it->var = it->entry.var;
        it->dtype = host_dtype(&it->entry);
        if (it->var) {
            it->ndim = it->var->ndim;
            memcpy(it->shape, it->var->shape, sizeof it->shape);
        }
    }
    return CLOPT_OK;
oom:
    plan_free(p);
    return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
}

static size_t item_bytes(const ck_item *it) {
    size_t b = clopt__st_dtype_size(it->dtype);
    for (int d = 0; d < it->ndim; d++) b *= (size_t)it->shape[d];
    return b;
}

static void store_le64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static clopt_status fill_item(void *user, size_t i, void *dst, size_t nbytes, char *err,
                              size_t errn) {
    ck_plan *p = user;
    const ck_item *it = &p->items[i];
    if (it->var) {
        clopt_status st = clopt_variable_read(it->var, dst, nbytes);
        if (st != CLOPT_OK) {
            snprintf(err, errn, "reading variable '%s' for tensor '%s' failed: %s", it->var->name,
                     it->name, p->ctx->error ? p->ctx->error : clopt_status_string(st));
            return st;
        }
        clopt__to_le(dst, clopt__st_dtype_size(it->dtype), nbytes / clopt__st_dtype_size(it->dtype));
        return CLOPT_OK;
    }
    const clopt__entry_info *e = &it->entry;
    double real;
    int64_t count;
    clopt__optimizer_host_get(p->opt, it->opt_index, &real, &count);
    if (e->integer) {
        store_le64(dst, (uint64_t)count);
    } else {
        clopt__elem_store(dst, e->dtype, 0, real); /* the learning rate's is float32 */
        clopt__to_le(dst, nbytes, 1);
    }
    return CLOPT_OK;
}

/* The "optimizer_variables" metadata: a JSON array of the entries' Keras paths. */
static char *paths_json(const ck_plan *p) {
    json_t *a = json_array();
    int bad = !a;
    for (size_t i = 0; !bad && i < p->n; i++)
        if (p->items[i].is_opt)
            bad |= json_array_append_new(a, json_string(p->items[i].entry.path));
    char *s = bad ? NULL : clopt__json_dump(a);
    json_decref(a);
    return s;
}

/* The context to report to: the optimizer's, else the first variable's (NULL if none). */
static clopt_context *context_of(const clopt_optimizer *opt, clopt_variable *const *vars,
                                 size_t n) {
    if (opt) return clopt__optimizer_context(opt);
    for (size_t i = 0; vars && i < n; i++)
        if (vars[i]) return vars[i]->ctx;
    return NULL;
}

clopt_status clopt__checkpoint_save(const clopt_optimizer *opt, clopt_variable *const *vars,
                                   size_t n, const char *path, const char *fn,
                                   clopt__st_writer_fn writer) {
    clopt_context *ctx = context_of(opt, vars, n);
    if (!ctx) return CLOPT_ERR_INVALID_ARGUMENT;
    if (!path || !*path)
        return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT, "%s: path is %s", fn,
                           path ? "empty" : "NULL");
    clopt_status st = clopt__optimizer_sync(opt, 0); /* the device's count and scale */
    if (st != CLOPT_OK) return st;
    ck_plan p;
    if ((st = plan_make(&p, ctx, fn, opt, vars, n)) != CLOPT_OK) return st;
    clopt__st_out *outs = calloc(p.n + 1, sizeof *outs);
    char *config = NULL, *paths = NULL;
    if (opt) {
        st = clopt_optimizer_get_config(opt, &config);
        paths = paths_json(&p);
        if (st == CLOPT_OK && !paths) st = CLOPT_ERR_OUT_OF_MEMORY;
    }
    if (st == CLOPT_OK && !outs) st = CLOPT_ERR_OUT_OF_MEMORY;
    if (st != CLOPT_OK) {
        free(outs);
        free(config);
        free(paths);
        plan_free(&p);
        return clopt__fail(ctx, st, "%s: %s: %s", fn, path, clopt_status_string(st));
    }
    for (size_t i = 0; i < p.n; i++)
        outs[i] = (clopt__st_out){p.items[i].name, p.items[i].dtype, p.items[i].ndim,
                                  p.items[i].shape};
    char fv[16];
    snprintf(fv, sizeof fv, "%d", CLOPT_CHECKPOINT_FORMAT_VERSION);
    const char *meta[] = {"format",           "clopt",    "format_version",      fv,
                          "clopt_version",    CLOPT_VERSION_STRING, "optimizer_config", config,
                          "optimizer_variables", paths};
    char err[CLOPT__IO_ERRN] = "";
    clopt__clear_error(ctx);
    st = writer(path, outs, p.n, meta, opt ? 5 : 3, fill_item, &p, err, sizeof err);
    if (st != CLOPT_OK) clopt__fail(ctx, st, "%s: %s", fn, err);
    free(outs);
    free(config);
    free(paths);
    plan_free(&p);
    return st;
}

clopt_status clopt_optimizer_save(const clopt_optimizer *opt, const char *path) {
    if (!opt) return CLOPT_ERR_INVALID_ARGUMENT;
    return clopt__checkpoint_save(opt, NULL, 0, path, "clopt_optimizer_save", clopt__st_write);
}

clopt_status clopt_checkpoint_save(const clopt_optimizer *opt, clopt_variable *const *vars,
                                   size_t n, const char *path) {
    return clopt__checkpoint_save(opt, vars, n, path, "clopt_checkpoint_save", clopt__st_write);
}

/* ---- loading ---- */

static int has_prefix(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static uint64_t load_le(const unsigned char *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;) v = (v << 8) | p[i];
    return v;
}

/* Compares the optimizer config's class (and a LossScaleOptimizer's inner class) with the file's.
 * Returns 0 if they agree, else -1 after writing the message. */
static int classes_differ(const json_t *file, const json_t *mine, const char *what, char *msg,
                          size_t n) {
    const char *a = json_string_value(json_object_get(file, "class_name"));
    const char *b = json_string_value(json_object_get(mine, "class_name"));
    if (!a || !b || strcasecmp(a, b) != 0) {
        snprintf(msg, n, "the file holds the state of %s of class '%s', this one is '%s'", what,
                 a ? a : "(none)", b ? b : "?");
        return -1;
    }
    const json_t *fi = json_object_get(json_object_get(file, "config"), "inner_optimizer");
    const json_t *mi = json_object_get(json_object_get(mine, "config"), "inner_optimizer");
    if (fi && mi) return classes_differ(fi, mi, "an inner optimizer", msg, n);
    return 0;
}

/* Checks the metadata against the optimizer. */
static clopt_status check_metadata(const ck_plan *p, const clopt_optimizer *opt,
                                   const clopt__st_file *f, const char *path) {
    clopt_context *ctx = p->ctx;
    const char *fv = clopt__st_meta(f, "format_version");
    if (fv) {
        char *end;
        long v = strtol(fv, &end, 10);
        if (*fv == '\0' || *end != '\0' || v < 1)
            return clopt__fail(ctx, CLOPT_ERR_CORRUPT_FILE,
                               "%s: %s: __metadata__ format_version '%s' is not a positive "
                               "integer",
                               p->fn, path, fv);
        if (v > CLOPT_CHECKPOINT_FORMAT_VERSION)
            return clopt__fail(ctx, CLOPT_ERR_FILE_MISMATCH,
                               "%s: %s: checkpoint format version %ld is newer than this clopt's "
                               "(%d)",
                               p->fn, path, v, CLOPT_CHECKPOINT_FORMAT_VERSION);
    }
    const char *cfg = opt ? clopt__st_meta(f, "optimizer_config") : NULL;
    if (!cfg) return CLOPT_OK;
    json_error_t je;
    json_t *fj = json_loads(cfg, 0, &je);
    if (!fj || !json_is_object(fj)) {
        json_decref(fj);
        return clopt__fail(ctx, CLOPT_ERR_CORRUPT_FILE,
                           "%s: %s: __metadata__ optimizer_config is not a JSON object%s%s", p->fn,
                           path, fj ? "" : ": ", fj ? "" : je.text);
    }
    json_t *mine = clopt__optimizer_to_json(opt);
    if (!mine) {
        json_decref(fj);
        return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "%s: out of host memory", p->fn);
    }
    char msg[512];
    int differ = classes_differ(fj, mine, "an optimizer", msg, sizeof msg);
    json_decref(fj);
    json_decref(mine);
    if (differ)
        return clopt__fail(ctx, CLOPT_ERR_FILE_MISMATCH, "%s: %s: %s", p->fn, path, msg);
    return CLOPT_OK;
}

static const char *item_what(const ck_item *it) {
    return it->is_opt ? it->entry.path : it->var->name;
}

/* Matches the file's tensors with the plan. */
static clopt_status match_tensors(const ck_plan *p, int want_opt, int want_model,
                                  const clopt__st_file *f, const clopt__st_tensor **found,
                                  const char *path) {
    clopt_context *ctx = p->ctx;
    const char *fn = p->fn;
    size_t nopt = 0, nmodel = 0, fopt = 0, fmodel = 0;
    for (size_t i = 0; i < p->n; i++) p->items[i].is_opt ? nopt++ : nmodel++;
    for (size_t i = 0; i < f->ntensors; i++) {
        if (has_prefix(f->tensors[i].name, "optimizer/")) fopt++;
        else if (has_prefix(f->tensors[i].name, MODEL_PREFIX)) fmodel++;
    }
    if (want_opt && fopt != nopt)
        return clopt__fail(ctx, CLOPT_ERR_FILE_MISMATCH,
                           "%s: %s: the file holds %zu optimizer tensors, the optimizer has %zu "
                           "variables",
                           fn, path, fopt, nopt);
    for (size_t i = 0; i < p->n; i++) {
        const ck_item *it = &p->items[i];
        const clopt__st_tensor *t = clopt__st_find(f, it->name);
        found[i] = t;
        if (!t)
            return clopt__fail(ctx, CLOPT_ERR_FILE_MISMATCH,
                               "%s: %s: the file has no tensor '%s' (for '%s')", fn, path,
                               it->name, item_what(it));
        /* An integer entry (the iteration counter, an integer class scalar) may be int32, as
         * Keras writes it on JAX and torch. */
        int integer = it->is_opt && it->dtype == CLOPT__ST_I64;
        if (t->dtype != it->dtype && !(integer && t->dtype == CLOPT__ST_I32))
            return clopt__fail(ctx, CLOPT_ERR_FILE_MISMATCH,
                               "%s: %s: tensor '%s' is %s, but '%s' is %s", fn, path, it->name,
                               clopt__st_dtype_name(t->dtype), item_what(it),
                               clopt__st_dtype_name(it->dtype));
        int same = t->ndim == it->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == it->shape[d];
        if (!same) {
            char a[256], b[256];
            return clopt__fail(ctx, CLOPT_ERR_FILE_MISMATCH,
                               "%s: %s: tensor '%s' has shape %s, but '%s' has shape %s", fn,
                               path, it->name, clopt__st_shape_str(t->ndim, t->shape, a, sizeof a),
                               item_what(it), clopt__st_shape_str(it->ndim, it->shape, b, sizeof b));
        }
    }
    /* Every tensor of a namespace asked for must be one of the plan's. */
    if (want_model && fmodel != nmodel) {
        for (size_t i = 0; i < f->ntensors; i++) {
            const char *name = f->tensors[i].name;
            if (!has_prefix(name, MODEL_PREFIX)) continue;
            int known = 0;
            for (size_t j = 0; j < p->n && !known; j++) known = strcmp(p->items[j].name, name) == 0;
            if (!known)
                return clopt__fail(ctx, CLOPT_ERR_FILE_MISMATCH,
                                   "%s: %s: the file's tensor '%s' matches none of the %zu "
                                   "variables given",
                                   fn, path, name, nmodel);
        }
    }
    return CLOPT_OK;
}

/* Value checks: a non-negative iteration counter, a finite learning rate. Reads the host-side
 * values into vals[i]. */
static clopt_status check_values(const ck_plan *p, const clopt__st_file *f,
                                 const clopt__st_tensor **found, double *vals, const char *path) {
    for (size_t i = 0; i < p->n; i++) {
        const ck_item *it = &p->items[i];
        if (it->var) continue;
        const clopt__st_tensor *t = found[i];
        const unsigned char *d = f->data + t->begin;
        const clopt__entry_info *e = &it->entry;
        size_t es = clopt__st_dtype_size(t->dtype);
        if (t->dtype == CLOPT__ST_I64 || t->dtype == CLOPT__ST_I32) {
            uint64_t u = load_le(d, es);
            int64_t v = es == 8 ? (int64_t)u : (int64_t)(int32_t)(uint32_t)u;
            if (v < 0 || v > ((int64_t)1 << 53))
                return clopt__fail(p->ctx, CLOPT_ERR_CORRUPT_FILE,
                                   "%s: %s: tensor '%s' ('%s') holds %lld, outside [0, 2^53] "
                                   "(file offset %llu)",
                                   p->fn, path, it->name, e->path, (long long)v,
                                   (unsigned long long)(8 + f->header_len + t->begin));
            vals[i] = (double)v;
        } else {
            unsigned char cell[8];
            memcpy(cell, d, es);
            clopt__to_le(cell, es, 1);
            clopt_dtype cd = t->dtype == CLOPT__ST_F64   ? CLOPT_FLOAT64
                             : t->dtype == CLOPT__ST_F16 ? CLOPT_FLOAT16
                             : t->dtype == CLOPT__ST_BF16 ? CLOPT_BFLOAT16
                                                          : CLOPT_FLOAT32;
            vals[i] = clopt__elem_load(cell, cd, 0);
            if (e->kind == CLOPT__OV_LR && !isfinite(vals[i]))
                return clopt__fail(p->ctx, CLOPT_ERR_CORRUPT_FILE,
                                   "%s: %s: tensor '%s' ('%s') holds %g, not a finite learning "
                                   "rate (file offset %llu)",
                                   p->fn, path, it->name, e->path, vals[i],
                                   (unsigned long long)(8 + f->header_len + t->begin));
        }
    }
    return CLOPT_OK;
}

clopt_status clopt__checkpoint_load(clopt_optimizer *opt, clopt_variable *const *vars, size_t n,
                                   const char *path, const char *fn,
                                   clopt__st_reader_fn reader) {
    clopt_context *ctx = context_of(opt, vars, n);
    if (!ctx) return CLOPT_ERR_INVALID_ARGUMENT;
    if (!path || !*path)
        return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT, "%s: path is %s", fn,
                           path ? "empty" : "NULL");
    clopt_status st = clopt__optimizer_sync(opt, 1); /* host values may change below */
    if (st != CLOPT_OK) return st;
    ck_plan p;
    if ((st = plan_make(&p, ctx, fn, opt, vars, n)) != CLOPT_OK) return st;
    clopt__st_file f;
    char err[CLOPT__IO_ERRN] = "";
    st = reader(path, &f, err, sizeof err);
    if (st != CLOPT_OK) {
        plan_free(&p);
        return clopt__fail(ctx, st, "%s: %s", fn, err);
    }
    const clopt__st_tensor **found = calloc(p.n + 1, sizeof *found);
    double *vals = calloc(p.n + 1, sizeof *vals);
    if (!found || !vals) st = clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
    if (st == CLOPT_OK) st = check_metadata(&p, opt, &f, path);
    if (st == CLOPT_OK) st = match_tensors(&p, opt != NULL, n > 0, &f, found, path);
    if (st == CLOPT_OK) st = check_values(&p, &f, found, vals, path);
    /* Everything is checked: write the device variables, then the host-side values. */
    for (size_t i = 0; st == CLOPT_OK && i < p.n; i++) {
        const ck_item *it = &p.items[i];
        if (!it->var) continue;
        unsigned char *d = (unsigned char *)f.data + found[i]->begin;
        size_t nb = item_bytes(it), es = clopt__st_dtype_size(it->dtype);
        clopt__to_le(d, es, nb / es);
        st = clopt_variable_write(it->var, d, nb);
        if (st != CLOPT_OK)
            clopt__fail(ctx, st, "%s: %s: writing tensor '%s' into '%s' failed: %s", fn, path,
                        it->name, it->var->name, ctx->error ? ctx->error : "");
    }
    for (size_t i = 0; st == CLOPT_OK && i < p.n; i++)
        if (!p.items[i].var) st = clopt__optimizer_set_host_value(opt, p.items[i].opt_index, vals[i]);
    free(found);
    free(vals);
    clopt__st_free(&f);
    plan_free(&p);
    return st;
}

clopt_status clopt_optimizer_load(clopt_optimizer *opt, const char *path) {
    if (!opt) return CLOPT_ERR_INVALID_ARGUMENT;
    return clopt__checkpoint_load(opt, NULL, 0, path, "clopt_optimizer_load", clopt__st_read);
}

clopt_status clopt_checkpoint_load(clopt_optimizer *opt, clopt_variable *const *vars, size_t n,
                                   const char *path) {
    return clopt__checkpoint_load(opt, vars, n, path, "clopt_checkpoint_load", clopt__st_read);
}

clopt_status clopt_optimizer_save_h5(const clopt_optimizer *opt, const char *path) {
    if (!opt) return CLOPT_ERR_INVALID_ARGUMENT;
    return clopt__checkpoint_save(opt, NULL, 0, path, "clopt_optimizer_save_h5", clopt__h5_write);
}

clopt_status clopt_optimizer_load_h5(clopt_optimizer *opt, const char *path) {
    if (!opt) return CLOPT_ERR_INVALID_ARGUMENT;
    return clopt__checkpoint_load(opt, NULL, 0, path, "clopt_optimizer_load_h5", clopt__h5_read);
}
