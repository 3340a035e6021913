/* OpenCL devices: listing them with their specs, and resolving a spec to one. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ocl_internal.h"

#define MAX_PLATFORMS 16
#define MAX_DEVICES 64

static void lower(char *s) {
    for (; *s; s++) *s = (char)tolower((unsigned char)*s);
}

static void platform_text(cl_platform_id p, cl_platform_info what, char *buf, size_t n) {
    buf[0] = '\0';
    if (clGetPlatformInfo(p, what, n, buf, NULL) != CL_SUCCESS) buf[0] = '\0';
    buf[n - 1] = '\0';
}

/* The short platform word specs use: a well-known vendor token when one occurs in the name or
 * vendor, else the platform name's first word, lower case. */
static void platform_token(cl_platform_id p, char *tok, size_t n) {
    static const char *const known[] = {"pocl", "nvidia", "amd", "intel", "apple", "rusticl",
                                        "clover", "arm", "qualcomm", "mesa"};
    char name[256], vendor[256], both[520];
    platform_text(p, CL_PLATFORM_NAME, name, sizeof name);
    platform_text(p, CL_PLATFORM_VENDOR, vendor, sizeof vendor);
    snprintf(both, sizeof both, "%s %s", name, vendor);
    lower(both);
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (strstr(both, known[i])) {
            snprintf(tok, n, "%s", known[i]);
            return;
        }
    size_t k = 0;
    while (both[k] && !isspace((unsigned char)both[k]) && k + 1 < n) tok[k] = both[k], k++;
    tok[k] = '\0';
}

static int platform_matches(cl_platform_id p, const char *want) {
    if (!*want || strcmp(want, "*") == 0) return 1;
    char name[256], vendor[256], tok[64], both[600], w[128];
    platform_text(p, CL_PLATFORM_NAME, name, sizeof name);
    platform_text(p, CL_PLATFORM_VENDOR, vendor, sizeof vendor);
    platform_token(p, tok, sizeof tok);
    snprintf(both, sizeof both, "%s|%s|%s", name, vendor, tok);
    snprintf(w, sizeof w, "%s", want);
    lower(both);
    lower(w);
    return strstr(both, w) != NULL;
}

static const char *type_word(cl_device_type t) {
    if (t & CL_DEVICE_TYPE_GPU) return "gpu";
    if (t & CL_DEVICE_TYPE_CPU) return "cpu";
    if (t & CL_DEVICE_TYPE_ACCELERATOR) return "accelerator";
    return "other";
}

static cl_uint get_platforms(cl_platform_id *ps) {
    cl_uint n = 0;
    if (clGetPlatformIDs(MAX_PLATFORMS, ps, &n) != CL_SUCCESS) return 0;
    return n > MAX_PLATFORMS ? MAX_PLATFORMS : n;
}

static cl_uint get_devices(cl_platform_id p, cl_device_type type, cl_device_id *ds) {
    cl_uint n = 0;
    if (clGetDeviceIDs(p, type, MAX_DEVICES, ds, &n) != CL_SUCCESS) return 0;
    return n > MAX_DEVICES ? MAX_DEVICES : n;
}

/* A device string, truncated to fit `buf` (clGetDeviceInfo refuses a buffer that is too small:
 * PoCL's CL_DEVICE_VERSION is longer than 64 bytes). */
static void device_text(cl_device_id d, cl_device_info what, char *buf, size_t n) {
    size_t len = 0;
    buf[0] = '\0';
    if (clGetDeviceInfo(d, what, 0, NULL, &len) != CL_SUCCESS || len == 0) return;
    char *s = malloc(len + 1);
    if (!s) return;
    if (clGetDeviceInfo(d, what, len, s, NULL) == CL_SUCCESS) {
        s[len] = '\0';
        snprintf(buf, n, "%s", s);
    }
    free(s);
}

static int has_extension(cl_device_id d, const char *ext) {
    size_t n = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, 0, NULL, &n) != CL_SUCCESS || !n) return 0;
    char *s = malloc(n + 1);
    if (!s) return 0;
    int found = clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, n, s, NULL) == CL_SUCCESS &&
                (s[n] = '\0', strstr(s, ext) != NULL);
    free(s);
    return found;
}

clopt_status clopt_device_list(clopt_device_info *infos, size_t cap, size_t *count) {
    if (!count || (cap && !infos)) return CLOPT_ERR_INVALID_ARGUMENT;
    cl_platform_id ps[MAX_PLATFORMS];
    cl_uint np = get_platforms(ps);
    size_t total = 0;
    for (cl_uint i = 0; i < np; i++) {
        char tok[64];
        platform_token(ps[i], tok, sizeof tok);
        cl_device_id ds[MAX_DEVICES];
        cl_uint nd = get_devices(ps[i], CL_DEVICE_TYPE_ALL, ds);
        for (cl_uint j = 0; j < nd; j++, total++) {
            if (total >= cap) continue;
            clopt_device_info *d = &infos[total];
            memset(d, 0, sizeof *d);
            cl_device_type t = 0;
            clGetDeviceInfo(ds[j], CL_DEVICE_TYPE, sizeof t, &t, NULL);
            /* index among this platform's devices of this type: what the spec counts */
            unsigned idx = 0;
            for (cl_uint k = 0; k < j; k++) {
                cl_device_type tk = 0;
                clGetDeviceInfo(ds[k], CL_DEVICE_TYPE, sizeof tk, &tk, NULL);
                if (strcmp(type_word(tk), type_word(t)) == 0) idx++;
            }
            snprintf(d->spec, sizeof d->spec, "%s:%s:%u", tok, type_word(t), idx);
            platform_text(ps[i], CL_PLATFORM_NAME, d->platform, sizeof d->platform);
            snprintf(d->type, sizeof d->type, "%s", type_word(t));
            device_text(ds[j], CL_DEVICE_NAME, d->name, sizeof d->name);
            device_text(ds[j], CL_DRIVER_VERSION, d->driver_version, sizeof d->driver_version);
            device_text(ds[j], CL_DEVICE_VERSION, d->opencl_version, sizeof d->opencl_version);
            cl_uint cu = 0;
            cl_ulong mem = 0;
            clGetDeviceInfo(ds[j], CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL);
            clGetDeviceInfo(ds[j], CL_DEVICE_GLOBAL_MEM_SIZE, sizeof mem, &mem, NULL);
            d->compute_units = cu;
            d->global_mem_bytes = mem;
            d->fp64 = has_extension(ds[j], "cl_khr_fp64");
            d->fp16 = has_extension(ds[j], "cl_khr_fp16");
        }
    }
    *count = total;
    return CLOPT_OK;
}

static int parse_type(const char *s, cl_device_type *t) {
    if (!*s || strcmp(s, "any") == 0 || strcmp(s, "all") == 0 || strcmp(s, "*") == 0)
        *t = CL_DEVICE_TYPE_ALL;
    else if (strcmp(s, "gpu") == 0) *t = CL_DEVICE_TYPE_GPU;
    else if (strcmp(s, "cpu") == 0) *t = CL_DEVICE_TYPE_CPU;
    else if (strcmp(s, "accelerator") == 0) *t = CL_DEVICE_TYPE_ACCELERATOR;
    else return 0;
    return 1;
}

/* The index-th device of `type` over the platforms matching `plat`. */
static int find_device(const char *plat, cl_device_type type, long index, cl_platform_id *pp,
                       cl_device_id *dp) {
    cl_platform_id ps[MAX_PLATFORMS];
    cl_uint np = get_platforms(ps);
    for (cl_uint i = 0; i < np; i++) {
        if (!platform_matches(ps[i], plat)) continue;
        cl_device_id ds[MAX_DEVICES];
        cl_uint nd = get_devices(ps[i], type, ds);
        if (index < (long)nd) {
            *pp = ps[i];
            *dp = ds[index];
            return 1;
        }
        index -= (long)nd;
    }
    return 0;
}

clopt_status clopt__ocl_select(clopt_context *ctx, const char *spec, cl_platform_id *platform,
                               cl_device_id *device) {
    cl_platform_id ps[MAX_PLATFORMS];
    if (get_platforms(ps) == 0)
        return clopt__fail(ctx, CLOPT_ERR_DEVICE_NOT_FOUND,
                           "no OpenCL platform found (is an ICD such as pocl-opencl-icd "
                           "installed?); use device \"host\" for the C reference backend");
    if (!spec) {
        if (find_device("", CL_DEVICE_TYPE_GPU, 0, platform, device) ||
            find_device("", CL_DEVICE_TYPE_CPU, 0, platform, device))
            return CLOPT_OK;
        return clopt__fail(ctx, CLOPT_ERR_DEVICE_NOT_FOUND,
                           "no OpenCL GPU or CPU device found on any platform");
    }
    char plat[128] = "", type[32] = "", idx[32] = "";
    const char *c1 = strchr(spec, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    size_t l1 = c1 ? (size_t)(c1 - spec) : strlen(spec);
    size_t l2 = c1 ? (c2 ? (size_t)(c2 - c1 - 1) : strlen(c1 + 1)) : 0;
    if (l1 >= sizeof plat || l2 >= sizeof type || (c2 && strlen(c2 + 1) >= sizeof idx) ||
        (c2 && strchr(c2 + 1, ':')))
        return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT,
                           "device spec '%s' is malformed: expected platform[:type[:index]]",
                           spec);
    memcpy(plat, spec, l1);
    if (c1) memcpy(type, c1 + 1, l2);
    if (c2) strcpy(idx, c2 + 1);
    lower(type);
    cl_device_type t;
    if (!parse_type(type, &t))
        return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT,
                           "device spec '%s': type '%s' is not cpu, gpu, accelerator or any",
                           spec, type);
    char *end = idx;
    long index = *idx ? strtol(idx, &end, 10) : 0;
    if (*end || index < 0)
        return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT,
                           "device spec '%s': index '%s' is not a number >= 0", spec, idx);
    if (!find_device(plat, t, index, platform, device))
        return clopt__fail(ctx, CLOPT_ERR_DEVICE_NOT_FOUND,
                           "device spec '%s' matches no device (run `clopt devices` for the "
                           "list)",
                           spec);
    return CLOPT_OK;
}
