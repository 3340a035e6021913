/* Reading and validating a `clopt replay` case file (docs/replay.md). Everything is checked
 * before a device is touched, and each problem is reported on one line naming the file and the
 * JSON path: "case.json: variables[1].value has 5 numbers, shape [2, 3] needs 6". */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli_internal.h"
#include "tool_internal.h"

#define MAX_ELEMENTS ((int64_t)1 << 40)

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int fail(const cli_case *c, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s: ", c->file);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return -1;
}

void cli_shape_str(const cli_var *v, char *out, size_t n) {
    size_t k = (size_t)snprintf(out, n, "[");
    for (int d = 0; d < v->ndim && k < n; d++)
        k += (size_t)snprintf(out + k, n - k, "%s%lld", d ? ", " : "", (long long)v->shape[d]);
    if (k < n) snprintf(out + k, n - k, "]");
}

/* Checks that `obj` has only the listed keys. */
static int check_keys(const cli_case *c, const json_t *obj, const char *path,
                      const char *const *keys, const char *expected) {
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)obj, key, val) {
        int known = 0;
        for (const char *const *k = keys; *k; k++) known |= strcmp(key, *k) == 0;
        if (!known)
            return fail(c, "%s%sunknown key '%s' (expected %s)", path, *path ? ": " : "", key,
                        expected);
    }
    return 0;
}

/* The optimizer object goes to the library as text; NaN or Infinity tokens there would reach
 * it as marker strings, so they are refused here with their path. */
static int check_no_tokens(const cli_case *c, const json_t *v, char *path, size_t cap) {
    double d;
    size_t len = strlen(path);
    if (json_is_string(v) && cli_json_number(v, &d))
        return fail(c, "%s: NaN and Infinity are not valid in an optimizer config", path);
    if (json_is_object(v)) {
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)v, key, val) {
            snprintf(path + len, cap - len, ".%s", key);
            if (check_no_tokens(c, val, path, cap)) return -1;
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            snprintf(path + len, cap - len, "[%zu]", i);
            if (check_no_tokens(c, json_array_get(v, i), path, cap)) return -1;
        }
    }
    path[len] = '\0';
    return 0;
}

/* Checks an array of exactly `count` numbers at `path`. */
static int check_numbers(const cli_case *c, const json_t *a, size_t count, const char *path,
                         const cli_var *v, size_t j, int is_grad) {
    char shp[256];
    cli_shape_str(v, shp, sizeof shp);
    if (!json_is_array(a)) {
        if (is_grad)
            return fail(c, "%s: expected null or an array of %zu numbers (the gradient of "
                           "variables[%zu] '%s', shape %s), got %s",
                        path, count, j, v->name, shp, cli_json_type_name(a));
        return fail(c, "%s: expected an array of %zu numbers (shape %s), got %s", path, count,
                    shp, cli_json_type_name(a));
    }
    size_t n = json_array_size(a);
    /* Nested lists ([[1, 2]] for shape [2]): say so rather than count the outer list. */
    for (size_t i = 0; i < n; i++)
        if (json_is_array(json_array_get(a, i)))
            return fail(c, "%s[%zu] is an array: values are one flat row-major array of %zu "
                           "numbers (shape %s), not nested lists",
                        path, i, count, shp);
    if (n != count) {
        if (is_grad)
            return fail(c, "%s: expected %zu numbers (variables[%zu] '%s' has shape %s), got %zu",
                        path, count, j, v->name, shp, n);
        return fail(c, "%s has %zu numbers, shape %s needs %zu", path, n, shp, count);
    }
    for (size_t i = 0; i < n; i++) {
        double d;
        const json_t *e = json_array_get(a, i);
        if (!cli_json_number(e, &d))
            return fail(c, "%s[%zu]: expected a number, got %s", path, i, cli_json_type_name(e));
        /* A finite number that the dtype cannot hold would silently become inf. */
        double elem;
        cli_store(&elem, v->dtype, 0, d);
        if (isfinite(d) && !isfinite(cli_load(&elem, v->dtype, 0)))
            return fail(c, "%s[%zu]: %g overflows %s (%s of variables[%zu] '%s', element %zu)",
                        path, i, d, clopt_dtype_name(v->dtype), is_grad ? "the gradient" : "value",
                        j, v->name, i);
    }
    return 0;
}

static int load_variable(cli_case *c, size_t i, const json_t *o) {
    static const char *const keys[] = {"name", "dtype", "shape", "value", NULL};
    char path[64];
    cli_var *v = &c->vars[i];
    snprintf(path, sizeof path, "variables[%zu]", i);
    if (!json_is_object(o))
        return fail(c, "%s: expected an object {\"name\", \"dtype\", \"shape\", \"value\"}, got %s",
                    path, cli_json_type_name(o));
    if (check_keys(c, o, path, keys, "name, dtype, shape, value")) return -1;
    const json_t *name = json_object_get(o, "name"), *dtype = json_object_get(o, "dtype");
    const json_t *shape = json_object_get(o, "shape"), *value = json_object_get(o, "value");
    if (name && !json_is_string(name))
        return fail(c, "%s.name: expected a string, got %s", path, cli_json_type_name(name));
    v->name = name ? json_string_value(name) : "variable";
    if (!dtype) return fail(c, "%s: missing key 'dtype'", path);
    if (!json_is_string(dtype))
        return fail(c, "%s.dtype: expected a string, got %s", path, cli_json_type_name(dtype));
    if (clopt_dtype_from_name(json_string_value(dtype), &v->dtype) != CLOPT_OK)
        return fail(c, "%s.dtype: unknown dtype '%s' (expected float32, float64, float16 or "
                       "bfloat16)",
                    path, json_string_value(dtype));
    if (!shape) return fail(c, "%s: missing key 'shape'", path);
    if (!json_is_array(shape))
        return fail(c, "%s.shape: expected an array of sizes, got %s", path,
                    cli_json_type_name(shape));
    if (json_array_size(shape) > CLOPT_MAX_NDIM)
        return fail(c, "%s.shape: %zu dimensions, at most %d are supported", path,
                    json_array_size(shape), CLOPT_MAX_NDIM);
    v->ndim = (int)json_array_size(shape);
    int64_t size = 1;
    for (int d = 0; d < v->ndim; d++) {
        const json_t *s = json_array_get(shape, (size_t)d);
        if (!json_is_integer(s))
            return fail(c, "%s.shape[%d]: expected an integer, got %s", path, d,
                        cli_json_type_name(s));
        json_int_t k = json_integer_value(s);
        if (k < 1)
            return fail(c, "%s.shape[%d]: size %lld is not supported (sizes must be >= 1)", path,
                        d, (long long)k);
        if (k > MAX_ELEMENTS / size)
            return fail(c, "%s.shape: more than 2^40 elements", path);
        v->shape[d] = k;
        size *= k;
    }
    v->size = (size_t)size;
    if (!value) return fail(c, "%s: missing key 'value'", path);
    char vpath[80];
    snprintf(vpath, sizeof vpath, "%s.value", path);
    if (check_numbers(c, value, v->size, vpath, v, i, 0)) return -1;
    v->value = value;
    return 0;
}

/* One list of gradients, one per variable, at `path`. */
static int check_grad_list(const cli_case *c, const json_t *list, const char *path) {
    if (!json_is_array(list))
        return fail(c, "%s: expected an array of %zu gradients (one per variable), got %s", path,
                    c->nvars, cli_json_type_name(list));
    if (json_array_size(list) != c->nvars)
        return fail(c, "%s: expected %zu gradients (one per variable), got %zu", path, c->nvars,
                    json_array_size(list));
    for (size_t j = 0; j < c->nvars; j++) {
        const json_t *g = json_array_get(list, j);
        char gpath[128];
        snprintf(gpath, sizeof gpath, "%s[%zu]", path, j);
        if (json_is_null(g)) continue;
        if (check_numbers(c, g, c->vars[j].size, gpath, &c->vars[j], j, 1)) return -1;
    }
    return 0;
}

static int check_step(const cli_case *c, size_t i, const json_t *step) {
    char path[64];
    snprintf(path, sizeof path, "steps[%zu]", i);
    if (!c->replicas) return check_grad_list(c, step, path);
    size_t n = (size_t)c->replicas;
    if (!json_is_array(step) || json_array_size(step) != n) {
        if (!json_is_array(step))
            return fail(c, "%s: expected an array of %zu replica gradient lists (\"replicas\": "
                           "%zu), got %s",
                        path, n, n, cli_json_type_name(step));
        return fail(c, "%s: expected %zu replica gradient lists (\"replicas\": %zu), got %zu",
                    path, n, n, json_array_size(step));
    }
    for (size_t r = 0; r < n; r++) {
        char rpath[96];
        snprintf(rpath, sizeof rpath, "%s[%zu]", path, r);
        if (check_grad_list(c, json_array_get(step, r), rpath)) return -1;
    }
    /* Keras all-reduces the gradients that exist: a variable has one in every replica or in
     * none (the None positions are the same on every replica). */
    for (size_t j = 0; j < c->nvars; j++) {
        int null0 = cli_case_grad(c, i, 0, j) == NULL;
        for (size_t r = 1; r < n; r++) {
            const json_t *g = json_array_get(json_array_get(step, r), j);
            if (json_is_null(g) != null0)
                return fail(c, "%s[%zu][%zu] is %s but %s[0][%zu] is %s: a variable has a "
                               "gradient in every replica or in none",
                            path, r, j, null0 ? "an array" : "null", path, j,
                            null0 ? "null" : "an array");
        }
    }
    return 0;
}

int cli_case_load(cli_case *c, const char *file, const char *text, size_t len) {
    static const char *const keys[] = {"optimizer", "variables", "steps", "replicas",
                                       "comment", NULL};
    memset(c, 0, sizeof *c);
    c->file = file;
    char err[512];
    c->root = cli_json_parse(text, len, err, sizeof err);
    if (!c->root) return fail(c, "%s", err);
    const json_t *root = c->root;
    if (!json_is_object(root))
        return fail(c, "the top level must be an object {\"optimizer\", \"variables\", "
                       "\"steps\"}, got %s",
                    cli_json_type_name(root));
    if (check_keys(c, root, "", keys, "optimizer, variables, steps, replicas, comment"))
        return -1;

    const json_t *opt = json_object_get(root, "optimizer");
    if (!opt) return fail(c, "missing key 'optimizer'");
    if (!json_is_object(opt))
        return fail(c, "optimizer: expected an object {\"class_name\", \"config\"}, got %s",
                    cli_json_type_name(opt));
    char opath[512] = "optimizer";
    if (check_no_tokens(c, opt, opath, sizeof opath)) return -1;
    if (!(c->optimizer_json = clopt__json_dump(opt))) return fail(c, "out of memory");

    const json_t *rep = json_object_get(root, "replicas");
    if (rep) {
        if (!json_is_integer(rep) || json_integer_value(rep) < 1 ||
            json_integer_value(rep) > 1024) {
            if (json_is_integer(rep))
                return fail(c, "replicas: must be an integer in [1, 1024], got %lld",
                            (long long)json_integer_value(rep));
            return fail(c, "replicas: must be an integer in [1, 1024], got %s",
                        cli_json_type_name(rep));
        }
        c->replicas = (int)json_integer_value(rep);
    }

    const json_t *vars = json_object_get(root, "variables");
    if (!vars) return fail(c, "missing key 'variables'");
    if (!json_is_array(vars))
        return fail(c, "variables: expected an array, got %s", cli_json_type_name(vars));
    c->nvars = json_array_size(vars);
    if (c->nvars == 0) return fail(c, "variables: the list is empty");
    if (!(c->vars = calloc(c->nvars, sizeof *c->vars))) return fail(c, "out of memory");
    for (size_t i = 0; i < c->nvars; i++)
        if (load_variable(c, i, json_array_get(vars, i))) return -1;

    const json_t *steps = json_object_get(root, "steps");
    if (!steps) return fail(c, "missing key 'steps'");
    if (!json_is_array(steps))
        return fail(c, "steps: expected an array, got %s", cli_json_type_name(steps));
    c->steps = steps;
    c->nsteps = json_array_size(steps);
    for (size_t i = 0; i < c->nsteps; i++)
        if (check_step(c, i, json_array_get(steps, i))) return -1;
    return 0;
}

void cli_case_free(cli_case *c) {
    json_decref(c->root);
    free(c->optimizer_json);
    free(c->vars);
    memset(c, 0, sizeof *c);
}

const json_t *cli_case_grad(const cli_case *c, size_t i, size_t r, size_t j) {
    const json_t *step = json_array_get(c->steps, i);
    const json_t *g = c->replicas ? json_array_get(json_array_get(step, r), j)
                                  : json_array_get(step, j);
    return json_is_null(g) ? NULL : g;
}
