/* `clopt tune`: searches the kernel parameters (clopt_kernel_params, clopt/experimental.h) for a
 * device and writes the winner into the user tuning database; `--show` prints the parameters in
 * force and the entry they came from. Candidates are checked against the host backend, then
 * timed against the defaults round by round (the two steps of a round back to back, which goes
 * first alternating), with bench's helpers (bench_common.c). A candidate is kept only when its
 * median paired ratio beats the defaults' beyond the noise on every kernel and workload.
 * float32 only; the parameters are per device (one set for every kernel), as the library
 * applies them. */
#define _POSIX_C_SOURCE 200809L /* strdup, strtok_r, setenv */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "clopt/experimental.h"
#include "bench_internal.h"
#include "tune_gemm.h"

#define MAX_CAND 512
#define MAX_KW 64
#define ROUNDS 5

typedef struct tune_args {
    const char *device, *kernels, *db, *shapes;
    double budget, fraction;
    int json, show, quiet;
} tune_args;

typedef struct kw {
    const bench_opt *opt;
    size_t tensors, n;
    double def_ns, noise;
    double ratio[MAX_CAND], ns[MAX_CAND]; /* per candidate; ratio 0: not timed */
} kw;

void cli_help_tune(FILE *out) {
    fprintf(out,
            "usage: clopt tune [--device SPEC] [--kernels LIST|all] [--budget SECONDS]\n"
            "                  [--fraction F] [--shapes TxN,...] [--db FILE] [--json] [--quiet]\n"
            "       clopt tune --show [--device SPEC] [--db FILE]\n"
            "\n"
            "Searches the kernel parameters (block_chunks, max_blocks, form, item_blocks) for the\n"
            "device (the defaults' one-parameter neighbours first, then the grid at random) and\n"
            "writes the best set into the tuning database (--db, else CLOPT_TUNING_DB, else\n"
            "tuning.json in the cache directory). Each candidate is checked against the host\n"
            "backend, then timed against the defaults (%d interleaved rounds, median paired\n"
            "ratio); it wins only if it is faster beyond the noise overall and never slower\n"
            "beyond it on any kernel and shape. float32 steps.\n"
            "  --kernels LIST   optimizers (class names, comma-separated; default SGD,Adam)\n"
            "  --budget S       seconds for the search (default 120)\n"
            "  --fraction F     try a random fraction of the candidates (default 1)\n"
            "  --shapes TxN,... tensors x elements each (default 1x16777216,2000x4096,10000x256)\n"
            "  --show           print the parameters in force and where they came from\n",
            ROUNDS);
    tune_gemm_help(out);
}

static int parse_args(int argc, char **argv, tune_args *a) {
    *a = (tune_args){NULL, "SGD,Adam", NULL, "1x16777216,2000x4096,10000x256", 120, 1, 0, 0, 0};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(o, "--json") == 0) a->json = 1;
        else if (strcmp(o, "--show") == 0) a->show = 1;
        else if (strcmp(o, "--quiet") == 0) a->quiet = 1;
        else if (!v) {
            fprintf(stderr, "clopt tune: unknown option or missing value: '%s'\n", o);
            return -1;
        } else if (strcmp(o, "--device") == 0) a->device = argv[++i];
        else if (strcmp(o, "--kernels") == 0) a->kernels = argv[++i];
        else if (strcmp(o, "--db") == 0) a->db = argv[++i];
        else if (strcmp(o, "--shapes") == 0) a->shapes = argv[++i];
        else if (strcmp(o, "--budget") == 0 || strcmp(o, "--fraction") == 0) {
            char *end;
            const double x = strtod(argv[++i], &end);
            const int budget = o[2] == 'b';
            if (*end || !(x > 0) || (!budget && x > 1)) {
                fprintf(stderr, "clopt tune: %s wants %s, not '%s'\n", o,
                        budget ? "a positive number of seconds" : "a fraction in (0, 1]",
                        argv[i]);
                return -1;
            }
            *(budget ? &a->budget : &a->fraction) = x;
        } else {
            fprintf(stderr, "clopt tune: unknown option '%s'\n", o);
            return -1;
        }
    }
    return 0;
}

/* The workloads: each kernel in the list times each shape. */
static int parse_workloads(const tune_args *a, kw *out, size_t *nout) {
    size_t n = 0;
    char *ks = strdup(a->kernels), *save = NULL;
    if (!ks) return -1;
    for (char *k = strtok_r(ks, ",", &save); k; k = strtok_r(NULL, ",", &save)) {
        const int all = strcmp(k, "all") == 0;
        for (size_t i = 0; i < bench_nopts; i++) {
            const bench_opt *o = &bench_opts[i];
            if ((!all && o != bench_find_opt(k)) || !o->f32) continue;
            const char *s = a->shapes;
            while (s && *s) {
                char *end;
                const unsigned long long t = strtoull(s, &end, 10);
                const unsigned long long e = *end == 'x' ? strtoull(end + 1, &end, 10) : 0;
                if (!t || !e || (*end && *end != ',') || n >= MAX_KW) {
                    fprintf(stderr, "clopt tune: bad --shapes '%s' (TENSORSxELEMENTS,...; at most "
                                    "%d workloads)\n", a->shapes, MAX_KW);
                    free(ks);
                    return -1;
                }
                out[n] = (kw){o, (size_t)t, (size_t)(t * e), 0, 0, {0}, {0}};
                n++;
                s = *end ? end + 1 : end;
            }
        }
        if (!all && !bench_find_opt(k)) {
            fprintf(stderr, "clopt tune: unknown optimizer '%s' in --kernels\n", k);
            free(ks);
            return -1;
        }
    }
    free(ks);
    *nout = n;
    if (!n) fprintf(stderr, "clopt tune: no kernels to tune (Muon's GEMMs: --gemm)\n");
    return n ? 0 : -1;
}

static int same_params(const clopt_kernel_params *a, const clopt_kernel_params *b) {
    return a->block_chunks == b->block_chunks && a->max_blocks == b->max_blocks &&
           a->form == b->form && a->item_blocks == b->item_blocks;
}

/* Appends p unless listed already (or full). */
static void add_candidate(clopt_kernel_params *c, size_t *n, const clopt_kernel_params *p) {
    for (size_t i = 0; i < *n; i++)
        if (same_params(&c[i], p)) return;
    if (*n < MAX_CAND) c[(*n)++] = *p;
}

/* The candidates: the defaults first; then their one-parameter neighbours, nearest first (a
 * short budget tries what most likely wins: one change at a time); then the grid (or a random
 * fraction of it) shuffled. The form "auto" of the defaults is the device's own: its neighbour
 * is each explicit form. */
static size_t candidates(double fraction, clopt_kernel_params *c) {
    static const int bc[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
    static const int mb[] = {256, 1024, 4096, 16384, 65536};
    static const int ib[] = {1, 2, 4, 8, 16, 32};
    static const int near_ib[] = {4, 16, 2, 8, 32}, near_bc[] = {32, 8, 64, 4};
    static const int near_mb[] = {16384, 1024};
    size_t n = 0;
    clopt_kernel_params d;
    clopt_kernel_params_default(&d);
    c[n++] = d;
    for (size_t i = 0; i < 5; i++) {
        clopt_kernel_params p = d;
        p.item_blocks = near_ib[i];
        add_candidate(c, &n, &p);
        if (i < 4) {
            p = d;
            p.block_chunks = near_bc[i];
            add_candidate(c, &n, &p);
        }
        if (i < 2) {
            p = d;
            p.max_blocks = near_mb[i];
            add_candidate(c, &n, &p);
            p = d;
            p.form = CLOPT_KERNEL_FORM_GROUP + (int)i;
            add_candidate(c, &n, &p);
        }
    }
    const size_t grid = n;
    for (size_t i = 0; i < sizeof bc / sizeof *bc; i++)
        for (size_t j = 0; j < sizeof mb / sizeof *mb; j++)
            for (int f = CLOPT_KERNEL_FORM_GROUP; f <= CLOPT_KERNEL_FORM_LOOP; f++)
                for (size_t k = 0; k < sizeof ib / sizeof *ib; k++) {
                    const clopt_kernel_params p = {bc[i], mb[j], f, ib[k]};
                    if ((double)rand() / RAND_MAX < fraction) add_candidate(c, &n, &p);
                }
    for (size_t i = n - 1; i > grid; i--) { /* Fisher-Yates over the grid's part */
        const size_t j = grid + (size_t)rand() % (i - grid + 1);
        const clopt_kernel_params t = c[i];
        c[i] = c[j];
        c[j] = t;
    }
    return n;
}

static const char *form_name(int f) {
    return f == CLOPT_KERNEL_FORM_GROUP ? "group" : f == CLOPT_KERNEL_FORM_LOOP ? "loop" : "auto";
}

/* Two steps of `o` on a few small tensors on the host and on the device under p: every element
 * within 1e-4 (absolute, or relative above 1), as bench's check against the C loop. */
static int validate(const tune_args *a, const bench_opt *o, const clopt_kernel_params *p) {
    clopt_context *ctx[2] = {NULL, NULL};
    cside c[2] = {{0}, {0}};
    cbench b;
    memset(&b, 0, sizeof b);
    bench_opt layout = *o;
    layout.nslots = 0;
    char *json = bench_config_json(o, CB_CLIP_NONE);
    int ok = 0, skipped = 0;
    char note[256];
    if (!json || cbench_init(&b, &layout, CLOPT_FLOAT32, 3 * 1517, 3, CB_CLIP_NONE)) goto out;
    for (int s = 0; s < 2; s++) {
        if (clopt_context_create(s ? a->device : "host", &ctx[s]) != CLOPT_OK) goto out;
        if (s && clopt_context_set_kernel_params(ctx[s], p) != CLOPT_OK) goto out;
        if (cside_vars(ctx[s], &c[s], &b, CLOPT_FLOAT32) ||
            cside_optimizer(ctx[s], &c[s], json, &skipped, note, sizeof note) ||
            bench_clopt_step(ctx[s], &c[s]) || bench_clopt_step(ctx[s], &c[s]))
            goto out;
    }
    ok = 1;
    for (size_t k = 0; k < c[0].n && ok; k++) {
        const size_t n = (size_t)clopt_variable_size(c[0].vars[k]);
        float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
        ok = x && y && clopt_variable_read(c[0].vars[k], x, n * sizeof *x) == CLOPT_OK &&
             clopt_variable_read(c[1].vars[k], y, n * sizeof *y) == CLOPT_OK;
        for (size_t i = 0; ok && i < n; i++)
            ok = fabs((double)x[i] - y[i]) <= 1e-4 * fmax(1.0, fabs((double)x[i]));
        free(x);
        free(y);
    }
out:
    for (int s = 0; s < 2; s++) {
        cside_free(&c[s]);
        clopt_context_destroy(ctx[s]);
    }
    cbench_free(&b);
    free(json);
    return ok;
}

/* One step of side c under params p (the form is the context's at launch time). */
static int step(clopt_context *ctx, cside *c, const clopt_kernel_params *p, double *ns) {
    clopt_context_set_kernel_params(ctx, p);
    const double t0 = bench_now_ns();
    const int rc = bench_clopt_step(ctx, c);
    *ns = bench_now_ns() - t0;
    return rc;
}

/* Times candidates 1.. of `cand` against the defaults on workload w until `deadline`;
 * candidate 0 (the defaults against themselves) gives the noise. */
static int time_workload(clopt_context *ctx, const bench_args *ba, kw *w,
                         const clopt_kernel_params *cand, size_t ncand, const char *const *bad,
                         double deadline) {
    cbench b;
    memset(&b, 0, sizeof b);
    bench_opt layout = *w->opt;
    layout.nslots = 0;
    cside d = {0};
    int rc = -1, skipped = 0;
    char note[256];
    char *json = bench_config_json(w->opt, CB_CLIP_NONE);
    if (!json || cbench_init(&b, &layout, CLOPT_FLOAT32, w->n, w->tensors, CB_CLIP_NONE)) goto out;
    if (cside_vars(ctx, &d, &b, CLOPT_FLOAT32)) goto out;
    clopt_context_set_kernel_params(ctx, &cand[0]);
    if (cside_optimizer(ctx, &d, json, &skipped, note, sizeof note)) goto out;
    double t, td[ROUNDS], tc[ROUNDS], pr[ROUNDS];
    if (step(ctx, &d, &cand[0], &t)) goto out;
    for (size_t k = 0; k < ncand && (k == 0 || bench_now_ns() < deadline); k++) {
        if (bad[k]) continue;
        cside c = {0};
        if (cside_vars(ctx, &c, &b, CLOPT_FLOAT32)) goto out;
        clopt_context_set_kernel_params(ctx, &cand[k]);
        if (cside_optimizer(ctx, &c, json, &skipped, note, sizeof note) ||
            step(ctx, &c, &cand[k], &t)) {
            cside_free(&c);
            goto out;
        }
        bench_progress(ba, 1, "clopt tune: %s %zu x %zu: candidate %zu/%zu {%d, %d, %s, %d}",
                       w->opt->name, w->tensors, w->n / w->tensors, k + 1, ncand,
                       cand[k].block_chunks, cand[k].max_blocks, form_name(cand[k].form),
                       cand[k].item_blocks);
        for (int r = 0; r < ROUNDS; r++)
            for (int s = 0; s < 2; s++) {
                const int cand_side = (s == 0) == (r % 2 == 0);
                if (cand_side ? step(ctx, &c, &cand[k], &tc[r]) : step(ctx, &d, &cand[0], &td[r])) {
                    cside_free(&c);
                    goto out;
                }
            }
        cside_free(&c);
        for (int r = 0; r < ROUNDS; r++) pr[r] = tc[r] / td[r];
        w->ratio[k] = bench_median(pr, ROUNDS);
        w->ns[k] = bench_median(tc, ROUNDS) / (double)w->n;
        if (k == 0) {
            w->def_ns = bench_median(td, ROUNDS) / (double)w->n;
            /* the defaults against themselves: the median's distance from 1 plus the median
             * absolute deviation of the rounds (robust to a round another process slowed);
             * at least 3% */
            double dev[ROUNDS];
            for (int r = 0; r < ROUNDS; r++) dev[r] = fabs(pr[r] - w->ratio[0]);
            w->noise = fmax(0.03, fabs(w->ratio[0] - 1) + bench_median(dev, ROUNDS));
        }
    }
    rc = 0;
out:
    if (rc) fprintf(stderr, "clopt tune: %s: %s\n", w->opt->name, clopt_context_last_error(ctx));
    cside_free(&d);
    cbench_free(&b);
    free(json);
    return rc;
}

/* The winner: timed everywhere, never slower than the defaults beyond the noise, and with the
 * best geometric mean below 1 - the mean noise. 0 (the defaults) when none. */
static size_t choose(const kw *w, size_t nw, size_t ncand, double *gain) {
    size_t best = 0;
    double best_g = 1, noise = 0;
    for (size_t j = 0; j < nw; j++) noise += w[j].noise / (double)nw;
    for (size_t k = 1; k < ncand; k++) {
        double lg = 0;
        int ok = 1;
        for (size_t j = 0; j < nw && ok; j++) {
            ok = w[j].ratio[k] > 0 && w[j].ratio[k] <= 1 + w[j].noise;
            lg += ok ? log(w[j].ratio[k]) / (double)nw : 0;
        }
        if (ok && exp(lg) < 1 - noise && exp(lg) < best_g) {
            best = k;
            best_g = exp(lg);
        }
    }
    *gain = best_g;
    return best;
}

static int show(clopt_context *ctx) {
    clopt_kernel_params p;
    const char *origin;
    clopt_device_identity id;
    clopt_context_kernel_params(ctx, &p, &origin);
    clopt_context_device_identity(ctx, &id);
    printf("device: %s\n  vendor \"%s\", type \"%s\", driver \"%s\"\n", id.device, id.vendor,
           id.type, id.driver);
    printf("parameters (every kernel): block_chunks %d, max_blocks %d, form %s, item_blocks %d\n"
           "from: %s\n",
           p.block_chunks, p.max_blocks, form_name(p.form), p.item_blocks, origin);
    tune_gemm_show(ctx);
    return 0;
}

static int tune(clopt_context *ctx, const tune_args *a, const char *path) {
    static kw w[MAX_KW];
    static clopt_kernel_params cand[MAX_CAND];
    static const char *bad[MAX_CAND];
    size_t nw;
    if (parse_workloads(a, w, &nw)) return 2;
    srand((unsigned)bench_now_ns());
    const size_t ncand = candidates(a->fraction, cand);
    const double start = bench_now_ns(), budget_ns = a->budget * 1e9;
    bench_args ba = {0};
    ba.quiet = a->quiet || a->json;
    /* validation takes up to a fifth of the budget; unchecked candidates are not timed */
    size_t checked = 1;
    for (; checked < ncand && bench_now_ns() - start < budget_ns / 5; checked++) {
        bench_progress(&ba, 1, "clopt tune: checking candidate %zu/%zu against the host",
                       checked + 1, ncand);
        for (size_t j = 0; j < nw && !bad[checked]; j++)
            if ((j == 0 || w[j].opt != w[j - 1].opt) && !validate(a, w[j].opt, &cand[checked]))
                bad[checked] = w[j].opt->name;
    }
    for (size_t j = 0; j < nw; j++) {
        const double share = (budget_ns - (bench_now_ns() - start)) / (double)(nw - j);
        if (time_workload(ctx, &ba, &w[j], cand, checked, bad, bench_now_ns() + share)) return 1;
    }
    bench_progress_done(&ba);
    double gain;
    const size_t best = choose(w, nw, checked, &gain);
    clopt_device_identity id;
    clopt_context_device_identity(ctx, &id);
    json_t *measured = json_array(), *doc = json_object();
    for (size_t j = 0; j < nw; j++)
        json_array_append_new(
            measured, json_pack("{s:s, s:I, s:I, s:f, s:f, s:f}", "kernel", w[j].opt->name,
                                "tensors", (json_int_t)w[j].tensors, "elements",
                                (json_int_t)w[j].n, "default_ns_per_el", w[j].def_ns,
                                "tuned_ns_per_el", best ? w[j].ns[best] : w[j].def_ns,
                                "paired_ratio", best ? w[j].ratio[best] : 1.0));
    size_t timed = 0, rejected = 0;
    for (size_t k = 1; k < checked; k++) rejected += bad[k] != NULL;
    for (size_t k = 1; k < checked; k++) {
        size_t j = 0;
        while (j < nw && w[j].ratio[k] > 0) j++;
        timed += j == nw;
    }
    json_object_set(doc, "measured", measured);
    const int rc = cli_tune_db_put(
        path, &id,
        json_pack("{s:{s:i, s:i, s:s, s:i}, s:o}", "params", "block_chunks",
                  cand[best].block_chunks, "max_blocks", cand[best].max_blocks, "form",
                  form_name(cand[best].form), "item_blocks", cand[best].item_blocks,
                  "measured", measured));
    if (a->json) {
        json_object_set_new(doc, "device", json_string(id.device));
        json_object_set_new(doc, "database", json_string(path));
        json_object_set_new(doc, "candidates", json_integer((json_int_t)ncand - 1));
        json_object_set_new(doc, "checked", json_integer((json_int_t)checked - 1));
        json_object_set_new(doc, "rejected", json_integer((json_int_t)rejected));
        json_object_set_new(doc, "timed_everywhere", json_integer((json_int_t)timed));
        json_object_set_new(doc, "params", json_pack("{s:i, s:i, s:s, s:i}", "block_chunks",
                                                     cand[best].block_chunks, "max_blocks",
                                                     cand[best].max_blocks, "form",
                                                     form_name(cand[best].form), "item_blocks",
                                                     cand[best].item_blocks));
        json_object_set_new(doc, "tuned", json_boolean(best != 0));
        bench_json_print(doc);
        return rc ? 1 : 0;
    }
    json_decref(doc);
    printf("clopt tune: %s\n%zu candidates, %zu checked against the host (%zu rejected), %zu "
           "timed on every workload; %.0f s\n\n",
           clopt_context_device_name(ctx), ncand - 1, checked - 1, rejected, timed,
           (bench_now_ns() - start) / 1e9);
    printf("%-18s %-15s %12s %12s %8s %7s\n", "kernel", "shape", "default ns/el",
           "tuned ns/el", "speedup", "noise");
    for (size_t j = 0; j < nw; j++) {
        char shape[48];
        snprintf(shape, sizeof shape, "%zu x %zu", w[j].tensors, w[j].n / w[j].tensors);
        const double r = best ? w[j].ratio[best] : 1;
        printf("%-18s %-15s %12.3f %12.3f %7.2fx %6.1f%%\n", w[j].opt->name, shape, w[j].def_ns,
               best ? w[j].ns[best] : w[j].def_ns, 1 / r, 100 * w[j].noise);
    }
    printf("\nparameters: block_chunks %d, max_blocks %d, form %s, item_blocks %d (%s)\n"
           "%s %s\n",
           cand[best].block_chunks, cand[best].max_blocks, form_name(cand[best].form),
           cand[best].item_blocks,
           best ? "tuned" : "no candidate beat the defaults beyond the noise: defaults kept",
           rc ? "NOT written (see the error above):" : "written to", path);
    return rc ? 1 : 0;
}

int cli_cmd_tune(int argc, char **argv) {
    if (tune_gemm_wanted(argc, argv)) return tune_gemm_main(argc, argv);
    tune_args a;
    if (parse_args(argc, argv, &a)) return 2;
    if (a.db) setenv("CLOPT_TUNING_DB", a.db, 1);
    char *path = clopt_tuning_db_path();
    clopt_context *ctx = NULL;
    clopt_status st = clopt_context_create(a.device, &ctx);
    if (st != CLOPT_OK) {
        fprintf(stderr, "clopt tune: %s\n", clopt_last_create_error());
        free(path);
        return 1;
    }
    int rc;
    if (a.show) rc = show(ctx);
    else if (!path || !*path) {
        fprintf(stderr, "clopt tune: no database to write (CLOPT_TUNING_DB is off and no --db, "
                        "or no cache directory)\n");
        rc = 2;
    } else {
        cli_make_parents(path); /* the cache directory may not exist yet */
        rc = tune(ctx, &a, path);
    }
    clopt_context_destroy(ctx);
    free(path);
    return rc;
}
