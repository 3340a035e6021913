/* Kernel parameters (clopt_kernel_params, clopt/experimental.h) and the tuning database: a user
 * database (CLOPT_TUNING_DB, or tuning.json in the cache directory) and the shipped one
 * (tuning/clopt_tuning.json, embedded). An entry names the device at one of three levels:
 * device + driver version, device name, vendor + device type. Lookup tries each level in that
 * order, the user database before the shipped one at each level; an unreadable database or an
 * entry with wrong types or values is skipped (the origin line says why), never trusted. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "clopt/version.h"
#include "core_internal.h"

#define DB_FORMAT 1

void clopt_kernel_params_default(clopt_kernel_params *out) {
    if (out) *out = (clopt_kernel_params){CLOPT__BLOCK_CHUNKS, CLOPT__MAX_BLOCKS, 0, 1};
}

/* The first field out of range, as a message; NULL when the set is valid. */
static const char *params_problem(const clopt_kernel_params *p, char *buf, size_t n) {
    if (p->block_chunks < CLOPT_KERNEL_BLOCK_CHUNKS_MIN ||
        p->block_chunks > CLOPT_KERNEL_BLOCK_CHUNKS_MAX)
        snprintf(buf, n, "block_chunks %d is outside [%d, %d]", p->block_chunks,
                 CLOPT_KERNEL_BLOCK_CHUNKS_MIN, CLOPT_KERNEL_BLOCK_CHUNKS_MAX);
    else if (p->max_blocks < CLOPT_KERNEL_MAX_BLOCKS_MIN ||
             p->max_blocks > CLOPT_KERNEL_MAX_BLOCKS_MAX)
        snprintf(buf, n, "max_blocks %d is outside [%d, %d]", p->max_blocks,
                 CLOPT_KERNEL_MAX_BLOCKS_MIN, CLOPT_KERNEL_MAX_BLOCKS_MAX);
    else if (p->form < CLOPT_KERNEL_FORM_AUTO || p->form > CLOPT_KERNEL_FORM_LOOP)
        snprintf(buf, n, "form %d is not CLOPT_KERNEL_FORM_AUTO, _GROUP or _LOOP", p->form);
    else if (p->item_blocks < CLOPT_KERNEL_ITEM_BLOCKS_MIN ||
             p->item_blocks > CLOPT_KERNEL_ITEM_BLOCKS_MAX)
        snprintf(buf, n, "item_blocks %d is outside [%d, %d]", p->item_blocks,
                 CLOPT_KERNEL_ITEM_BLOCKS_MIN, CLOPT_KERNEL_ITEM_BLOCKS_MAX);
    else
        return NULL;
    return buf;
}

clopt_status clopt_kernel_params_check(clopt_context *ctx, const clopt_kernel_params *p) {
    char buf[160];
    const char *why = p ? params_problem(p, buf, sizeof buf) : "params is NULL";
    if (!why) return CLOPT_OK;
    return ctx ? clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT, "kernel parameters: %s", why)
               : CLOPT_ERR_INVALID_ARGUMENT;
}

static void set_params(clopt_context *ctx, const clopt_kernel_params *p, int state, char *origin) {
    ctx->kparams = *p;
    if (ctx->kparams.item_blocks == 0) ctx->kparams.item_blocks = 1; /* 0: the default */
    ctx->kparams_state = state;
    free(ctx->kparams_origin);
    ctx->kparams_origin = origin;
}

clopt_status clopt_context_set_kernel_params(clopt_context *ctx, const clopt_kernel_params *p) {
    if (!ctx) return CLOPT_ERR_INVALID_ARGUMENT;
    clopt_status st = clopt_kernel_params_check(ctx, p);
    if (st != CLOPT_OK) return st;
    set_params(ctx, p, 2, clopt__strdup("set by clopt_context_set_kernel_params"));
    return CLOPT_OK;
}

static void identity(clopt_context *ctx, const char *id[4]) {
    if (ctx->ops->device_identity) {
        ctx->ops->device_identity(ctx->state, id);
        return;
    }
    id[0] = "clopt";
    id[1] = "host";
    id[2] = "host";
    id[3] = CLOPT_VERSION_STRING;
}

clopt_status clopt_context_device_identity(clopt_context *ctx, clopt_device_identity *out) {
    if (!ctx || !out) return CLOPT_ERR_INVALID_ARGUMENT;
    const char *id[4];
    identity(ctx, id);
    *out = (clopt_device_identity){id[0], id[1], id[2], id[3]};
    return CLOPT_OK;
}

char *clopt_tuning_db_path(void) {
    const char *e = getenv("CLOPT_TUNING_DB");
    if (e && *e) return clopt__strdup(strcmp(e, "off") == 0 ? "" : e);
    char *dir = clopt__cache_dir();
    char *path = dir && *dir ? clopt__format("%s/tuning.json", dir) : clopt__strdup("");
    free(dir);
    return path;
}

/* ---- reading a database ---- */

static const char *const form_names[] = {"auto", "group", "loop"};

/* One integer field of "params" into *v (absent: unchanged); 0, or -1 with the reason. */
static int int_field(json_t *o, const char *key, int *v, char *why, size_t n) {
    json_t *x = json_object_get(o, key);
    if (!x) return 0;
    if (!json_is_integer(x) || json_integer_value(x) < -2147483647LL ||
        json_integer_value(x) > 2147483647LL) {
        snprintf(why, n, "\"%s\" is not an integer", key);
        return -1;
    }
    *v = (int)json_integer_value(x);
    return 0;
}

/* An entry's "params" (absent fields keep the defaults; unknown keys are refused, so a database
 * from another version is not half read). 0, or -1 with the reason. */
static int parse_params(json_t *o, clopt_kernel_params *p, char *why, size_t n) {
    clopt_kernel_params_default(p);
    if (!json_is_object(o)) {
        snprintf(why, n, "\"params\" is missing or not an object");
        return -1;
    }
    const char *key;
    json_t *x;
    json_object_foreach(o, key, x) {
        if (strcmp(key, "block_chunks") && strcmp(key, "max_blocks") && strcmp(key, "form") &&
            strcmp(key, "item_blocks")) {
            snprintf(why, n, "unknown parameter \"%.40s\"", key);
            return -1;
        }
    }
    if (int_field(o, "block_chunks", &p->block_chunks, why, n) ||
        int_field(o, "max_blocks", &p->max_blocks, why, n) ||
        int_field(o, "item_blocks", &p->item_blocks, why, n))
        return -1;
    if ((x = json_object_get(o, "form"))) {
        int f = -1;
        for (int i = 0; json_is_string(x) && i < 3; i++)
            if (strcmp(json_string_value(x), form_names[i]) == 0) f = i;
        if (f < 0) {
            snprintf(why, n, "\"form\" is not \"auto\", \"group\" or \"loop\"");
            return -1;
        }
        p->form = f;
    }
    char buf[160];
    const char *bad = params_problem(p, buf, sizeof buf);
    if (bad) snprintf(why, n, "%s", bad);
    return bad ? -1 : 0;
}

/* The entry's level (1 device + driver, 2 device, 3 vendor + type), or 0 with the reason. */
static int entry_level(json_t *e, const char *f[4], char *why, size_t n) {
    static const char *const keys[4] = {"vendor", "type", "device", "driver"};
    if (!json_is_object(e)) {
        snprintf(why, n, "not an object");
        return 0;
    }
    for (int i = 0; i < 4; i++) {
        json_t *x = json_object_get(e, keys[i]);
        if (x && !json_is_string(x)) {
            snprintf(why, n, "\"%s\" is not a string", keys[i]);
            return 0;
        }
        f[i] = x ? json_string_value(x) : NULL;
    }
    if (f[2] && f[3]) return 1;
    if (f[2]) return 2;
    if (f[0] && f[1] && !f[3]) return 3;
    snprintf(why, n, "names neither a device nor a vendor and type");
    return 0;
}

static int entry_matches(const char *f[4], const char *id[4]) {
    for (int i = 0; i < 4; i++)
        if (f[i] && strcmp(f[i], id[i]) != 0) return 0;
    return 1;
}

typedef struct db {
    const char *label; /* "user database FILE", "shipped database" */
    json_t *root;      /* its "entries", or NULL when unusable */
} db;

/* Appends a reason to the origin's notes (bounded). */
static void note(char *notes, size_t n, const char *label, const char *fmt, const char *what) {
    size_t used = strlen(notes);
    if (used + 8 >= n) return;
    snprintf(notes + used, n - used, "%s%s: ", used ? "; " : "", label);
    used = strlen(notes);
    snprintf(notes + used, n - used, fmt, what);
}

static json_t *db_entries(json_t *root, char *why, size_t n) {
    json_t *fmt = json_object_get(root, "clopt_tuning");
    json_t *e = json_object_get(root, "entries");
    if (!json_is_object(root) || !json_is_integer(fmt) || json_integer_value(fmt) != DB_FORMAT)
        snprintf(why, n, "not a clopt tuning database (needs \"clopt_tuning\": %d)", DB_FORMAT);
    else if (!json_is_array(e))
        snprintf(why, n, "\"entries\" is not an array");
    else
        return e;
    return NULL;
}

static void db_open(db *d, const char *label, json_t *root, const char *error, char *notes,
                    size_t n) {
    char why[200];
    d->label = label;
    d->root = root;
    if (!root) {
        note(notes, n, label, "unreadable (%s)", error);
        return;
    }
    if (!db_entries(root, why, sizeof why)) {
        note(notes, n, label, "%s", why);
        json_decref(root);
        d->root = NULL;
    }
}

/* Looks the device up for one kind of entry (clopt__tuning_parse): the first entry, level by
 * level, that `parse` reads into `out`; returns the origin line (malloc'd), which names
 * `fallback` when no entry was usable (*found 0). Shared by the kernel parameters and the
 * CLBlast GEMM parameters (tuning_gemm.c). */
char *clopt__tuning_lookup(clopt_context *ctx, clopt__tuning_parse parse, void *out,
                           const char *fallback, int *found) {
    const char *id[4];
    identity(ctx, id);
    char notes[1024] = "", why[200];
    db dbs[2];
    char *path = clopt_tuning_db_path();
    char *ulabel = clopt__format("user database %s", path ? path : "?");
    json_error_t err;
    err.text[0] = '\0';
    if (path && *path) {
        FILE *f = fopen(path, "rb");
        json_t *root = f ? json_loadf(f, 0, &err) : NULL;
        if (f) fclose(f);
        if (f) db_open(&dbs[0], ulabel ? ulabel : "user database", root, err.text, notes,
                       sizeof notes);
        else
            dbs[0] = (db){ulabel, NULL}; /* no file yet: nothing to say */
    } else {
        dbs[0] = (db){ulabel, NULL};
    }
    json_t *shipped = NULL;
    for (const clopt__kernel_source *s = clopt__kernel_sources; s->name; s++)
        if (strcmp(s->name, "clopt_tuning") == 0) shipped = json_loadb(s->text, s->length, 0, &err);
    db_open(&dbs[1], "shipped database", shipped, shipped ? "" : err.text[0] ? err.text : "not embedded",
            notes, sizeof notes);
    static const char *const level_names[] = {"", "device + driver", "device", "vendor + type"};
    char *origin = NULL;
    for (int level = 1; level <= 3 && !origin; level++)
        for (int d = 0; d < 2 && !origin; d++) {
            json_t *entries = dbs[d].root ? json_object_get(dbs[d].root, "entries") : NULL;
            for (size_t i = 0; entries && i < json_array_size(entries) && !origin; i++) {
                const char *f[4];
                json_t *e = json_array_get(entries, i);
                int lv = entry_level(e, f, why, sizeof why);
                char label[320];
                snprintf(label, sizeof label, "%s entry %zu", dbs[d].label, i);
                if (lv == 0 && level == 1) note(notes, sizeof notes, label, "%s", why);
                if (lv != level || !entry_matches(f, id)) continue;
                const int got = parse(e, out, why, sizeof why);
                if (got < 0) note(notes, sizeof notes, label, "%s", why);
                if (got <= 0) continue;
                origin = clopt__format("%s (%s)%s%s", label, level_names[level],
                                       *notes ? "; skipped: " : "", notes);
            }
        }
    *found = origin != NULL;
    if (!origin)
        origin = clopt__format("%s (no entry for %s / %s / %s)%s%s", fallback, id[0], id[1],
                               id[2], *notes ? "; skipped: " : "", notes);
    for (int d = 0; d < 2; d++) json_decref(dbs[d].root);
    free(ulabel);
    free(path);
    return origin;
}

/* A kernel-parameter entry (one with "params"; a GEMM entry, with "gemm" alone, is another
 * kind: skipped without a note). */
static int kernel_entry(json_t *e, void *out, char *why, size_t n) {
    if (!json_object_get(e, "params") && json_object_get(e, "gemm")) return 0;
    return parse_params(json_object_get(e, "params"), out, why, n) == 0 ? 1 : -1;
}

/* Looks the device up; fills *p and returns the origin line (malloc'd). */
static char *lookup(clopt_context *ctx, clopt_kernel_params *p) {
    int found;
    char *origin = clopt__tuning_lookup(ctx, kernel_entry, p, "built-in defaults", &found);
    if (!found) clopt_kernel_params_default(p);
    return origin;
}

/* The context's parameters, looked up on first use. */
static const clopt_kernel_params *params_of(clopt_context *ctx) {
    if (ctx->kparams_state == 0) {
        clopt_kernel_params p;
        char *origin = lookup(ctx, &p);
        set_params(ctx, &p, 1, origin);
    }
    return &ctx->kparams;
}

clopt_status clopt_context_kernel_params(clopt_context *ctx, clopt_kernel_params *out,
                                         const char **origin) {
    if (!ctx || !out) return CLOPT_ERR_INVALID_ARGUMENT;
    *out = *params_of(ctx);
    if (origin) *origin = ctx->kparams_origin ? ctx->kparams_origin : "(out of memory)";
    return CLOPT_OK;
}

int clopt__kernel_item_blocks(clopt_context *ctx) {
    const int ib = params_of(ctx)->item_blocks;
    return ib > 1 ? ib : 1;
}

int clopt__kernel_form_loop(clopt_context *ctx, int cpu_default) {
    const int form = params_of(ctx)->form;
    return form == CLOPT_KERNEL_FORM_AUTO ? cpu_default : form == CLOPT_KERNEL_FORM_LOOP;
}
