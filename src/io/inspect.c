/* `clopt inspect FILE`: a readable summary of a safetensors checkpoint (the tensors' CRC-32C
 * checksums, when the file has them, are verified by the reader before anything is printed). */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "core/core_internal.h"
#include "io_internal.h"

/* The Keras path of optimizer tensor `name` ("optimizer/vars/<i>") from the
 * "optimizer_variables" metadata, or NULL. */
static const char *opt_path(const json_t *paths, const char *name) {
    const char *prefix = "optimizer/vars/";
    if (!paths || strncmp(name, prefix, strlen(prefix)) != 0) return NULL;
    const char *num = name + strlen(prefix);
    if (*num < '0' || *num > '9') return NULL;
    char *end;
    unsigned long long i = strtoull(num, &end, 10);
    if (*end) return NULL;
    return json_string_value(json_array_get(paths, (size_t)i));
}

/* Writes JSON text with one member per line, indented by depth, keeping every token (numbers
 * included) exactly as written. */
static void put_indented(FILE *out, const char *s) {
    int depth = 0, in_str = 0, esc = 0;
    char prev = '\0'; /* the character before *s (not s[-1]: s may be the text's first) */
    for (; *s; prev = *s++) {
        char c = *s;
        if (in_str) {
            fputc(c, out);
            if (esc) esc = 0;
            else if (c == '\\') esc = 1;
            else if (c == '"') in_str = 0;
            continue;
        }
        switch (c) {
        case '"': in_str = 1; fputc(c, out); break;
        case '{':
        case '[':
            fputc(c, out);
            if (s[1] == '}' || s[1] == ']') break;
            fprintf(out, "\n%*s", 2 * ++depth, "");
            break;
        case '}':
        case ']':
            if (prev != '{' && prev != '[') fprintf(out, "\n%*s", 2 * (depth ? --depth : 0), "");
            fputc(c, out);
            break;
        case ',':
            fprintf(out, ",\n%*s", 2 * depth, "");
            while (s[1] == ' ') s++;
            break;
        default: fputc(c, out);
        }
    }
    fputc('\n', out);
}

/* Prints the summary of a validated file and frees it. */
static clopt_status inspect_parsed(const char *path, clopt__st_file *fp, FILE *out) {
    clopt__st_file f = *fp;
    fprintf(out, "%s: safetensors, %zu bytes: header %" PRIu64 " bytes, %zu tensors, %" PRIu64
                 " data bytes\n",
            path, f.size, f.header_len, f.ntensors, f.data_size);

    const char *cfg = clopt__st_meta(&f, "optimizer_config");
    const char *paths_text = clopt__st_meta(&f, "optimizer_variables");
    json_t *paths = paths_text ? json_loads(paths_text, 0, NULL) : NULL;
    if (f.metadata) {
        fprintf(out, "metadata:\n");
        const char *key;
        json_t *val;
        size_t ncrc = 0, np = strlen(CLOPT__ST_CRC_PREFIX);
        json_object_foreach(f.metadata, key, val) {
            if (strncmp(key, CLOPT__ST_CRC_PREFIX, np) == 0) ncrc++;
            if (strcmp(key, "optimizer_config") == 0 || strcmp(key, "optimizer_variables") == 0 ||
                strncmp(key, CLOPT__ST_CRC_PREFIX, np) == 0)
                continue;
            fprintf(out, "  %s: %s\n", key, json_string_value(val));
        }
        if (ncrc) fprintf(out, "  checksums: CRC-32C of %zu tensors, all verified\n", ncrc);
    } else {
        fprintf(out, "metadata: none\n");
    }

    size_t wname = 4;
    for (size_t i = 0; i < f.ntensors; i++) {
        size_t l = strlen(f.tensors[i].name);
        if (l > wname) wname = l;
    }
    fprintf(out, "tensors:\n  %-*s  %-7s  %-16s  %12s  %-16s  %s\n", (int)wname, "name",
            "dtype", "shape", "bytes", "fnv1a64", "crc32c");
    for (size_t i = 0; i < f.ntensors; i++) {
        const clopt__st_tensor *t = &f.tensors[i];
        char shape[64 + 24 * CLOPT__ST_MAX_NDIM];
        clopt__st_shape_str(t->ndim, t->shape, shape, sizeof shape);
        uint64_t h = clopt__hash64(CLOPT__HASH_INIT, f.data + t->begin, (size_t)(t->end - t->begin));
        const char *kp = opt_path(paths, t->name);
        uint32_t crc = 0;
        char crc_text[16] = "-       "; /* no checksum in the file */
        if (clopt__st_checksum(&f, t, &crc) == 1) snprintf(crc_text, sizeof crc_text, "%08x", crc);
        fprintf(out, "  %-*s  %-7s  %-16s  %12" PRIu64 "  %016" PRIx64 "  %s%s%s\n", (int)wname,
                t->name, clopt__st_dtype_name(t->dtype), shape, t->end - t->begin, h, crc_text,
                kp ? "  " : "", kp ? kp : "");
    }
    json_decref(paths);

    if (cfg) {
        fprintf(out, "optimizer config:\n");
        put_indented(out, cfg);
    } else {
        fprintf(out, "optimizer config: none\n");
    }
    clopt__st_free(&f);
    return ferror(out) ? CLOPT_ERR_IO : CLOPT_OK;
}

clopt_status clopt__inspect_file(const char *path, FILE *out, char *err, size_t errn) {
    clopt__st_file f;
    clopt_status st = clopt__st_read(path, &f, err, errn);
    return st == CLOPT_OK ? inspect_parsed(path, &f, out) : st;
}

clopt_status clopt__inspect_image(unsigned char *bytes, size_t size, const char *what, FILE *out,
                                  char *err, size_t errn) {
    clopt__st_file f;
    clopt_status st = clopt__st_parse(bytes, size, what, &f, err, errn);
    return st == CLOPT_OK ? inspect_parsed(what, &f, out) : st;
}
