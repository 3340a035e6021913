/* `clopt devices`: every OpenCL platform and device with the exact spec string that
 * clopt_context_create and --device take, plus the host reference backend, and which device the
 * default selection (NULL) picks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli_internal.h"

void cli_help_devices(FILE *out) {
    fputs("usage: clopt devices [--json]\n"
          "\n"
          "Lists every OpenCL device of every platform with the spec to pass to --device (or\n"
          "clopt_context_create): platform:type:index, for example pocl:cpu:0. Also lists the\n"
          "\"host\" C reference backend, and says which device the default selection picks\n"
          "(the environment variable CLOPT_DEVICE, else the first GPU, else the first CPU).\n"
          "\n"
          "options:\n"
          "  --json      print the list as JSON\n"
          "  -h, --help  show this help\n"
          "\n"
          "Exit status: 0, also when there is no OpenCL platform (the host backend is always\n"
          "there); 1 if the OpenCL platforms cannot be listed; 2 for bad usage.\n",
          out);
}

static const char *yes_no(int b) { return b ? "yes" : "no"; }

static void put_mem(unsigned long long bytes, char *out, size_t n) {
    if (bytes >= (1ull << 30)) snprintf(out, n, "%.1f GiB", (double)bytes / (1ull << 30));
    else snprintf(out, n, "%.0f MiB", (double)bytes / (1ull << 20));
}

/* The device the default selection picks, as an index into `infos` (-1: not among them or no
 * default); its description goes to `name`, the reason when there is none to `why`. */
static long find_default(const clopt_device_info *infos, size_t n, char *name, size_t nn,
                         char *why, size_t wn) {
    clopt_context *ctx = NULL;
    clopt_status st = clopt_context_create(NULL, &ctx);
    name[0] = why[0] = '\0';
    if (st != CLOPT_OK) {
        snprintf(why, wn, "%s", clopt_last_create_error());
        if (!why[0]) snprintf(why, wn, "%s", clopt_status_string(st));
        return -1;
    }
    snprintf(name, nn, "%s", clopt_context_device_name(ctx));
    long found = -1;
    if (strcmp(clopt_context_backend_name(ctx), "host") == 0) {
        found = (long)n; /* CLOPT_DEVICE=host: the host line */
    } else {
        for (size_t i = 0; i < n && found < 0; i++) {
            char both[300];
            snprintf(both, sizeof both, "%s (%s)", infos[i].name, infos[i].platform);
            if (strcmp(both, name) == 0 || strcmp(infos[i].name, name) == 0) found = (long)i;
        }
    }
    clopt_context_destroy(ctx);
    return found;
}

static void print_text(const clopt_device_info *infos, size_t n, size_t nplat, long def,
                       const char *defname, const char *why) {
    if (n == 0) {
        printf("No OpenCL platform or device found (is an ICD such as pocl-opencl-icd "
               "installed?).\n");
    } else {
        printf("OpenCL devices (%zu on %zu platform%s):\n", n, nplat, nplat == 1 ? "" : "s");
    }
    const char *platform = NULL;
    for (size_t i = 0; i < n; i++) {
        const clopt_device_info *d = &infos[i];
        char mem[32];
        put_mem(d->global_mem_bytes, mem, sizeof mem);
        if (!platform || strcmp(platform, d->platform) != 0) {
            platform = d->platform;
            printf("  platform: %s\n", platform);
        }
        printf("  %c %-14s %s\n", (long)i == def ? '*' : ' ', d->spec, d->name);
        printf("      type %s, %u compute units, %s global memory, fp64 %s, fp16 %s\n", d->type,
               d->compute_units, mem, yes_no(d->fp64), yes_no(d->fp16));
        printf("      driver %s, %s\n", d->driver_version, d->opencl_version);
    }
    printf("Other backends:\n");
    printf("  %c %-14s %s\n", def == (long)n ? '*' : ' ', "host",
           "C reference backend (no OpenCL; float64 arithmetic, the numerical oracle)");
    if (def >= 0 && def < (long)n)
        printf("default: %s (%s)\n", infos[def].spec, defname);
    else if (def == (long)n)
        printf("default: host (%s)\n", defname);
    else if (defname[0])
        printf("default: %s\n", defname);
    else
        printf("default: none (%s)\n", why);
    const char *env = getenv("CLOPT_DEVICE");
    if (env && *env) printf("         (chosen by CLOPT_DEVICE=%s)\n", env);
}

static void put_json_device(cli_buf *b, const clopt_device_info *d, int is_default) {
    cli_buf_puts(b, "    {\"spec\": ");
    cli_buf_put_jstring(b, d->spec);
    cli_buf_puts(b, ", \"backend\": \"opencl\", \"platform\": ");
    cli_buf_put_jstring(b, d->platform);
    cli_buf_puts(b, ", \"name\": ");
    cli_buf_put_jstring(b, d->name);
    cli_buf_puts(b, ", \"type\": ");
    cli_buf_put_jstring(b, d->type);
    cli_buf_printf(b, ", \"compute_units\": %u, \"global_mem_bytes\": %llu, ", d->compute_units,
                   d->global_mem_bytes);
    cli_buf_printf(b, "\"fp64\": %s, \"fp16\": %s, \"driver_version\": ",
                   d->fp64 ? "true" : "false", d->fp16 ? "true" : "false");
    cli_buf_put_jstring(b, d->driver_version);
    cli_buf_puts(b, ", \"opencl_version\": ");
    cli_buf_put_jstring(b, d->opencl_version);
    cli_buf_printf(b, ", \"default\": %s}", is_default ? "true" : "false");
}

static int print_json(const clopt_device_info *infos, size_t n, long def, const char *defname,
                      const char *why) {
    cli_buf b = {0};
    cli_buf_puts(&b, "{\n  \"devices\": [\n");
    for (size_t i = 0; i < n; i++) {
        put_json_device(&b, &infos[i], (long)i == def);
        cli_buf_puts(&b, ",\n");
    }
    cli_buf_printf(&b, "    {\"spec\": \"host\", \"backend\": \"host\", \"name\": "
                       "\"host (C reference backend)\", \"type\": \"host\", \"default\": %s}\n",
                   def == (long)n ? "true" : "false");
    cli_buf_puts(&b, "  ],\n  \"default\": ");
    if (def >= 0 && def < (long)n) cli_buf_put_jstring(&b, infos[def].spec);
    else if (def == (long)n) cli_buf_puts(&b, "\"host\"");
    else cli_buf_puts(&b, "null");
    cli_buf_puts(&b, ",\n  \"default_device_name\": ");
    if (defname[0]) cli_buf_put_jstring(&b, defname);
    else cli_buf_puts(&b, "null");
    if (!defname[0]) {
        cli_buf_puts(&b, ",\n  \"default_error\": ");
        cli_buf_put_jstring(&b, why);
    }
    cli_buf_puts(&b, "\n}\n");
    int rc = CLI_EXIT_OK;
    if (b.oom) {
        fprintf(stderr, "clopt devices: out of memory\n");
        rc = CLI_EXIT_FAIL;
    } else {
        fputs(b.s, stdout);
    }
    cli_buf_free(&b);
    return rc;
}

int cli_cmd_devices(int argc, char **argv) {
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            cli_help_devices(stdout);
            return CLI_EXIT_OK;
        }
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
            continue;
        }
        fprintf(stderr, "clopt devices: unknown argument '%s'\nusage: clopt devices [--json]\n",
                argv[i]);
        return CLI_EXIT_USAGE;
    }
    size_t n = 0;
    clopt_status st = clopt_device_list(NULL, 0, &n);
    clopt_device_info *infos = NULL;
    if (st == CLOPT_OK && n) {
        infos = calloc(n, sizeof *infos);
        if (!infos) {
            fprintf(stderr, "clopt devices: out of memory\n");
            return CLI_EXIT_FAIL;
        }
        size_t got = 0;
        st = clopt_device_list(infos, n, &got);
        if (got < n) n = got;
    }
    if (st != CLOPT_OK) {
        fprintf(stderr, "clopt devices: listing the OpenCL devices failed: %s (%s)\n",
                clopt_status_string(st), clopt_status_name(st));
        free(infos);
        return CLI_EXIT_FAIL;
    }
    size_t nplat = 0;
    for (size_t i = 0; i < n; i++) {
        int seen = 0;
        for (size_t k = 0; k < i; k++) seen |= strcmp(infos[k].platform, infos[i].platform) == 0;
        nplat += !seen;
    }
    char defname[300], why[512];
    long def = find_default(infos, n, defname, sizeof defname, why, sizeof why);
    int rc = CLI_EXIT_OK;
    if (json) rc = print_json(infos, n, def, defname, why);
    else print_text(infos, n, nplat, def, defname, why);
    free(infos);
    return rc;
}
