/* Writing the user tuning database (src/core/tuning.c and tuning_gemm.c read it): what
 * `clopt tune` (cmd_tune.c) and `clopt tune --gemm` (tune_gemm.c) share. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "clopt/experimental.h"
#include "cli_internal.h"

void cli_make_parents(const char *path) {
    char *d = strdup(path);
    for (char *p = d ? d + 1 : NULL; p && *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(d, 0755);
            *p = '/';
        }
    free(d);
}

/* The database at `path`, or a new empty one when there is no file; NULL (after a message)
 * when the file is not a database. */
static json_t *load_db(const char *path) {
    if (access(path, F_OK) != 0) return json_pack("{s:i, s:[]}", "clopt_tuning", 1, "entries");
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (json_is_object(root) && json_is_array(json_object_get(root, "entries"))) return root;
    fprintf(stderr, "clopt tune: %s is not a tuning database; not overwriting it\n", path);
    json_decref(root);
    return NULL;
}

/* Drops the entries of the device + driver `id` of one kind: GEMM entries (those with a "gemm"
 * key) or kernel-parameter entries (the others); the other kind's stay. */
static void drop_entries(json_t *entries, const clopt_device_identity *id, int gemm) {
    for (size_t i = json_array_size(entries); i-- > 0;) {
        json_t *e = json_array_get(entries, i);
        const char *d = json_string_value(json_object_get(e, "device"));
        const char *v = json_string_value(json_object_get(e, "driver"));
        if (d && v && strcmp(d, id->device) == 0 && strcmp(v, id->driver) == 0 &&
            !json_object_get(e, "gemm") == !gemm)
            json_array_remove(entries, i);
    }
}

/* Writes root to a temporary file beside `path` and renames it over `path`. */
static int replace_file(json_t *root, const char *path) {
    char *tmp = malloc(strlen(path) + 32);
    int rc = -1;
    if (tmp) {
        sprintf(tmp, "%s.tmp.%ld", path, (long)getpid());
        rc = json_dump_file(root, tmp, JSON_INDENT(2)) == 0 && rename(tmp, path) == 0 ? 0 : -1;
        if (rc) {
            remove(tmp);
            fprintf(stderr, "clopt tune: cannot write %s\n", path);
        }
    }
    free(tmp);
    return rc;
}

int cli_tune_db_put(const char *path, const clopt_device_identity *id, json_t *fields) {
    json_t *root = load_db(path);
    if (!root || !fields) {
        if (root) fprintf(stderr, "clopt tune: cannot write %s\n", path); /* out of memory */
        json_decref(root);
        json_decref(fields);
        return -1;
    }
    json_t *entries = json_object_get(root, "entries");
    drop_entries(entries, id, json_object_get(fields, "gemm") != NULL);
    json_t *entry = json_pack("{s:s, s:s, s:s, s:s}", "vendor", id->vendor, "type", id->type,
                              "device", id->device, "driver", id->driver);
    json_object_update(entry, fields);
    json_decref(fields);
    json_array_append_new(entries, entry);
    const int rc = replace_file(root, path);
    json_decref(root);
    return rc;
}
