/* The strategy (include/clopt/distribute.h): replicas over several devices of one process, and
 * the mirrored optimizer's step: every replica's stages before the reduce seam
 * (clopt__apply_run_local), the all-reduce in replica order through the strategy's reducer
 * (dist_internal.h; host memory: host_reduce.c), then every replica's update over the reduced
 * gradients (clopt__apply_run_shared). */
#include <CL/cl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "clopt/clopt_cl.h"
#include "clopt/distribute.h"
#include "dist_internal.h"

clopt_status clopt__dist_fail(clopt_strategy *s, clopt_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->error, sizeof s->error, fmt, ap);
    va_end(ap);
    return st;
}

/* A failure that replica r's context reported: its message, with the replica named. */
clopt_status clopt__dist_fail_replica(clopt_strategy *s, size_t r, clopt_status st) {
    return clopt__dist_fail(s, st, "replica %zu (%s): %s", r, clopt_context_device_name(s->ctx[r]),
                clopt_context_last_error(s->ctx[r]));
}

/* The OpenCL device of a context, or NULL for a host one. */
static cl_device_id device_of(const clopt_context *ctx) {
    cl_command_queue q;
    cl_device_id d = NULL;
    if (ctx->ops != &clopt__opencl_backend || clopt_context_cl_queue(ctx, &q) != CLOPT_OK)
        return NULL;
    return clGetCommandQueueInfo(q, CL_QUEUE_DEVICE, sizeof d, &d, NULL) == CL_SUCCESS ? d : NULL;
}

/* Opens replica s->n on `spec`; an OpenCL device already open in another replica is refused. */
static clopt_status open_replica(clopt_strategy *s, const char *spec) {
    clopt_context *ctx;
    clopt_status st = clopt_context_create(spec, &ctx);
    if (st != CLOPT_OK) {
        char why[1024];
        snprintf(why, sizeof why, "%s", clopt_last_create_error());
        clopt__create_fail("clopt_strategy_create: replica %zu ('%s'): %s", s->n, spec, why);
        return st;
    }
    cl_device_id d = device_of(ctx);
    for (size_t r = 0; d && r < s->n; r++) {
        if (device_of(s->ctx[r]) != d) continue;
        clopt__create_fail("clopt_strategy_create: replicas %zu and %zu ('%s') name the same "
                           "device (%s); each replica needs its own device",
                           r, s->n, spec, clopt_context_device_name(ctx));
        clopt_context_destroy(ctx);
        return CLOPT_ERR_INVALID_ARGUMENT;
    }
    s->ctx[s->n++] = ctx;
    return CLOPT_OK;
}

/* CLOPT__DIST_FAULT_TEST (tests only, dist_internal.h): "STAGE:R" into s. */
static void read_fault(clopt_strategy *s) {
    static const char *const stages[] = {"", "local", "read", "write", "shared"};
    const char *f = getenv("CLOPT__DIST_FAULT_TEST");
    const char *colon = f ? strchr(f, ':') : NULL;
    for (int k = 1; colon && k < (int)(sizeof stages / sizeof *stages); k++)
        if (strlen(stages[k]) == (size_t)(colon - f) &&
            !strncmp(f, stages[k], (size_t)(colon - f))) {
            s->fault = k;
            s->fault_replica = (size_t)strtoul(colon + 1, NULL, 10);
        }
}

clopt_status clopt__dist_fault(clopt_strategy *s, int stage, size_t r) {
    if (s->fault != stage || s->first + r != s->fault_replica) return CLOPT_OK;
    return clopt__dist_fail(s, CLOPT_ERR_OPENCL,
                            "replica %zu (%s): fault injected at stage %d (CLOPT__DIST_FAULT_TEST)",
                            r, clopt_context_device_name(s->ctx[r]), stage);
}

static clopt_strategy *new_strategy(void) {
    clopt_strategy *s = calloc(1, sizeof *s);
    const char *check = getenv("CLOPT_DIST_CHECK");
    if (s) s->check = check && *check && strcmp(check, "0") != 0;
    if (s) s->reducer = &clopt__dist_host_reducer;
    if (s) read_fault(s);
    return s;
}

clopt_status clopt_strategy_create(const char *devices, clopt_strategy **out) {
    clopt__create_fail("%s", "");
    if (!devices || !out) {
        clopt__create_fail("clopt_strategy_create: %s is NULL", devices ? "out" : "devices");
        return CLOPT_ERR_INVALID_ARGUMENT;
    }
    clopt_strategy *s = new_strategy();
    if (!s) return CLOPT_ERR_OUT_OF_MEMORY;
    clopt_status st = CLOPT_OK;
    for (const char *p = devices; st == CLOPT_OK;) {
        const char *e = strchr(p, ',');
        const size_t len = e ? (size_t)(e - p) : strlen(p);
        char spec[256];
        if (len == 0 || len >= sizeof spec || s->n == MAX_REPLICAS) {
            clopt__create_fail("clopt_strategy_create: spec %zu of '%s' is %s", s->n, devices,
                               s->n == MAX_REPLICAS ? "beyond the 64 replicas allowed"
                                                    : len ? "too long" : "empty");
            st = CLOPT_ERR_INVALID_ARGUMENT;
            break;
        }
        memcpy(spec, p, len);
        spec[len] = '\0';
        st = open_replica(s, spec);
        if (!e) break;
        p = e + 1;
    }
    if (st != CLOPT_OK) {
        clopt_strategy_destroy(s);
        return st;
    }
    clopt__dist_device_setup(s);
    *out = s;
    return CLOPT_OK;
}

clopt_status clopt_strategy_create_replicated(const char *device, size_t n,
                                             clopt_strategy **out) {
    clopt__create_fail("%s", "");
    if (!out || n == 0 || n > MAX_REPLICAS) {
        clopt__create_fail("clopt_strategy_create_replicated: %s", out ? "n must be 1 to 64"
                                                                       : "out is NULL");
        return CLOPT_ERR_INVALID_ARGUMENT;
    }
    clopt_strategy *s = new_strategy();
    if (!s) return CLOPT_ERR_OUT_OF_MEMORY;
    clopt_status st = clopt_context_create(device, &s->ctx[0]);
    if (st != CLOPT_OK) {
        free(s);
        return st; /* clopt_last_create_error says why */
    }
    for (s->n = 1; s->n < n; s->n++) s->ctx[s->n] = s->ctx[0];
    s->shared = 1;
    *out = s;
    return CLOPT_OK;
}

void clopt_strategy_destroy(clopt_strategy *s) {
    if (!s) return;
    while (s->opts) clopt_mirrored_optimizer_destroy(s->opts);
    if (s->reducer->destroy) s->reducer->destroy(s);
    for (size_t r = 0; r < (s->shared ? 1 : s->n); r++) clopt_context_destroy(s->ctx[r]);
    free(s);
}

size_t clopt_strategy_num_replicas(const clopt_strategy *s) { return s ? s->n : 0; }

clopt_context *clopt_strategy_context(const clopt_strategy *s, size_t replica) {
    return s && replica < s->n ? s->ctx[replica] : NULL;
}

const char *clopt_strategy_last_error(const clopt_strategy *s) { return s ? s->error : ""; }

double clopt_strategy_loss_scale(const clopt_strategy *s) {
    if (!s || !s->n) return 0.0;
    return 1.0 / (double)(s->world ? s->world : s->n);
}

clopt_status clopt_strategy_variable_create(clopt_strategy *s, const char *name,
                                            clopt_dtype dtype, int ndim, const int64_t *shape,
                                            const void *init_or_NULL, clopt_variable **out) {
    if (!s) return CLOPT_ERR_INVALID_ARGUMENT;
    if (!out)
        return clopt__dist_fail(s, CLOPT_ERR_INVALID_ARGUMENT, "variable_create: out is NULL");
    clopt_variable *v[MAX_REPLICAS];
    clopt_status st = CLOPT_OK;
    for (size_t r = 0; r < s->n; r++) {
        st = clopt_variable_create(s->ctx[r], name, dtype, ndim, shape, init_or_NULL, &v[r]);
        if (st != CLOPT_OK) {
            clopt__dist_fail_replica(s, r, st);
            while (r) clopt_variable_destroy(v[--r]);
            break;
        }
    }
    /* Over processes: every process learns of any failure; the first replica's contents win. */
    if (s->reducer->variable_created) {
        clopt_status agreed = s->reducer->variable_created(s, st, st == CLOPT_OK ? v : NULL);
        if (agreed != CLOPT_OK && st == CLOPT_OK)
            for (size_t r = 0; r < s->n; r++) clopt_variable_destroy(v[r]);
        st = agreed;
    }
    if (st != CLOPT_OK) return st;
    memcpy(out, v, s->n * sizeof *v);
    return CLOPT_OK;
}

/* ---- the mirrored optimizer ---- */

clopt_status clopt_strategy_optimizer_from_config(clopt_strategy *s, const char *json,
                                                  clopt_mirrored_optimizer **out) {
    if (!s) return CLOPT_ERR_INVALID_ARGUMENT;
    if (!out)
        return clopt__dist_fail(s, CLOPT_ERR_INVALID_ARGUMENT,
                                "optimizer_from_config: out is NULL");
    clopt_mirrored_optimizer *m = calloc(1, sizeof *m);
    if (!m)
        return clopt__dist_fail(s, CLOPT_ERR_OUT_OF_MEMORY,
                                "optimizer_from_config: out of memory");
    m->s = s;
    m->reducer = s->reducer;
    m->next = s->opts;
    s->opts = m;
    for (size_t r = 0; r < s->n; r++) {
        clopt_status st = clopt_optimizer_from_config(s->ctx[r], json, &m->r[r].opt);
        const clopt_optimizer *o = m->r[r].opt;
        if (st == CLOPT_OK && o->cls->wrapper &&
            strcmp(o->cls->class_name, "LossScaleOptimizer") != 0) {
            st = clopt__dist_fail(s, CLOPT_ERR_UNSUPPORTED,
                      "optimizer_from_config: %s is not supported over replicas yet",
                      o->cls->class_name);
        } else if (st == CLOPT_OK && o->cls->wrapper) {
            /* The finite decision is taken over every replica's flag, on the host. */
            clopt__loss_scale_host_decided(m->r[r].opt);
        } else if (st != CLOPT_OK) {
            clopt__dist_fail_replica(s, r, st);
        }
        if (st != CLOPT_OK) {
            clopt_mirrored_optimizer_destroy(m);
            return st;
        }
    }
    *out = m;
    return CLOPT_OK;
}

void clopt_mirrored_optimizer_destroy(clopt_mirrored_optimizer *m) {
    if (!m) return;
    clopt_mirrored_optimizer **at = &m->s->opts;
    while (*at != m) at = &(*at)->next;
    *at = m->next;
    for (size_t r = 0; r < m->s->n; r++) {
        replica_state *p = &m->r[r];
        for (size_t i = 0; i < p->nscratch; i++)
            if (p->scratch[i]) p->opt->ctx->ops->buffer_release(p->opt->ctx, p->scratch[i]);
        free(p->scratch);
        free(p->scratch_bytes);
        clopt_optimizer_destroy(p->opt);
        free(m->host[r]);
    }
    clopt__dist_device_release(m);
    free(m);
}

clopt_optimizer *clopt_mirrored_optimizer_replica(const clopt_mirrored_optimizer *m,
                                                  size_t replica) {
    return m && replica < m->s->n ? m->r[replica].opt : NULL;
}

clopt_status clopt_mirrored_optimizer_set_reduction(clopt_mirrored_optimizer *m,
                                                    clopt_reduction op) {
    if (!m) return CLOPT_ERR_INVALID_ARGUMENT;
    if (op != CLOPT_REDUCE_SUM && op != CLOPT_REDUCE_MEAN)
        return clopt__dist_fail(m->s, CLOPT_ERR_INVALID_ARGUMENT,
                                "set_reduction: %d is not a reduction",
                    (int)op);
    m->op = op;
    return CLOPT_OK;
}

int64_t clopt_mirrored_optimizer_iterations(const clopt_mirrored_optimizer *m) {
    return m ? clopt_optimizer_iterations(m->r[0].opt) : -1;
}

/* The optimizer whose stages run on replica r: a LossScaleOptimizer's inner one, else itself. */
clopt_optimizer *clopt__dist_stepper(const clopt_mirrored_optimizer *m, size_t r) {
    clopt_optimizer *in = clopt__wrapped(m->r[r].opt);
    return in ? in : m->r[r].opt;
}

/* dist_internal.h; also the checkpoints' (checkpoint.c). */
clopt_status clopt__dist_check_row(clopt_strategy *s, clopt_variable *const *vars, size_t n,
                                   size_t r, clopt_status st, const char *what) {
    for (size_t i = 0; i < n; i++) {
        const clopt_variable *a = vars[i], *b = vars[r * n + i];
        if (!a || !b) continue; /* the replica's own checks name it */
        if (strcmp(a->name, b->name) != 0 || a->dtype != b->dtype || !clopt__same_shape(a, b))
            return clopt__dist_fail(s, st,
                        "%s: variable %zu is '%s' on replica %zu but '%s' on replica 0 (names, "
                        "dtypes and shapes must agree)",
                        what, i, b->name, r, a->name);
    }
    return CLOPT_OK;
}

clopt_status clopt_mirrored_optimizer_build(clopt_mirrored_optimizer *m,
                                            clopt_variable *const *vars, size_t n) {
    if (!m) return CLOPT_ERR_INVALID_ARGUMENT;
    clopt_strategy *s = m->s;
    clopt_status st = CLOPT_OK;
    if (!vars) st = clopt__dist_fail(s, CLOPT_ERR_INVALID_ARGUMENT, "build: vars is NULL");
    for (size_t r = 1; st == CLOPT_OK && r < s->n; r++)
        st = clopt__dist_check_row(s, vars, n, r, CLOPT_ERR_SHAPE_MISMATCH, "build");
    for (size_t r = 0; st == CLOPT_OK && r < s->n; r++) {
        st = clopt_optimizer_build(m->r[r].opt, vars + r * n, n);
        if (st != CLOPT_OK) clopt__dist_fail_replica(s, r, st);
    }
    /* Over processes: every process checks that all built the same optimizer on the same
     * variables (a signature), or fails alike. */
    if (m->reducer->built) st = m->reducer->built(m, st, vars, n);
    return st;
}

/* Every gradient of replica r is on replica r's context and missing where replica 0's is. */
static clopt_status check_grads(clopt_strategy *s, clopt_variable *const *grads, size_t n) {
    size_t dead = clopt__handles_first_dead((const void *const *)grads, s->n * n);
    if (dead < s->n * n) /* read nothing of it: its memory is freed */
        return clopt__dist_fail(s, CLOPT_ERR_INVALID_ARGUMENT,
                                "apply: gradient %zu of replica %zu was destroyed (or its "
                                "context was); nothing was changed",
                                dead % n, dead / n);
    for (size_t r = 0; r < s->n; r++) {
        for (size_t i = 0; i < n; i++) {
            const clopt_variable *g = grads[r * n + i];
            if (!g != !grads[i])
                return clopt__dist_fail(s, CLOPT_ERR_INVALID_ARGUMENT,
                            "apply: gradient %zu is missing on replica %zu but not on replica "
                            "%zu; a missing gradient must be missing on every replica",
                            i, g ? (size_t)0 : r, g ? r : (size_t)0);
            if (g && g->ctx != s->ctx[r]) {
                size_t owner = 0;
                while (owner < s->n && s->ctx[owner] != g->ctx) owner++;
                return clopt__dist_fail(s, CLOPT_ERR_CONTEXT_MISMATCH,
                            "apply: gradient %zu ('%s') of replica %zu is not in replica %zu's "
                            "context (%s%zu)",
                            i, g->name, r, r,
                            owner < s->n ? "it belongs to replica " : "it belongs to none, ",
                            owner);
            }
        }
    }
    return CLOPT_OK;
}

/* The plans of every replica pair the same variables launch by launch (one layout). */
static clopt_status check_plans(clopt_mirrored_optimizer *m) {
    const clopt__plan *p0 = &clopt__dist_stepper(m, 0)->plan;
    for (size_t r = 1; r < m->s->n; r++) {
        const clopt__plan *p = &clopt__dist_stepper(m, r)->plan;
        int same = p->n == p0->n && p->nlaunches == p0->nlaunches &&
                   memcmp(p->var_index, p0->var_index, p->n * sizeof *p->var_index) == 0;
        for (size_t i = 0; same && i < p->nlaunches; i++)
            same = p->launches[i].range_base == p0->launches[i].range_base &&
                   p->launches[i].nranges == p0->launches[i].nranges &&
                   p->launches[i].dtype == p0->launches[i].dtype;
        if (!same)
            return clopt__dist_fail(m->s, CLOPT_ERR_UNSUPPORTED,
                        "apply: replica %zu's variables and gradients are grouped in memory "
                        "unlike replica 0's; create them in the same order on every replica "
                        "(clopt_strategy_variable_create does)",
                        r);
    }
    return CLOPT_OK;
}

/* The elements [*lo, *hi) of launch i's gradient block that its pairs cover (padded). */
void clopt__dist_launch_span(const clopt__plan *p, size_t i, size_t *lo, size_t *hi) {
    const clopt__plan_launch *pl = &p->launches[i];
    *lo = SIZE_MAX;
    *hi = 0;
    for (size_t k = pl->range_base; k < pl->range_base + pl->nranges; k++) {
        const clopt_variable *g = p->grads[k];
        if (g->offset < *lo) *lo = g->offset;
        if (g->offset + g->padded > *hi) *hi = g->offset + g->padded;
    }
}

/* Scratch buffers for replica r's current plan and host staging for its largest span. */
static clopt_status ensure_scratch(clopt_mirrored_optimizer *m, size_t r) {
    replica_state *q = &m->r[r];
    const clopt__plan *p = &clopt__dist_stepper(m, r)->plan;
    clopt_context *ctx = q->opt->ctx;
    if (p->nlaunches > q->nscratch) {
        void **b = realloc(q->scratch, p->nlaunches * sizeof *b);
        if (b) q->scratch = b;
        size_t *z = b ? realloc(q->scratch_bytes, p->nlaunches * sizeof *z) : NULL;
        if (!z) return clopt__dist_fail(m->s, CLOPT_ERR_OUT_OF_MEMORY, "apply: out of memory");
        q->scratch_bytes = z;
        for (size_t i = q->nscratch; i < p->nlaunches; i++) b[i] = NULL, z[i] = 0;
        q->nscratch = p->nlaunches;
    }
    for (size_t i = 0; i < p->nlaunches; i++) {
        size_t lo, hi;
        clopt__dist_launch_span(p, i, &lo, &hi);
        const size_t es = clopt_dtype_size(p->launches[i].dtype), need = hi * es;
        if (need > m->host_cap) {
            for (size_t k = 0; k < m->s->n; k++) {
                unsigned char *h = realloc(m->host[k], need);
                if (!h)
                    return clopt__dist_fail(m->s, CLOPT_ERR_OUT_OF_MEMORY, "apply: out of memory");
                m->host[k] = h;
            }
            m->host_cap = need;
        }
        if (q->scratch_bytes[i] >= need) continue;
        if (q->scratch[i]) ctx->ops->buffer_release(ctx, q->scratch[i]);
        q->scratch[i] = NULL;
        q->scratch_bytes[i] = 0;
        if (ctx->ops->buffer_create(ctx, need, &q->scratch[i]) != CLOPT_OK)
            return clopt__dist_fail_replica(m->s, r, CLOPT_ERR_OUT_OF_MEMORY);
        q->scratch_bytes[i] = need;
    }
    return CLOPT_OK;
}

/* Checks every replica's inputs and prepares its plan; nothing changes on failure. */
static clopt_status prepare(clopt_mirrored_optimizer *m, clopt_variable *const *grads,
                            size_t nreplicas, clopt_variable *const *vars, size_t n) {
    clopt_strategy *s = m->s;
    clopt_status st = CLOPT_OK;
    if (!grads) st = clopt__dist_fail(s, CLOPT_ERR_INVALID_ARGUMENT, "apply: grads is NULL");
    else if (nreplicas != s->n)
        st = clopt__dist_fail(s, CLOPT_ERR_LENGTH_MISMATCH,
                    "apply: gradients for %zu replicas given but the strategy has %zu",
                    nreplicas, s->n);
    if (st == CLOPT_OK) st = check_grads(s, grads, n);
    for (size_t r = 1; st == CLOPT_OK && vars && r < s->n; r++)
        st = clopt__dist_check_row(s, vars, n, r, CLOPT_ERR_SHAPE_MISMATCH, "apply");
    /* Over processes: agree before any process goes on, so none waits on one that stopped. */
    if (m->reducer->inputs_agreed) st = m->reducer->inputs_agreed(m, st, grads, vars, n);
    if (st == CLOPT_OK && vars && !m->r[0].opt->built)
        st = clopt_mirrored_optimizer_build(m, vars, n);
    if (st != CLOPT_OK) return st; /* over processes, every process returns here alike */
    for (size_t r = 0; st == CLOPT_OK && r < s->n; r++) {
        st = clopt__apply_prepare(clopt__dist_stepper(m, r), m->r[r].opt, grads + r * n,
                                  vars ? vars + r * n : NULL, n);
        if (st != CLOPT_OK) clopt__dist_fail_replica(s, r, st);
    }
    if (st == CLOPT_OK) st = check_plans(m);
    for (size_t r = 0; st == CLOPT_OK && r < s->n; r++) st = ensure_scratch(m, r);
    if (m->reducer->prepared) st = m->reducer->prepared(m, st);
    return st;
}

/* A LossScaleOptimizer's finite decision over every replica's gradients: one non-finite
 * element on any replica skips the step on all (Keras's code takes the first replica's flag,
 * assuming reduced gradients; this decides on all of them before the reduce). */
static clopt_status all_finite(clopt_mirrored_optimizer *m, int *finite) {
    *finite = 1;
    for (size_t r = 0; r < m->s->n; r++) {
        int f;
        clopt_status st = clopt__loss_scale_finite(m->r[r].opt, &f);
        if (st != CLOPT_OK) {
            clopt__dist_fail_replica(m->s, r, st);
            return m->reducer->finite_agreed ? m->reducer->finite_agreed(m, st, finite) : st;
        }
        *finite &= f;
    }
    /* Over processes: one non-finite replica anywhere skips the step everywhere. */
    return m->reducer->finite_agreed ? m->reducer->finite_agreed(m, CLOPT_OK, finite) : CLOPT_OK;
}

/* The stages on every replica, the all-reduce, the update on every replica. Over processes
 * (step_agreed), a failure in the local stages fails every process before any exchange; one
 * after it (writing back, the update) is agreed at the end, the replicas then differing. */
static clopt_status step(clopt_mirrored_optimizer *m, const clopt__step_request *req) {
    clopt_strategy *s = m->s;
    clopt_status st = CLOPT_OK;
    int done = 0;
    for (size_t r = 0; st == CLOPT_OK && r < s->n; r++) {
        st = clopt__apply_run_local(clopt__dist_stepper(m, r), req, m->r[r].scratch, &done);
        st = st != CLOPT_OK ? clopt__dist_fail_replica(s, r, st)
                            : clopt__dist_fault(s, CLOPT__FAULT_LOCAL, r);
    }
    if (m->reducer->step_agreed) st = m->reducer->step_agreed(m, st, 0);
    if (st != CLOPT_OK || done) return st; /* done: a step that only accumulated, everywhere */
    m->late = CLOPT_OK;
    if ((st = clopt__dist_all_reduce(m)) != CLOPT_OK) return st;
    st = m->late;
    for (size_t r = 0; st == CLOPT_OK && r < s->n; r++) {
        st = clopt__apply_run_shared(clopt__dist_stepper(m, r), m->r[r].scratch);
        st = st != CLOPT_OK ? clopt__dist_fail_replica(s, r, st)
                            : clopt__dist_fault(s, CLOPT__FAULT_SHARED, r);
    }
    if (m->reducer->step_agreed) st = m->reducer->step_agreed(m, st, 1);
    return st;
}

/* FNV-1a over a variable's bytes; *st on a failed read. */
static uint64_t checksum(const clopt_variable *v, clopt_status *st) {
    const size_t n = (size_t)clopt_variable_size(v) * clopt_dtype_size(v->dtype);
    unsigned char *b = malloc(n ? n : 1);
    uint64_t h = CLOPT__HASH_INIT;
    if (!b) {
        *st = CLOPT_ERR_OUT_OF_MEMORY;
        return 0;
    }
    if ((*st = clopt_variable_read(v, b, n)) == CLOPT_OK) h = clopt__hash64(h, b, n);
    free(b);
    return h;
}

/* Compares replica r's copy v of a checked variable with replica 0's checksum h0. */
static clopt_status check_one(clopt_mirrored_optimizer *m, size_t r, const clopt_variable *v,
                              uint64_t h0, const char *what, const char *name) {
    clopt_status st = CLOPT_OK;
    if (checksum(v, &st) != h0 && st == CLOPT_OK)
        return clopt__dist_fail(m->s, CLOPT_ERR_REPLICAS_DIVERGED,
                    "apply: replica %zu's %s'%s' differs from replica 0's after step %lld "
                    "(CLOPT_DIST_CHECK)",
                    r, what, name, (long long)clopt_optimizer_iterations(m->r[0].opt));
    return st == CLOPT_OK ? CLOPT_OK
                          : clopt__dist_fail(m->s, st, "apply: CLOPT_DIST_CHECK could not read "
                                                       "'%s'", name);
}

/* CLOPT_DIST_CHECK: every replica's variables and slots (but its own gradient accumulators)
 * against replica 0's, by checksum; over processes, replica 0's checksums against rank 0's. */
static clopt_status check_replicas(clopt_mirrored_optimizer *m) {
    const clopt_optimizer *o0 = m->r[0].opt, *in0 = clopt__dist_stepper(m, 0);
    const size_t count = clopt_optimizer_variable_count(o0), cap = count + in0->nvars + 1;
    uint64_t *hash = malloc(2 * cap * sizeof *hash); /* the second half: the reducer's */
    const char **names = malloc(cap * sizeof *names);
    clopt_status st = hash && names ? CLOPT_OK
                                    : clopt__dist_fail(m->s, CLOPT_ERR_OUT_OF_MEMORY,
                                                       "apply: CLOPT_DIST_CHECK: out of memory");
    size_t k = 0;
    for (size_t j = 0; st == CLOPT_OK && j < count; j++) {
        const char *name;
        clopt_variable *v0;
        if (clopt_optimizer_variable(o0, j, &name, NULL, &v0) != CLOPT_OK || !v0 ||
            strstr(name, "_gradient_accumulator"))
            continue;
        const uint64_t h0 = checksum(v0, &st);
        if (st != CLOPT_OK)
            st = clopt__dist_fail(m->s, st, "apply: CLOPT_DIST_CHECK could not read '%s'", name);
        for (size_t r = 1; st == CLOPT_OK && r < m->s->n; r++) {
            clopt_variable *v;
            clopt_optimizer_variable(m->r[r].opt, j, NULL, NULL, &v);
            st = check_one(m, r, v, h0, "", name);
        }
        names[k] = name;
        hash[k++] = h0;
    }
    for (size_t i = 0; st == CLOPT_OK && i < in0->nvars; i++) {
        const uint64_t h0 = checksum(in0->vars[i], &st);
        if (st != CLOPT_OK)
            st = clopt__dist_fail(m->s, st, "apply: CLOPT_DIST_CHECK could not read a variable");
        for (size_t r = 1; st == CLOPT_OK && r < m->s->n; r++)
            st = check_one(m, r, clopt__dist_stepper(m, r)->vars[i], h0, "variable ",
                           in0->vars[i]->name);
        names[k] = in0->vars[i]->name;
        hash[k++] = h0;
    }
    if (m->reducer->checked) st = m->reducer->checked(m, st, hash, names, k);
    free(hash);
    free(names);
    return st;
}

/* One step: the base class's, or a LossScaleOptimizer's around it. */
static clopt_status apply_step(clopt_mirrored_optimizer *m) {
    if (!m->r[0].opt->cls->wrapper) return step(m, NULL);
    int finite;
    clopt_status st = all_finite(m, &finite);
    if (st != CLOPT_OK) return st;
    const clopt__step_request req = {clopt__loss_scale_current(m->r[0].opt), NULL, {0}, 0};
    if (finite && (st = step(m, &req)) != CLOPT_OK) return st;
    for (size_t r = 0; r < m->s->n; r++) clopt__loss_scale_after(m->r[r].opt, finite);
    return CLOPT_OK;
}

clopt_status clopt_mirrored_optimizer_apply(clopt_mirrored_optimizer *m,
                                            clopt_variable *const *grads, size_t nreplicas,
                                            clopt_variable *const *vars, size_t n) {
    if (!m) return CLOPT_ERR_INVALID_ARGUMENT;
    clopt_strategy *s = m->s;
    s->error[0] = '\0';
    /* As clopt_optimizer_apply: the counter does not move (over processes, once all agree). */
    if (n == 0)
        return m->reducer->inputs_agreed ? m->reducer->inputs_agreed(m, CLOPT_OK, grads, vars, 0)
                                         : CLOPT_OK;
    clopt_status st = prepare(m, grads, nreplicas, vars, n);
    if (st == CLOPT_OK) st = apply_step(m);
    if (st == CLOPT_OK && s->check) st = check_replicas(m);
    return st;
}
