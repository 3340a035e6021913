/* Contexts: device specs, the CLOPT_DEVICE default, errors of clopt_context_create, the device
 * list, and the OpenCL interop getters. Suites with "pocl" in their name need an OpenCL device. */
#define CL_TARGET_OPENCL_VERSION 120
#include "clopt/clopt_cl.h"
#include "test_util.h"

TU_SUITE(context_host);
TU_SUITE(context_pocl);

/* A context pointer value that clopt_context_create must leave alone on failure. */
#define SENTINEL ((clopt_context *)(uintptr_t)0x5eed)

Test(context_host, host_backend) {
    clopt_context *ctx = tu_context("host");
    cr_assert_str_eq(clopt_context_backend_name(ctx), "host");
    cr_assert(strstr(clopt_context_device_name(ctx), "host"), "device name '%s'",
              clopt_context_device_name(ctx));
    cr_assert_str_eq(clopt_context_last_error(ctx), "");
    cr_assert_eq(clopt_context_last_cl_error(ctx), 0);
    TU_OK(ctx, clopt_finish(ctx));
    clopt_context_destroy(ctx);
    /* The backend name is matched case-insensitively. */
    ctx = tu_context("HOST");
    cr_assert_str_eq(clopt_context_backend_name(ctx), "host");
    clopt_context_destroy(ctx);
}

Test(context_host, null_arguments) {
    cr_assert_eq(clopt_context_create("host", NULL), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(clopt_last_create_error(), "out"), "create error: '%s'",
              clopt_last_create_error());
    clopt_context_destroy(NULL); /* allowed */
    cr_assert(clopt_context_last_error(NULL) != NULL);
    cr_assert_eq(clopt_finish(NULL), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(clopt_context_backend_name(NULL), "");
    clopt_free(NULL); /* allowed */
}

/* CLOPT_ARENA_MB must be a whole number of MiB: anything else used to mean the default. */
Test(context_host, arena_mb_validated) {
    const char *bad[] = {"abc", "-5", "0", "12x", "1.5", " ", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_eq(setenv("CLOPT_ARENA_MB", bad[i], 1), 0);
        clopt_context *ctx = (clopt_context *)&ctx;
        cr_assert_eq(clopt_context_create("host", &ctx), CLOPT_ERR_BAD_VALUE, "'%s'", bad[i]);
        cr_assert_eq(ctx, (clopt_context *)&ctx, "'%s': out written on failure", bad[i]);
        const char *e = clopt_last_create_error();
        cr_assert(strstr(e, "CLOPT_ARENA_MB") && strstr(e, bad[i]), "'%s': %s", bad[i], e);
    }
    cr_assert_eq(setenv("CLOPT_ARENA_MB", "2", 1), 0);
    clopt_context *ctx = tu_context("host");
    clopt_context_destroy(ctx);
    cr_assert_eq(unsetenv("CLOPT_ARENA_MB"), 0);
}

/* CLOPT_DEVICE decides what NULL means, and an explicit spec wins over it. */
Test(context_host, null_device_uses_clopt_device) {
    cr_assert_eq(setenv("CLOPT_DEVICE", "host", 1), 0);
    clopt_context *ctx = tu_context(NULL);
    cr_assert_str_eq(clopt_context_backend_name(ctx), "host");
    clopt_context_destroy(ctx);
    /* An explicit spec is not overridden by the environment. */
    cr_assert_eq(setenv("CLOPT_DEVICE", "no-such-platform:gpu:3", 1), 0);
    ctx = tu_context("host");
    cr_assert_str_eq(clopt_context_backend_name(ctx), "host");
    clopt_context_destroy(ctx);
}

Test(context_host, interop_is_unsupported) {
    clopt_context *ctx = tu_context("host");
    cl_context c = NULL;
    cl_command_queue q = NULL;
    TU_ASSERT_STATUS(ctx, clopt_context_cl_context(ctx, &c), CLOPT_ERR_UNSUPPORTED);
    TU_ASSERT_STATUS(ctx, clopt_context_cl_queue(ctx, &q), CLOPT_ERR_UNSUPPORTED);
    cr_assert_null(c);
    cr_assert_null(q);
    tu_assert_error_mentions(ctx, "host");
    clopt_variable *v = tu_var_f32(ctx, "w", 4, NULL);
    cl_mem m = NULL;
    size_t off = 77;
    TU_ASSERT_STATUS(ctx, clopt_variable_cl_mem(v, &m, &off), CLOPT_ERR_UNSUPPORTED);
    cr_assert_null(m);
    cr_assert_eq(off, 77);
    cr_assert_eq(clopt_variable_cl_mem(NULL, &m, &off), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_context_cl_context(NULL, &c), CLOPT_ERR_INVALID_ARGUMENT);
    clopt_context_destroy(ctx);
}

Test(context_pocl, pocl_cpu_0) {
    clopt_context *ctx = tu_context(TU_POCL);
    cr_assert_str_eq(clopt_context_backend_name(ctx), "opencl");
    char dn[256];
    snprintf(dn, sizeof dn, "%s", clopt_context_device_name(ctx));
    cr_assert(strstr(dn, "Portable Computing Language"), "device name '%s'", dn);
    cr_assert_str_eq(clopt_context_last_error(ctx), "");
    cl_context c = NULL;
    cl_command_queue q = NULL;
    TU_OK(ctx, clopt_context_cl_context(ctx, &c));
    TU_OK(ctx, clopt_context_cl_queue(ctx, &q));
    cr_assert_not_null(c);
    cr_assert_not_null(q);
    /* The queue belongs to the context. */
    cl_context qc = NULL;
    cr_assert_eq(clGetCommandQueueInfo(q, CL_QUEUE_CONTEXT, sizeof qc, &qc, NULL), CL_SUCCESS);
    cr_assert_eq(qc, c);
    TU_ASSERT_STATUS(ctx, clopt_context_cl_context(ctx, NULL), CLOPT_ERR_INVALID_ARGUMENT);
    TU_OK(ctx, clopt_finish(ctx));
    clopt_context_destroy(ctx);
    /* Platform names match case-insensitively, and type and index have defaults. */
    const char *equivalent[] = {"POCL:CPU:0", "pocl", "pocl:cpu", "pocl:any:0", "portable:cpu:0",
                                "*:cpu:0", ":cpu:0", "pocl:cpu:"};
    for (size_t i = 0; i < sizeof equivalent / sizeof *equivalent; i++) {
        ctx = tu_context(equivalent[i]);
        cr_assert_str_eq(clopt_context_device_name(ctx), dn, "%s", equivalent[i]);
        cr_assert_str_eq(clopt_context_backend_name(ctx), "opencl", "%s", equivalent[i]);
        clopt_context_destroy(ctx);
    }
}

Test(context_pocl, null_device_uses_clopt_device) {
    cr_assert_eq(setenv("CLOPT_DEVICE", TU_POCL, 1), 0);
    clopt_context *ctx = tu_context(NULL);
    cr_assert_str_eq(clopt_context_backend_name(ctx), "opencl");
    clopt_context_destroy(ctx);
    /* Set but empty: the first GPU, else the first CPU device (pocl's CPU here). */
    cr_assert_eq(setenv("CLOPT_DEVICE", "", 1), 0);
    ctx = tu_context(NULL);
    cr_assert_str_eq(clopt_context_backend_name(ctx), "opencl");
    clopt_context_destroy(ctx);
    cr_assert_eq(unsetenv("CLOPT_DEVICE"), 0);
    ctx = tu_context(NULL);
    cr_assert_str_eq(clopt_context_backend_name(ctx), "opencl");
    clopt_context_destroy(ctx);
    /* A spec from the environment that matches nothing fails like an explicit one. */
    cr_assert_eq(setenv("CLOPT_DEVICE", "no-such-platform:cpu:0", 1), 0);
    clopt_context *out = SENTINEL;
    cr_assert_eq(clopt_context_create(NULL, &out), CLOPT_ERR_DEVICE_NOT_FOUND);
    cr_assert_eq(out, SENTINEL);
    cr_assert(strstr(clopt_last_create_error(), "no-such-platform:cpu:0"), "'%s'",
              clopt_last_create_error());
}

/* clopt_context_create(spec) fails with `want`, leaves the out pointer alone and names the spec
 * in clopt_last_create_error. */
static void expect_create_fails(const char *spec, clopt_status want) {
    clopt_context *out = SENTINEL;
    clopt_status st = clopt_context_create(spec, &out);
    cr_assert_eq(st, want, "'%s' gave %s", spec, clopt_status_name(st));
    cr_assert_eq(out, SENTINEL, "out written on failure for '%s'", spec);
    cr_assert(strstr(clopt_last_create_error(), spec), "error for '%s' is '%s'", spec,
              clopt_last_create_error());
}

Test(context_pocl, spec_matching_nothing) {
    const char *specs[] = {"no-such-platform:cpu:0", "pocl:cpu:7", "pocl:gpu:0",
                           "pocl:accelerator:0", "nvidia-xyz"};
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++)
        expect_create_fails(specs[i], CLOPT_ERR_DEVICE_NOT_FOUND);
    /* A later success does not leave a stale message behind. */
    clopt_context *ctx = tu_context("host");
    cr_assert_str_eq(clopt_last_create_error(), "");
    clopt_context_destroy(ctx);
}

Test(context_pocl, malformed_specs) {
    const char *specs[] = {"pocl:cpu:0:1", "pocl:cpu:0:", "pocl:banana:0", "pocl:CPUS:0",
                           "pocl:cpu:x", "pocl:cpu:-1", "pocl:cpu:1x",
                           "pocl:0", "a:b:c:d"};
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++)
        expect_create_fails(specs[i], CLOPT_ERR_INVALID_ARGUMENT);
    /* A platform name longer than any platform buffer. */
    char longspec[400];
    memset(longspec, 'p', sizeof longspec - 1);
    longspec[sizeof longspec - 1] = '\0';
    clopt_context *out = SENTINEL;
    clopt_status st = clopt_context_create(longspec, &out);
    cr_assert(st == CLOPT_ERR_INVALID_ARGUMENT || st == CLOPT_ERR_DEVICE_NOT_FOUND, "%s",
              clopt_status_name(st));
    cr_assert_eq(out, SENTINEL);
}

Test(context_pocl, device_list) {
    size_t count = 0;
    cr_assert_eq(clopt_device_list(NULL, 0, &count), CLOPT_OK);
    cr_assert_geq(count, 1, "no OpenCL device listed");
    cr_assert_eq(clopt_device_list(NULL, 0, NULL), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_device_list(NULL, 2, &count), CLOPT_ERR_INVALID_ARGUMENT);

    clopt_device_info infos[16];
    size_t n = 0;
    cr_assert_eq(clopt_device_list(infos, 16, &n), CLOPT_OK);
    cr_assert_eq(n, count);
    int found_pocl_cpu = 0;
    for (size_t i = 0; i < n && i < 16; i++) {
        const clopt_device_info *d = &infos[i];
        cr_assert(d->spec[0] && d->name[0] && d->platform[0], "device %zu incomplete", i);
        cr_assert(strcmp(d->type, "cpu") == 0 || strcmp(d->type, "gpu") == 0 ||
                      strcmp(d->type, "accelerator") == 0 || strcmp(d->type, "other") == 0,
                  "type '%s'", d->type);
        cr_assert_gt(d->compute_units, 0);
        cr_assert_gt(d->global_mem_bytes, 0);
        /* The spec it prints is one clopt_context_create accepts, for this very device. */
        clopt_context *ctx = tu_context(d->spec);
        cr_assert(strstr(clopt_context_device_name(ctx), d->name), "'%s' opened '%s', not '%s'",
                  d->spec, clopt_context_device_name(ctx), d->name);
        clopt_context_destroy(ctx);
        if (strcmp(d->spec, TU_POCL) == 0) found_pocl_cpu = 1;
    }
    cr_assert(found_pocl_cpu, "no device listed as %s", TU_POCL);

    /* A smaller capacity fills what fits and still counts all. */
    clopt_device_info one;
    memset(&one, 0, sizeof one);
    cr_assert_eq(clopt_device_list(&one, 1, &n), CLOPT_OK);
    cr_assert_eq(n, count);
    cr_assert_str_eq(one.spec, infos[0].spec);
}

/* Destroying a context releases the variables and optimizers still alive in it (ASan checks
 * that nothing leaks or is freed twice). */
static void destroy_with_live_objects(const char *spec) {
    clopt_context *ctx = tu_context(spec);
    float x[300] = {0};
    clopt_variable *a = tu_var_f32(ctx, "a", 300, x), *b = tu_var_f32(ctx, "b", 300, x);
    clopt_variable *g = tu_var_f32(ctx, "g", 300, x);
    clopt_optimizer *o = tu_optimizer(ctx, "{\"class_name\": \"Adam\", \"config\": {}}");
    clopt_variable *vars[] = {a, b}, *grads[] = {g, g};
    TU_OK(ctx, clopt_optimizer_apply(o, grads, vars, 2));
    clopt_context_destroy(ctx);
}

Test(context_host, destroy_releases_live_objects) { destroy_with_live_objects(TU_HOST); }
Test(context_pocl, destroy_releases_live_objects) { destroy_with_live_objects(TU_POCL); }
