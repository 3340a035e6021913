/* `clopt replay`: runs an optimizer over recorded gradients and prints every step's variables
 * (docs/replay.md). The case is read and validated first (replay_case.c); then one context,
 * the model variables, one gradient variable per model variable (reused by every step), and the
 * optimizer are made, and each step writes its gradients and calls clopt_optimizer_apply.
 *
 * "replicas": N, the case runs through a strategy (clopt/distribute.h), one replica per device
 * of --devices, or N replicas sharing the one device: each replica's gradients go through its
 * own pipeline (unscale, accumulate, clip) before the sum, in Keras 3 on TF's order. The
 * output is replica 0's, and with --all-replicas every replica's variables too. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli_internal.h"
#include "tool_internal.h"

void cli_help_replay(FILE *out) {
    fputs("usage: clopt replay [--device SPEC] [--output FILE] [--max-input-mb N] CASE.json\n"
          "       clopt replay --devices SPEC,SPEC,... [--all-replicas] [--output FILE]\n"
          "                    [--max-input-mb N] CASE.json\n"
          "       mpiexec -n N clopt replay --mpi [--device SPEC] [--output FILE] CASE.json\n"
          "\n"
          "Runs the optimizer of CASE.json over its recorded gradients and prints, as JSON,\n"
          "every variable after every step, the learning rate each step used, and the\n"
          "optimizer's own variables after the last step. CASE.json may be '-' for standard\n"
          "input. The format is described in docs/replay.md:\n"
          "\n"
          "  {\"optimizer\": {\"class_name\": \"Adam\", \"config\": {\"learning_rate\": 0.001}},\n"
          "   \"variables\": [{\"name\": \"w\", \"dtype\": \"float32\", \"shape\": [2],\n"
          "                  \"value\": [1, 2]},\n"
          "                 {\"name\": \"b\", \"dtype\": \"float64\", \"shape\": [], \"value\": [0]}],\n"
          "   \"steps\": [[[0.1, 0.2], [1]],        one gradient per variable, flat,\n"
          "             [[0.3, 0.4], null]]}      or null for \"no gradient\"\n"
          "\n"
          "With \"replicas\": N, each step is a list of N such gradient lists, one per\n"
          "replica. Each replica unscales, accumulates and clips its own gradients, then\n"
          "they are summed in replica order and every replica applies the same update\n"
          "(Keras 3 on TensorFlow, tf.distribute's SUM). The N replicas share the one\n"
          "device unless --devices gives one device per replica.\n"
          "\n"
          "options:\n"
          "  -d, --device SPEC   the device, as clopt_context_create takes it: \"host\" (the C\n"
          "                      reference backend), \"pocl:cpu:0\", ... (see `clopt devices`).\n"
          "                      Default: $CLOPT_DEVICE, else the first GPU, else the first CPU.\n"
          "  --devices LIST      a case with \"replicas\": N on N devices, one replica each\n"
          "                      (comma-separated specs: \"pocl:cpu:0,pocl:cpu:1\", \"host,host\")\n"
          "  --all-replicas      add to each step \"replica_variables\": every replica's\n"
          "                      variables, read from its own device\n"
          "  --mpi               a case with \"replicas\": N on N MPI ranks (mpiexec -n N):\n"
          "                      replica r on rank r, on its --device; a list there\n"
          "                      (\"host,host\") gives the rank several replicas, numbered\n"
          "                      rank by rank. Rank 0 writes the result (its first\n"
          "                      replica's), or every rank its own with {rank} in FILE\n"
          "  -o, --output FILE   write the result to FILE instead of standard output (written\n"
          "                      only when the whole replay succeeded)\n"
          "  --max-input-mb N    refuse a case larger than N MiB (default 256; the case is\n"
          "                      read whole before it is checked)\n"
          "  -h, --help          show this help\n"
          "\n"
          "Numbers: float64 values are written with 17 significant digits and float32 with\n"
          "9; float16 and bfloat16 values (each exactly a float32), and the learning rate,\n"
          "with the fewest digits that read back to the same float32. NaN and infinities\n"
          "are written as the strings \"NaN\", \"Infinity\" and \"-Infinity\", so that strict\n"
          "JSON parsers accept the output; CASE.json may hold them so, or as Python's json\n"
          "module writes them (bare NaN, Infinity, -Infinity). A finite number beyond the\n"
          "range of its variable's dtype is refused.\n"
          "\n"
          "Exit status: 0 on success; 1 with a one-line error on stderr naming the file and\n"
          "the JSON path (\"case.json: steps[3][0]: expected 6 numbers ...\") when the case is\n"
          "invalid or the library fails; 2 for bad usage.\n",
          out);
}

typedef struct replay {
    const cli_case *c;
    clopt_context *ctx; /* replica 0's with a strategy */
    clopt_optimizer *opt; /* replica 0's with a strategy */
    clopt_strategy *strat; /* a case with "replicas" */
    clopt_mirrored_optimizer *mopt;
    size_t nrep; /* replicas in this process */
    size_t rep0; /* the case's replica of local replica 0 (its rank with --mpi) */
    int mpi;     /* --mpi: one replica per rank */
    int all_replicas;
    clopt_variable **rvars, **rgrads, **rstep; /* with a strategy: nrep rows of nvars */
    clopt_variable **vars, **grads, **step_grads;
    void *stage; /* host staging, big enough for the largest variable */
    size_t stage_cap;
    cli_buf out;
} replay;

/* Prints a library failure: one line with the context, the message and the status name; any
 * further lines of the message (a build log) follow, indented. */
static int lib_fail(const char *where, clopt_status st, const char *msg) {
    if (!msg || !*msg) msg = clopt_status_string(st);
    const char *nl = strchr(msg, '\n');
    int first = nl ? (int)(nl - msg) : (int)strlen(msg);
    fprintf(stderr, "%s: %.*s (%s)\n", where, first, msg, clopt_status_name(st));
    while (nl) {
        const char *line = nl + 1;
        nl = strchr(line, '\n');
        int len = nl ? (int)(nl - line) : (int)strlen(line);
        if (len) fprintf(stderr, "  %.*s\n", len, line);
    }
    return CLI_EXIT_FAIL;
}

static int create_variables(replay *r) {
    const cli_case *c = r->c;
    char where[256];
    /* Model variables first, then the gradients: each group is contiguous in the arena, so a
     * step is one launch per dtype. */
    for (size_t j = 0; j < c->nvars; j++) {
        const cli_var *v = &c->vars[j];
        for (size_t k = 0; k < v->size; k++) {
            double x = 0;
            cli_json_number(json_array_get(v->value, k), &x);
            cli_store(r->stage, v->dtype, k, x);
        }
        clopt_status st = clopt_variable_create(r->ctx, v->name, v->dtype, v->ndim, v->shape,
                                                r->stage, &r->vars[j]);
        if (st != CLOPT_OK) {
            snprintf(where, sizeof where, "%s: variables[%zu] ('%s', %s)", c->file, j, v->name,
                     clopt_dtype_name(v->dtype));
            return lib_fail(where, st, clopt_context_last_error(r->ctx));
        }
    }
    for (size_t j = 0; j < c->nvars; j++) {
        const cli_var *v = &c->vars[j];
        char name[160];
        snprintf(name, sizeof name, "%s/gradient", v->name);
        clopt_status st = clopt_variable_create(r->ctx, name, v->dtype, v->ndim, v->shape, NULL,
                                                &r->grads[j]);
        if (st != CLOPT_OK) {
            snprintf(where, sizeof where, "%s: gradient of variables[%zu] ('%s', %s)", c->file,
                     j, v->name, clopt_dtype_name(v->dtype));
            return lib_fail(where, st, clopt_context_last_error(r->ctx));
        }
    }
    return CLI_EXIT_OK;
}

/* Fills the staging buffer with replica rep's gradient of variable j at step i, in the
 * variable's dtype. */
static void stage_gradient(replay *r, size_t i, size_t rep, size_t j) {
    const cli_var *v = &r->c->vars[j];
    const json_t *g = cli_case_grad(r->c, i, rep, j);
    for (size_t k = 0; k < v->size; k++) {
        double x = 0;
        cli_json_number(json_array_get(g, k), &x);
        cli_store(r->stage, v->dtype, k, x);
    }
}

/* A case with "replicas": mirrored variables and, per replica, its gradients (each group
 * contiguous on every replica alike). */
static int create_mirrored(replay *r) {
    const cli_case *c = r->c;
    char where[256];
    clopt_variable *row[64];
    for (int grads = 0; grads < 2; grads++) {
        for (size_t j = 0; j < c->nvars; j++) {
            const cli_var *v = &c->vars[j];
            char name[160];
            snprintf(name, sizeof name, grads ? "%s/gradient" : "%s", v->name);
            for (size_t k = 0; !grads && k < v->size; k++) {
                double x = 0;
                cli_json_number(json_array_get(v->value, k), &x);
                cli_store(r->stage, v->dtype, k, x);
            }
            clopt_status st = clopt_strategy_variable_create(r->strat, name, v->dtype, v->ndim,
                                                             v->shape, grads ? NULL : r->stage,
                                                             row);
            if (st != CLOPT_OK) {
                snprintf(where, sizeof where, "%s: variables[%zu] ('%s', %s)", c->file, j,
                         v->name, clopt_dtype_name(v->dtype));
                return lib_fail(where, st, clopt_strategy_last_error(r->strat));
            }
            for (size_t rep = 0; rep < r->nrep; rep++)
                (grads ? r->rgrads : r->rvars)[rep * c->nvars + j] = row[rep];
        }
    }
    memcpy(r->vars, r->rvars, c->nvars * sizeof *r->vars);
    return CLI_EXIT_OK;
}

/* One step through the strategy: every replica's gradients written, then one apply. */
static int apply_mirrored(replay *r, size_t i) {
    const cli_case *c = r->c;
    char where[256];
    for (size_t rep = 0; rep < r->nrep; rep++) {
        for (size_t j = 0; j < c->nvars; j++) {
            const size_t at = rep * c->nvars + j;
            r->rstep[at] = NULL;
            if (!cli_case_grad(c, i, r->rep0 + rep, j)) continue;
            stage_gradient(r, i, r->rep0 + rep, j);
            const cli_var *v = &c->vars[j];
            clopt_status st = clopt_variable_write(r->rgrads[at], r->stage,
                                                   v->size * clopt_dtype_size(v->dtype));
            if (st != CLOPT_OK) {
                snprintf(where, sizeof where, "%s: steps[%zu][%zu][%zu]: writing the gradient",
                         c->file, i, rep, j);
                return lib_fail(where, st, clopt_strategy_last_error(r->strat));
            }
            r->rstep[at] = r->rgrads[at];
        }
    }
    clopt_status st = clopt_mirrored_optimizer_apply(r->mopt, r->rstep, r->nrep, r->rvars,
                                                     c->nvars);
    if (st != CLOPT_OK) {
        snprintf(where, sizeof where, "%s: steps[%zu]: apply failed", c->file, i);
        return lib_fail(where, st, clopt_strategy_last_error(r->strat));
    }
    return CLI_EXIT_OK;
}

/* Appends `var`'s contents as a JSON array. */
static int put_variable(replay *r, const clopt_variable *var, const char *where) {
    clopt_dtype d = clopt_variable_dtype(var);
    size_t n = (size_t)clopt_variable_size(var), bytes = n * clopt_dtype_size(d);
    if (bytes > r->stage_cap) { /* an optimizer variable larger than every model variable */
        void *p = realloc(r->stage, bytes);
        if (!p) {
            fprintf(stderr, "%s: out of memory\n", where);
            return CLI_EXIT_FAIL;
        }
        r->stage = p;
        r->stage_cap = bytes;
    }
    clopt_status st = clopt_variable_read(var, r->stage, bytes);
    if (st != CLOPT_OK) return lib_fail(where, st, clopt_context_last_error(r->ctx));
    cli_buf_put(&r->out, "[", 1);
    for (size_t k = 0; k < n; k++) {
        if (k) cli_buf_put(&r->out, ", ", 2);
        cli_put_element(&r->out, r->stage, d, k);
    }
    cli_buf_put(&r->out, "]", 1);
    return CLI_EXIT_OK;
}

/* "replica_variables": every replica's variables, each read from its own device. */
static int put_replica_variables(replay *r, size_t i) {
    const cli_case *c = r->c;
    char where[256];
    cli_buf_puts(&r->out, ", \"replica_variables\": [");
    for (size_t rep = 0; rep < r->nrep; rep++) {
        cli_buf_puts(&r->out, rep ? ", [" : "[");
        for (size_t j = 0; j < c->nvars; j++) {
            if (j) cli_buf_put(&r->out, ", ", 2);
            snprintf(where, sizeof where, "%s: steps[%zu]: reading replica %zu's variables[%zu]",
                     c->file, i, rep, j);
            if (put_variable(r, r->rvars[rep * c->nvars + j], where)) return CLI_EXIT_FAIL;
        }
        cli_buf_puts(&r->out, "]");
    }
    cli_buf_puts(&r->out, "]");
    return CLI_EXIT_OK;
}

static int run_step(replay *r, size_t i) {
    const cli_case *c = r->c;
    char where[256];
    double lr = 0;
    /* The learning rate this step uses: read before the step (schedules count from it). */
    clopt_optimizer_get_learning_rate(r->opt, &lr);
    if (r->strat && apply_mirrored(r, i)) return CLI_EXIT_FAIL;
    for (size_t j = 0; !r->strat && j < c->nvars; j++) {
        r->step_grads[j] = NULL;
        if (!cli_case_grad(c, i, 0, j)) continue;
        stage_gradient(r, i, 0, j);
        const cli_var *v = &c->vars[j];
        clopt_status st =
            clopt_variable_write(r->grads[j], r->stage, v->size * clopt_dtype_size(v->dtype));
        if (st != CLOPT_OK) {
            snprintf(where, sizeof where, "%s: steps[%zu][%zu]: writing the gradient", c->file,
                     i, j);
            return lib_fail(where, st, clopt_context_last_error(r->ctx));
        }
        r->step_grads[j] = r->grads[j];
    }
    clopt_status st =
        r->strat ? CLOPT_OK : clopt_optimizer_apply(r->opt, r->step_grads, r->vars, c->nvars);
    if (st != CLOPT_OK) {
        snprintf(where, sizeof where, "%s: steps[%zu]: apply failed", c->file, i);
        return lib_fail(where, st, clopt_context_last_error(r->ctx));
    }
    char num[32];
    cli_format_f32_short((float)lr, num);
    cli_buf_printf(&r->out, "%s\n    {\"iterations\": %lld, \"learning_rate\": %s, \"variables\": [",
                   i ? "," : "", (long long)clopt_optimizer_iterations(r->opt), num);
    for (size_t j = 0; j < c->nvars; j++) {
        if (j) cli_buf_put(&r->out, ", ", 2);
        snprintf(where, sizeof where, "%s: steps[%zu]: reading variables[%zu] ('%s')", c->file,
                 i, j, c->vars[j].name);
        if (put_variable(r, r->vars[j], where)) return CLI_EXIT_FAIL;
    }
    cli_buf_puts(&r->out, "]");
    if (r->all_replicas && r->strat && put_replica_variables(r, i)) return CLI_EXIT_FAIL;
    cli_buf_puts(&r->out, "}");
    return CLI_EXIT_OK;
}

/* Keras's `variables` after the last step, in save_own_variables order: optimizer/vars/0 is
 * the iteration counter, 1 the learning rate (when a float), then the slots. */
static int put_optimizer_variables(replay *r) {
    size_t n = clopt_optimizer_variable_count(r->opt);
    cli_buf_puts(&r->out, "  \"optimizer_variables\": [");
    for (size_t i = 0; i < n; i++) {
        const char *name = NULL, *path = NULL;
        clopt_variable *var = NULL;
        clopt_status st = clopt_optimizer_variable(r->opt, i, &name, &path, &var);
        if (st != CLOPT_OK) {
            char where[256];
            snprintf(where, sizeof where, "%s: optimizer variable %zu", r->c->file, i);
            return lib_fail(where, st, clopt_context_last_error(r->ctx));
        }
        cli_buf_printf(&r->out, "%s\n    {\"path\": \"optimizer/vars/%zu\", \"name\": ",
                       i ? "," : "", i);
        cli_buf_put_jstring(&r->out, name);
        cli_buf_puts(&r->out, ", \"variable_path\": ");
        cli_buf_put_jstring(&r->out, path);
        cli_buf_puts(&r->out, ", \"shape\": [");
        if (var) {
            const int64_t *shape = clopt_variable_shape(var);
            for (int d = 0; d < clopt_variable_ndim(var); d++)
                cli_buf_printf(&r->out, "%s%lld", d ? ", " : "", (long long)shape[d]);
            cli_buf_printf(&r->out, "], \"dtype\": \"%s\", \"value\": ",
                           clopt_dtype_name(clopt_variable_dtype(var)));
            char where[256];
            snprintf(where, sizeof where, "%s: reading optimizer variable %zu ('%s')",
                     r->c->file, i, name);
            if (put_variable(r, var, where)) return CLI_EXIT_FAIL;
            cli_buf_puts(&r->out, "}");
        } else {
            /* A host-side scalar: the iteration counter, the learning rate (a float32), or an
             * optimizer's own counter or product (Nadam's u_product, a loss scale). */
            double x = 0;
            char num[32];
            st = clopt_optimizer_variable_read(r->opt, i, &x, 1);
            if (st != CLOPT_OK) {
                char where[256];
                snprintf(where, sizeof where, "%s: reading optimizer variable %zu ('%s')",
                         r->c->file, i, name);
                return lib_fail(where, st, clopt_context_last_error(r->ctx));
            }
            if (strcmp(name, "iteration") == 0) {
                cli_buf_printf(&r->out, "], \"dtype\": \"int64\", \"value\": [%lld]}",
                               (long long)x);
            } else if (strcmp(name, "learning_rate") == 0) {
                cli_format_f32_short((float)x, num);
                cli_buf_printf(&r->out, "], \"dtype\": \"float32\", \"value\": [%s]}", num);
            } else {
                cli_format_f64(x, num);
                cli_buf_printf(&r->out, "], \"value\": [%s]}", num);
            }
        }
    }
    cli_buf_puts(&r->out, n ? "\n  ]" : "]");
    return CLI_EXIT_OK;
}

/* Is "use_ema": true anywhere in the optimizer's config (a LossScaleOptimizer nests it)? */
static int any_use_ema(const json_t *v) {
    const char *key;
    json_t *val;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, key, val) {
            if ((strcmp(key, "use_ema") == 0 && json_is_true(val)) || any_use_ema(val))
                return 1;
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (any_use_ema(json_array_get(v, i))) return 1;
    }
    return 0;
}

/* With use_ema, Keras's finalize_variable_values overwrites the variables with their moving
 * averages (what fit() does at the end): the "finalized" entry holds them. The steps above keep
 * the model variables themselves. */
static int put_finalized(replay *r) {
    const cli_case *c = r->c;
    char *cfg = NULL;
    char where[256];
    clopt_status st = clopt_optimizer_get_config(r->opt, &cfg);
    if (st != CLOPT_OK) {
        snprintf(where, sizeof where, "%s: optimizer get_config", c->file);
        return lib_fail(where, st, clopt_context_last_error(r->ctx));
    }
    json_t *j = json_loads(cfg, 0, NULL);
    int ema = j && any_use_ema(j);
    json_decref(j);
    clopt_free(cfg);
    if (!ema) return CLI_EXIT_OK;
    /* Unbuilt (no step ran), Keras has no variables to overwrite. */
    for (size_t rep = 0; rep < (r->strat ? r->nrep : 1); rep++) {
        clopt_optimizer *o = r->strat ? clopt_mirrored_optimizer_replica(r->mopt, rep) : r->opt;
        if (clopt_optimizer_iterations(o) > 0 &&
            (st = clopt_optimizer_finalize_variable_values(o)) != CLOPT_OK) {
            snprintf(where, sizeof where, "%s: finalize_variable_values (replica %zu)", c->file,
                     rep);
            return lib_fail(where, st,
                            clopt_context_last_error(r->strat ? clopt_strategy_context(r->strat, rep)
                                                              : r->ctx));
        }
    }
    cli_buf_puts(&r->out, ",\n  \"finalized\": [");
    for (size_t j2 = 0; j2 < c->nvars; j2++) {
        if (j2) cli_buf_put(&r->out, ", ", 2);
        snprintf(where, sizeof where, "%s: finalized: reading variables[%zu] ('%s')", c->file,
                 j2, c->vars[j2].name);
        if (put_variable(r, r->vars[j2], where)) return CLI_EXIT_FAIL;
    }
    cli_buf_puts(&r->out, "]");
    return CLI_EXIT_OK;
}

/* --output with "{rank}" over MPI: each rank's own file (the path, else `path` unchanged). */
static const char *rank_output(const char *path, int rank, char *buf, size_t cap) {
    const char *at = path ? strstr(path, "{rank}") : NULL;
    if (!at) return path;
    snprintf(buf, cap, "%.*s%d%s", (int)(at - path), path, rank, at + 6);
    return buf;
}

static int write_output(const char *path, const cli_buf *b) {
    FILE *f = path ? fopen(path, "wb") : stdout;
    if (!f) {
        fprintf(stderr, "clopt replay: cannot open '%s' for writing: %s\n", path,
                strerror(errno));
        return CLI_EXIT_FAIL;
    }
    int bad = fwrite(b->s, 1, b->n, f) != b->n;
    bad |= path ? fclose(f) != 0 : fflush(f) != 0;
    if (bad) {
        fprintf(stderr, "clopt replay: cannot write '%s': %s\n", path ? path : "<stdout>",
                strerror(errno));
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

/* A case with "replicas": the strategy (on `devices`, or that many replicas sharing `device`)
 * and the mirrored optimizer; r->ctx and r->opt are replica 0's. */
static int open_mirrored(replay *r, const char *device, const char *devices) {
    const cli_case *c = r->c;
    char where[256];
    clopt_status st = r->mpi   ? cli_mpi_strategy(device, &r->strat)
                      : devices ? clopt_strategy_create(devices, &r->strat)
                                : clopt_strategy_create_replicated(device, (size_t)c->replicas,
                                                                   &r->strat);
    if (st != CLOPT_OK) {
        snprintf(where, sizeof where, "clopt replay: devices '%s'",
                 devices ? devices : device ? device : "(default)");
        return lib_fail(where, st, clopt_last_create_error());
    }
    /* Over MPI this rank's replicas: one per device of its --device list, global replicas
     * rank-major from its first. */
    r->nrep = clopt_strategy_num_replicas(r->strat);
    if (r->mpi) r->rep0 = cli_mpi_first_replica(r->strat);
    if (r->mpi && cli_mpi_replicas_in_sync(r->strat) != (size_t)c->replicas) {
        fprintf(stderr, "clopt replay: --mpi runs %zu replicas over the ranks but %s has "
                        "\"replicas\": %zu (mpiexec -n %zu, one device each)\n",
                cli_mpi_replicas_in_sync(r->strat), c->file, (size_t)c->replicas,
                (size_t)c->replicas);
        return CLI_EXIT_FAIL;
    }
    if (!r->mpi && r->nrep != (size_t)c->replicas) {
        fprintf(stderr, "clopt replay: --devices names %zu devices but %s has \"replicas\": %zu\n",
                r->nrep, c->file, (size_t)c->replicas);
        return CLI_EXIT_FAIL;
    }
    r->rvars = calloc(r->nrep * c->nvars, sizeof *r->rvars);
    r->rgrads = calloc(r->nrep * c->nvars, sizeof *r->rgrads);
    r->rstep = calloc(r->nrep * c->nvars, sizeof *r->rstep);
    if (!r->rvars || !r->rgrads || !r->rstep) {
        fprintf(stderr, "%s: out of memory\n", c->file);
        return CLI_EXIT_FAIL;
    }
    r->ctx = clopt_strategy_context(r->strat, 0);
    st = clopt_strategy_optimizer_from_config(r->strat, c->optimizer_json, &r->mopt);
    if (st != CLOPT_OK) {
        snprintf(where, sizeof where, "%s: optimizer", c->file);
        return lib_fail(where, st, clopt_strategy_last_error(r->strat));
    }
    r->opt = clopt_mirrored_optimizer_replica(r->mopt, 0);
    return create_mirrored(r);
}

/* A case without "replicas": one context, its optimizer and variables. */
static int open_single(replay *r, const char *device) {
    const cli_case *c = r->c;
    clopt_status st = clopt_context_create(device, &r->ctx);
    if (st != CLOPT_OK) {
        char where[256];
        const char *env = getenv("CLOPT_DEVICE");
        if (device)
            snprintf(where, sizeof where, "clopt replay: device '%s'", device);
        else if (env && *env)
            snprintf(where, sizeof where, "clopt replay: device '%s' (from CLOPT_DEVICE)", env);
        else
            snprintf(where, sizeof where, "clopt replay: the default device");
        return lib_fail(where, st, clopt_last_create_error());
    }
    /* The optimizer first: a bad config is reported before any device memory is used. */
    if ((st = clopt_optimizer_from_config(r->ctx, c->optimizer_json, &r->opt)) != CLOPT_OK) {
        char where[256];
        snprintf(where, sizeof where, "%s: optimizer", c->file);
        return lib_fail(where, st, clopt_context_last_error(r->ctx));
    }
    return create_variables(r);
}

static int replay_run(replay *r, const char *device, const char *devices) {
    const cli_case *c = r->c;
    size_t maxbytes = 8;
    for (size_t j = 0; j < c->nvars; j++)
        if (c->vars[j].size * 8 > maxbytes) maxbytes = c->vars[j].size * 8;
    r->stage = malloc(maxbytes);
    r->stage_cap = maxbytes;
    r->vars = calloc(c->nvars, sizeof *r->vars);
    r->grads = calloc(c->nvars, sizeof *r->grads);
    r->step_grads = calloc(c->nvars, sizeof *r->step_grads);
    if (!r->stage || !r->vars || !r->grads || !r->step_grads) {
        fprintf(stderr, "%s: out of memory\n", c->file);
        return CLI_EXIT_FAIL;
    }
    if (devices && !c->replicas) {
        fprintf(stderr, "clopt replay: --devices needs a case with \"replicas\" (%s has none)\n",
                c->file);
        return CLI_EXIT_FAIL;
    }
    int rc = c->replicas ? open_mirrored(r, device, devices) : open_single(r, device);
    if (rc) return rc;
    cli_buf_puts(&r->out, "{\n  \"device\": ");
    cli_buf_put_jstring(&r->out, clopt_context_device_name(r->ctx));
    cli_buf_puts(&r->out, ",\n  \"steps\": [");
    for (size_t i = 0; i < c->nsteps; i++)
        if ((rc = run_step(r, i))) return rc;
    cli_buf_puts(&r->out, c->nsteps ? "\n  ],\n" : "],\n");
    if ((rc = put_optimizer_variables(r))) return rc;
    if ((rc = put_finalized(r))) return rc;
    cli_buf_puts(&r->out, "\n}\n");
    if (r->out.oom) {
        fprintf(stderr, "%s: out of memory while writing the result\n", c->file);
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

static void replay_free(replay *r) {
    /* The context (or the strategy) releases every variable and optimizer made in it. */
    if (r->strat) clopt_strategy_destroy(r->strat);
    else clopt_context_destroy(r->ctx);
    free(r->rvars);
    free(r->rgrads);
    free(r->rstep);
    free(r->stage);
    free(r->vars);
    free(r->grads);
    free(r->step_grads);
    cli_buf_free(&r->out);
}

/* The default cap on the case's size (--max-input-mb): a case is read whole before it is
 * checked, so an endless input (/dev/zero on stdin) must stop somewhere. */
#define CLI_REPLAY_MAX_INPUT_MB 256

/* Reads the case: a regular file (a FIFO or device is refused at once, never waited on) or
 * standard input for "-", at most `max` bytes. */
static int read_case(const char *file, const char *name, size_t max, char **text, size_t *len) {
    char err[1024]; /* as src/io's messages (CLOPT__IO_ERRN) */
    int fd = strcmp(file, "-") == 0 ? STDIN_FILENO
                                    : clopt__open_regular(file, NULL, err, sizeof err);
    clopt_status st = CLOPT_ERR_IO;
    if (fd >= 0) {
        st = clopt__read_capped(fd, name, max, (unsigned char **)text, len, err, sizeof err);
        if (fd != STDIN_FILENO) close(fd);
    }
    if (st != CLOPT_OK) fprintf(stderr, "clopt replay: cannot read the case: %s\n", err);
    return st == CLOPT_OK ? 0 : -1;
}

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "clopt replay: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nusage: clopt replay [--device SPEC | --devices LIST] [--output FILE] "
                    "[--max-input-mb N] CASE.json "
                    "(try 'clopt replay --help')\n");
    return CLI_EXIT_USAGE;
}

int cli_cmd_replay(int argc, char **argv) {
    const char *device = NULL, *devices = NULL, *output = NULL, *file = NULL, *max_mb = NULL;
    int options = 1, all_replicas = 0, mpi = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **target = NULL;
        const char *val = NULL;
        if (options && cli_is_help(a)) {
            cli_help_replay(stdout);
            return CLI_EXIT_OK;
        }
        if (options && strcmp(a, "--") == 0) {
            options = 0;
            continue;
        }
        if (options && strcmp(a, "--all-replicas") == 0) {
            all_replicas = 1;
            continue;
        }
        if (options && strcmp(a, "--mpi") == 0) {
            mpi = 1;
            continue;
        }
        if (options && (strcmp(a, "-d") == 0 || strcmp(a, "--device") == 0)) target = &device;
        else if (options && strcmp(a, "--devices") == 0) target = &devices;
        else if (options && strncmp(a, "--devices=", 10) == 0) devices = a + 10;
        else if (options && (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0)) target = &output;
        else if (options && strncmp(a, "--device=", 9) == 0) device = a + 9;
        else if (options && strncmp(a, "--output=", 9) == 0) output = a + 9;
        else if (options && strcmp(a, "--max-input-mb") == 0) target = &max_mb;
        else if (options && strncmp(a, "--max-input-mb=", 15) == 0) max_mb = a + 15;
        else if (options && a[0] == '-' && a[1] != '\0') return usage_error("unknown option '%s'", a);
        else if (file) return usage_error("more than one case file ('%s')", a);
        else file = a;
        if (target) {
            if (i + 1 >= argc) return usage_error("option '%s' needs a value", a);
            val = argv[++i];
            *target = val;
        }
    }
    if (!file) return usage_error("%s", "no case file given");
    if (output && !*output) return usage_error("%s", "--output needs a file name");
    if (device && devices) return usage_error("%s", "--device and --devices exclude each other");
    if (mpi && devices) return usage_error("%s", "--mpi takes --device (this rank's), not --devices");

    size_t max_bytes = (size_t)CLI_REPLAY_MAX_INPUT_MB << 20;
    if (max_mb) {
        char *end;
        long long mb = strtoll(max_mb, &end, 10);
        if (*end || end == max_mb || mb < 1 || mb > 1048576)
            return usage_error("--max-input-mb '%s' is not a whole number in [1, 1048576]",
                               max_mb);
        max_bytes = (size_t)mb << 20;
    }

    const char *name = strcmp(file, "-") == 0 ? "<stdin>" : file;
    char *text = NULL;
    size_t len = 0;
    if (read_case(file, name, max_bytes, &text, &len) != 0) return CLI_EXIT_FAIL;
    cli_case c;
    int rc = cli_case_load(&c, name, text, len) ? CLI_EXIT_FAIL : CLI_EXIT_OK;
    free(text);
    int rank = 0, size = 1;
    if (rc == CLI_EXIT_OK && mpi && cli_mpi_init(&rank, &size) != 0) rc = CLI_EXIT_FAIL;
    if (rc == CLI_EXIT_OK && mpi && !c.replicas) {
        fprintf(stderr, "clopt replay: --mpi needs a case with \"replicas\" (%s has none)\n",
                c.file);
        rc = CLI_EXIT_FAIL;
    }
    if (rc == CLI_EXIT_OK) {
        replay r = {0};
        r.c = &c;
        r.all_replicas = all_replicas;
        r.mpi = mpi;
        r.rep0 = (size_t)rank;
        rc = replay_run(&r, device, devices);
        char path[4096];
        const char *to = mpi ? rank_output(output, rank, path, sizeof path) : output;
        /* Over MPI, without {rank} in the path only rank 0 writes. */
        if (rc == CLI_EXIT_OK && (!mpi || to != output || rank == 0)) rc = write_output(to, &r.out);
        replay_free(&r); /* over MPI: collective, before MPI_Finalize */
    }
    if (mpi) cli_mpi_finalize();
    cli_case_free(&c);
    return rc;
}
