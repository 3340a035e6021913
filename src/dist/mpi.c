/* The strategy across processes (include/clopt/distribute_mpi.h): one replica per MPI rank.
 * It plugs into the strategy's reducer table (dist_internal.h): the all-reduce in rank order
 * (an MPI_Alltoallv reduce-scatter summed by hand, then MPI_Allgatherv), and the agreements
 * that keep every rank in step: each collective entry point first gathers every rank's local
 * outcome (a "vote"), so that all ranks fail alike instead of waiting for one that stopped.
 * Built only with CLOPT_WITH_MPI. */
#ifdef CLOPT_WITH_MPI
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "clopt/distribute_mpi.h"
#include "clopt/checkpoint.h"
#include "dist_internal.h"

/* The transport: a private communicator and reusable buffers for the reduce. */
typedef struct mpi_state {
    MPI_Comm comm;
    int rank, size;
    int *nloc, *base; /* per rank: its local replicas, the global index of its first */
    size_t world, kmax; /* replicas over every rank; the most one rank holds */
    unsigned char *pack, *recv, *send; /* local replicas packed; my share of the other ranks'
                                        * replicas; the shares by destination */
    size_t pack_cap, recv_cap, send_cap;
    struct vote *votes; /* size entries: the last gather */
    double reduce_s;       /* time in mpi_reduce, for clopt_strategy_mpi_reduce_stats */
    uint64_t reduce_bytes; /* bytes of gradients it reduced (one replica's) */
} mpi_state;

/* One rank's outcome of a local step: its status and message, and two values every rank must
 * agree on (what they are depends on the step). 512 bytes, gathered as bytes. */
typedef struct vote {
    int32_t st;
    int32_t flag;
    uint64_t a, b;
    char msg[488];
} vote;

/* Copies a message into a vote, cut to fit. */
static void put_msg(vote *v, const char *msg) {
    size_t n = strlen(msg);
    if (n >= sizeof v->msg) n = sizeof v->msg - 1;
    memcpy(v->msg, msg, n);
    v->msg[n] = '\0';
}

static mpi_state *state_of(const clopt_strategy *s) { return s->transport; }

/* Gathers every rank's vote into t->votes (allocated with the strategy, so a gather never
 * fails for memory on one rank while the others wait). */
static vote *gather(const mpi_state *t, const vote *mine) {
    MPI_Allgather(mine, (int)sizeof *mine, MPI_BYTE, t->votes, (int)sizeof *mine, MPI_BYTE,
                  t->comm);
    return t->votes;
}

/* The first failing rank of a gather, or -1. */
static int first_failure(const vote *all, int size) {
    for (int k = 0; k < size; k++)
        if (all[k].st != CLOPT_OK) return k;
    return -1;
}

/* Agrees on a local status: every rank returns the first failing rank's status, its message
 * prefixed with the rank (so every rank reports the same). *all_out, when not NULL, receives
 * the gathered votes on success (valid until the next agreement). */
static clopt_status agree(clopt_strategy *s, clopt_status st, int flag, uint64_t a, uint64_t b,
                          const vote **all_out) {
    const mpi_state *t = state_of(s);
    vote mine;
    memset(&mine, 0, sizeof mine);
    mine.st = st;
    mine.flag = flag;
    mine.a = a;
    mine.b = b;
    if (st != CLOPT_OK) put_msg(&mine, s->error);
    const vote *all = gather(t, &mine);
    const int bad = first_failure(all, t->size);
    if (bad >= 0) {
        char why[sizeof mine.msg];
        snprintf(why, sizeof why, "%s", all[bad].msg);
        return clopt__dist_fail(s, all[bad].st, "rank %d: %s", bad, why);
    }
    if (all_out) *all_out = all;
    return CLOPT_OK;
}

/* ---- the reduce ---- */

static int grow(unsigned char **b, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    unsigned char *p = realloc(*b, need);
    if (!p) return -1;
    *b = p;
    *cap = need;
    return 0;
}

/* The sum of my share of one segment: cnt elements of each of the world's replicas (src[g]:
 * global replica g's), in global replica order, as host_reduce.c sums replicas (float for
 * every dtype but float64; MEAN divides after), into dst, which may be one of the sources: each
 * block of elements is summed aside, then stored. */
static void sum_share(const mpi_state *t, clopt_dtype dt, const unsigned char *const *src,
                      unsigned char *dst, size_t cnt, clopt_reduction op) {
    enum { BLOCK = 1024 };
    const size_t W = t->world;
    if (dt == CLOPT_FLOAT32) { /* the same sums, replica by replica over a block (vectorizes) */
        float acc[BLOCK];
        for (size_t b = 0; b < cnt; b += BLOCK) {
            const size_t nb = cnt - b < BLOCK ? cnt - b : BLOCK;
            const float *x = (const float *)(const void *)src[0] + b;
            for (size_t e = 0; e < nb; e++) acc[e] = 0.0f + x[e];
            for (size_t k = 1; k < W; k++) {
                x = (const float *)(const void *)src[k] + b;
                for (size_t e = 0; e < nb; e++) acc[e] += x[e];
            }
            if (op == CLOPT_REDUCE_MEAN)
                for (size_t e = 0; e < nb; e++) acc[e] /= (float)W;
            memcpy(dst + b * sizeof *acc, acc, nb * sizeof *acc);
        }
        return;
    }
    for (size_t e = 0; e < cnt; e++) { /* element by element: all read before dst is written */
        double sum = 0;
        float sumf = 0;
        for (size_t k = 0; k < W; k++) {
            const double x = clopt__elem_load(src[k], dt, e);
            sum += x;
            sumf += (float)x;
        }
        if (dt != CLOPT_FLOAT64) sum = sumf;
        if (op == CLOPT_REDUCE_MEAN)
            sum = dt == CLOPT_FLOAT64 ? sum / (double)W : (double)(sumf / (float)W);
        clopt__elem_store(dst, dt, e, sum);
    }
}

/* The all-reduce of elements [s0, s0 + len) of the packed launch (row[l]: local replica l's),
 * into row[0]: rank j sums the j-th share of every replica's elements (each rank sends the
 * other ranks each of its replicas' shares, so rank j receives them in global replica order;
 * its own replicas' shares it reads in place), into row[0] itself, then every rank gathers
 * every share (MPI_IN_PLACE: no copy of its own). Buffers were sized by reduce_launch. */
static clopt_status reduce_segment(clopt_mirrored_optimizer *m, unsigned char *const *row,
                                   clopt_dtype dt, size_t s0, size_t len) {
    mpi_state *t = state_of(m->s);
    const size_t es = clopt_dtype_size(dt), P = (size_t)t->size, n = m->s->n;
    int counts[t->size], displs[t->size], scounts[t->size], sdispls[t->size];
    int rcounts[t->size], rdispls[t->size];
    size_t my_at = 0;
    for (size_t j = 0, at = 0; j < P; j++) {
        const size_t cnt = len / P + (j < len % P);
        const int self = j == (size_t)t->rank;
        if (self) my_at = at;
        counts[j] = (int)(cnt * es);
        displs[j] = (int)(at * es);
        scounts[j] = self ? 0 : (int)(n * cnt * es);
        sdispls[j] = (int)(n * at * es);
        for (size_t l = 0; n > 1 && !self && l < n; l++) /* by destination: each replica's share */
            memcpy(t->send + (n * at + l * cnt) * es, row[l] + (s0 + at) * es, cnt * es);
        at += cnt;
    }
    const size_t mine = (size_t)counts[t->rank] / es;
    const unsigned char *src[t->world];
    for (size_t k = 0; k < P; k++) {
        const int self = k == (size_t)t->rank;
        rcounts[k] = self ? 0 : (int)((size_t)t->nloc[k] * mine * es);
        rdispls[k] = (int)((size_t)t->base[k] * mine * es);
        for (int l = 0; l < t->nloc[k]; l++) {
            const size_t g = (size_t)(t->base[k] + l);
            src[g] = self ? row[l] + (s0 + my_at) * es : t->recv + g * mine * es;
        }
    }
    unsigned char *seg = row[0] + s0 * es;
    if (MPI_Alltoallv(n > 1 ? t->send : seg, scounts, sdispls, MPI_BYTE, t->recv, rcounts,
                      rdispls, MPI_BYTE, t->comm) != MPI_SUCCESS)
        return clopt__dist_fail(m->s, CLOPT_ERR_IO, "rank %d: MPI_Alltoallv failed", t->rank);
    sum_share(t, dt, src, seg + my_at * es, mine, m->op);
    if (MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_BYTE, seg, counts, displs, MPI_BYTE, t->comm) !=
        MPI_SUCCESS)
        return clopt__dist_fail(m->s, CLOPT_ERR_IO, "rank %d: MPI_Allgatherv failed", t->rank);
    return CLOPT_OK;
}

static clopt_status reduce_launch(clopt_mirrored_optimizer *m, size_t i);

static clopt_status mpi_reduce(clopt_mirrored_optimizer *m, size_t i) {
    mpi_state *t = state_of(m->s);
    const double t0 = MPI_Wtime();
    clopt_status st = reduce_launch(m, i);
    t->reduce_s += MPI_Wtime() - t0;
    return st;
}

/* The elements of one segment at most: byte counts of every rank's shares fit MPI's int. */
static size_t segment_elems(const mpi_state *t, size_t es) {
    return ((size_t)1 << 30) / (es * t->kmax);
}

/* Buffers for launch i's exchange (total elements a replica; packed: some replica's pairs are
 * not in pair order and need the packing buffer), or -1: grown before the ranks agree, so that
 * no rank leaves for want of memory while the others wait in the exchange. */
static int reserve(mpi_state *t, size_t n, size_t total, size_t es, int packed) {
    const size_t seg = segment_elems(t, es), len = total < seg ? total : seg;
    const size_t mine = len / (size_t)t->size + 1;
    return grow(&t->recv, &t->recv_cap, t->world * mine * es + 1) ||
           (packed && grow(&t->pack, &t->pack_cap, n * total * es + 1)) ||
           (n > 1 && grow(&t->send, &t->send_cap, n * len * es + 1));
}

/* Whether local replica r's pairs of launch i lie back to back in pair order from lo. */
static int in_pair_order(const clopt__plan *p, size_t i, size_t lo) {
    const clopt__plan_launch *pl = &p->launches[i];
    size_t at = lo;
    for (size_t k = pl->range_base; k < pl->range_base + pl->nranges; k++) {
        if (p->grads[k]->offset != at) return 0;
        at += p->grads[k]->padded;
    }
    return 1;
}

/* Copies launch i's pairs between replica staging `host` (at their offsets in plan p) and a
 * packed row (in pair order); to_row says which way. */
static void repack(const clopt__plan *p, size_t i, unsigned char *host, unsigned char *row,
                   size_t es, int to_row) {
    const clopt__plan_launch *pl = &p->launches[i];
    for (size_t k = pl->range_base, at = 0; k < pl->range_base + pl->nranges; k++) {
        const clopt_variable *g = p->grads[k];
        if (to_row) memcpy(row + at * es, host + g->offset * es, g->padded * es);
        else memcpy(host + g->offset * es, row + at * es, g->padded * es);
        at += g->padded;
    }
}

/* Launch i's processed gradients of every local replica in host memory: a host replica's
 * scratch itself (no copy), another's read from its device into its staging (every rank agrees
 * that all could before any exchanges: a device failure here fails every rank alike); packed in
 * the launch's pair order (so a rank whose arena places them elsewhere still agrees; no copy
 * when they already lie so), reduced in segments into the first replica's, and given to every
 * local replica. A failure writing back is after the exchange: it is held in m->late (the
 * remaining launches' collectives still run) and the step's end agrees on it. */
static clopt_status reduce_launch(clopt_mirrored_optimizer *m, size_t i) {
    clopt_strategy *s = m->s;
    mpi_state *t = state_of(s);
    const size_t n = s->n;
    const clopt__plan *p0 = &clopt__dist_stepper(m, 0)->plan;
    const clopt__plan_launch *pl = &p0->launches[i];
    const clopt_dtype dt = pl->dtype;
    const size_t es = clopt_dtype_size(dt);
    size_t total = 0, lo[MAX_REPLICAS], hi[MAX_REPLICAS];
    for (size_t k = pl->range_base; k < pl->range_base + pl->nranges; k++)
        total += p0->grads[k]->padded;
    unsigned char *mem[MAX_REPLICAS]; /* replica r's launch block, host-addressable */
    int direct[MAX_REPLICAS];         /* mem[r] is the replica's own (host) scratch */
    int ordered[MAX_REPLICAS], packed = 0; /* the pairs lie in pair order (else: repack) */
    for (size_t r = 0; r < n; r++) {
        const clopt__plan *p = &clopt__dist_stepper(m, r)->plan;
        clopt__dist_launch_span(p, i, &lo[r], &hi[r]);
        ordered[r] = in_pair_order(p, i, lo[r]);
        packed |= !ordered[r];
    }
    clopt_status st = CLOPT_OK;
    if (reserve(t, n, total, es, packed))
        st = clopt__dist_fail(s, CLOPT_ERR_OUT_OF_MEMORY, "rank %d: out of memory", t->rank);
    for (size_t r = 0; st == CLOPT_OK && r < n; r++) {
        clopt_context *ctx = m->r[r].opt->ctx;
        direct[r] = ctx->ops == &clopt__host_backend;
        mem[r] = direct[r] ? (unsigned char *)m->r[r].scratch[i] : m->host[r];
        if (!direct[r] && ctx->ops->read(ctx, m->r[r].scratch[i], lo[r] * es,
                                         mem[r] + lo[r] * es, (hi[r] - lo[r]) * es) != CLOPT_OK)
            st = clopt__dist_fail_replica(s, r, CLOPT_ERR_OPENCL);
        else st = clopt__dist_fault(s, CLOPT__FAULT_READ, r);
    }
    if ((st = agree(s, st, 0, 0, 0, NULL)) != CLOPT_OK) return st;
    unsigned char *row[MAX_REPLICAS];
    for (size_t r = 0; r < n; r++) {
        row[r] = ordered[r] ? mem[r] + lo[r] * es : t->pack + r * total * es;
        if (!ordered[r]) repack(&clopt__dist_stepper(m, r)->plan, i, mem[r], row[r], es, 1);
    }
    t->reduce_bytes += total * es;
    const size_t seg = segment_elems(t, es);
    for (size_t s0 = 0; s0 < total; s0 += seg) {
        st = reduce_segment(m, row, dt, s0, total - s0 < seg ? total - s0 : seg);
        if (st != CLOPT_OK) return st;
    }
    /* row[0] holds the sum: every local replica takes it, at its own offsets. */
    for (size_t r = 0; r < n && m->late == CLOPT_OK; r++) {
        clopt_context *ctx = m->r[r].opt->ctx;
        unsigned char *block = mem[r] + lo[r] * es;
        if (!ordered[r]) repack(&clopt__dist_stepper(m, r)->plan, i, mem[r], row[0], es, 0);
        else if (direct[r] && block != row[0]) memcpy(block, row[0], total * es);
        if (!direct[r] && ctx->ops->write(ctx, m->r[r].scratch[i], lo[r] * es,
                                          ordered[r] ? row[0] : block,
                                          (hi[r] - lo[r]) * es) != CLOPT_OK)
            m->late = clopt__dist_fail_replica(s, r, CLOPT_ERR_OPENCL);
        else m->late = clopt__dist_fault(s, CLOPT__FAULT_WRITE, r);
    }
    return CLOPT_OK;
}

/* ---- broadcasts ---- */

/* A local failure about variable v, with its context's message. */
static clopt_status var_fail(clopt_strategy *s, const clopt_variable *v, clopt_status st,
                             const char *what) {
    return clopt__dist_fail(s, st, "%s '%s': %s", what, v->name,
                            st == CLOPT_ERR_OUT_OF_MEMORY ? "out of memory"
                                                          : clopt_context_last_error(v->ctx));
}

/* Rank 0's bytes of v[0] to every local copy v[0..nv) on every rank (sizes agreed before):
 * every rank learns whether rank 0 could read before any waits for the data, and whether
 * every rank could write. */
static clopt_status bcast_variable(clopt_strategy *s, clopt_variable *const *v, size_t nv) {
    const mpi_state *t = state_of(s);
    const size_t bytes = (size_t)clopt_variable_size(v[0]) * clopt_dtype_size(v[0]->dtype);
    const size_t piece = (size_t)1 << 30; /* MPI's counts are int */
    unsigned char *b = malloc(bytes ? bytes : 1);
    clopt_status st = b ? CLOPT_OK : CLOPT_ERR_OUT_OF_MEMORY;
    if (st == CLOPT_OK && t->rank == 0) st = clopt_variable_read(v[0], b, bytes);
    if (st != CLOPT_OK) var_fail(s, v[0], st, "reading");
    if ((st = agree(s, st, 0, 0, 0, NULL)) == CLOPT_OK) {
        for (size_t at = 0; at < bytes; at += piece)
            MPI_Bcast(b + at, (int)(bytes - at < piece ? bytes - at : piece), MPI_BYTE, 0,
                      t->comm);
        for (size_t l = t->rank == 0; st == CLOPT_OK && l < nv; l++)
            if ((st = clopt_variable_write(v[l], b, bytes)) != CLOPT_OK)
                var_fail(s, v[l], st, "writing");
        st = agree(s, st, 0, 0, 0, NULL);
    }
    free(b);
    return st;
}

/* The byte size of a variable, for votes. */
static uint64_t bytes_of(const clopt_variable *v) {
    return (uint64_t)clopt_variable_size(v) * clopt_dtype_size(v->dtype);
}

static clopt_status mpi_variable_created(clopt_strategy *s, clopt_status st, clopt_variable **v) {
    const vote *all = NULL;
    st = agree(s, st, 0, v ? bytes_of(v[0]) : 0, v ? (uint64_t)v[0]->dtype : 0, &all);
    if (st != CLOPT_OK) return st;
    for (int k = 1; k < state_of(s)->size; k++)
        if (all[k].a != all[0].a || all[k].b != all[0].b) {
            st = clopt__dist_fail(s, CLOPT_ERR_REPLICAS_MISMATCH,
                      "variable_create: '%s' has %llu bytes of %s on rank %d but %llu bytes of "
                      "%s on rank 0; every rank must create the same variables in the same order",
                      v[0]->name, (unsigned long long)all[k].a,
                      clopt_dtype_name((clopt_dtype)all[k].b), k, (unsigned long long)all[0].a,
                      clopt_dtype_name((clopt_dtype)all[0].b));
            break;
        }
    return st == CLOPT_OK ? bcast_variable(s, v, s->n) : st;
}

/* ---- the build signature ---- */

/* The lines every rank must agree on: the optimizer's config, then one per variable. */
static char *signature(const clopt_mirrored_optimizer *m, clopt_variable *const *vars, size_t n) {
    char *cfg = NULL;
    if (clopt_optimizer_get_config(m->r[0].opt, &cfg) != CLOPT_OK) return NULL;
    size_t cap = strlen(cfg) + 64 + n * 320, len = 0;
    char *sig = malloc(cap);
    if (sig) len += (size_t)snprintf(sig, cap, "optimizer config %s\n", cfg);
    for (size_t i = 0; sig && i < n; i++) {
        const clopt_variable *v = vars[i];
        len += (size_t)snprintf(sig + len, cap - len, "variable %zu: '%.200s' %s [", i, v->name,
                                clopt_dtype_name(v->dtype));
        for (int d = 0; d < v->ndim; d++)
            len += (size_t)snprintf(sig + len, cap - len, "%s%lld", d ? ", " : "",
                                    (long long)v->shape[d]);
        len += (size_t)snprintf(sig + len, cap - len, "]\n");
    }
    free(cfg);
    return sig;
}

/* Where a and b first differ: the line, from a little before the first different character
 * (a config is one long line), copied (at most cap bytes) into la and lb. */
static void first_difference(const char *a, const char *b, char *la, char *lb, size_t cap) {
    while (*a && *b) {
        const size_t na = strcspn(a, "\n"), nb = strcspn(b, "\n");
        if (na != nb || memcmp(a, b, na) != 0) break;
        a += na + (a[na] == '\n');
        b += nb + (b[nb] == '\n');
    }
    size_t d = 0;
    while (a[d] && a[d] == b[d] && a[d] != '\n') d++;
    const size_t from = d > 40 ? d - 40 : 0;
    const char *pa = a + from, *pb = b + from;
    snprintf(la, cap, "%s%.*s", from ? "..." : "", (int)strcspn(pa, "\n"), *a ? pa : "(nothing)");
    snprintf(lb, cap, "%s%.*s", from ? "..." : "", (int)strcspn(pb, "\n"), *b ? pb : "(nothing)");
}

static clopt_status mpi_built(clopt_mirrored_optimizer *m, clopt_status st,
                             clopt_variable *const *vars, size_t n) {
    clopt_strategy *s = m->s;
    const mpi_state *t = state_of(s);
    char *sig = st == CLOPT_OK ? signature(m, vars, n) : NULL;
    if (st == CLOPT_OK && !sig)
        st = clopt__dist_fail(s, CLOPT_ERR_OUT_OF_MEMORY, "build: out of memory");
    const vote *all = NULL;
    st = agree(s, st, 0, sig ? strlen(sig) + 1 : 0, 0, &all);
    if (st != CLOPT_OK) {
        free(sig);
        return st;
    }
    int counts[t->size], displs[t->size];
    size_t total = 0;
    for (int k = 0; k < t->size; k++) {
        counts[k] = (int)all[k].a;
        displs[k] = (int)total;
        total += all[k].a;
    }
    char *every = total < INT_MAX ? malloc(total) : NULL;
    /* Everyone has the lengths: whether a rank can take the strings is agreed first. */
    st = agree(s, every ? CLOPT_OK : clopt__dist_fail(s, CLOPT_ERR_OUT_OF_MEMORY,
                                                      "build: out of memory"), 0, 0, 0, NULL);
    if (st == CLOPT_OK) {
        MPI_Allgatherv(sig, counts[t->rank], MPI_CHAR, every, counts, displs, MPI_CHAR, t->comm);
        for (int k = 1; k < t->size; k++) {
            if (strcmp(every + displs[k], every) == 0) continue;
            char la[160], l0[160];
            first_difference(every + displs[k], every, la, l0, sizeof la);
            st = clopt__dist_fail(s, CLOPT_ERR_REPLICAS_MISMATCH,
                      "build: rank %d differs from rank 0: rank %d has \"%s\", rank 0 has "
                      "\"%s\"; every rank must build the same optimizer on the same variables",
                      k, k, la, l0);
            break;
        }
    }
    m->disagreed = st == CLOPT_ERR_REPLICAS_MISMATCH;
    free(every);
    free(sig);
    return st;
}

/* ---- apply's agreements ---- */

static clopt_status mpi_inputs_agreed(clopt_mirrored_optimizer *m, clopt_status st,
                                      clopt_variable *const *grads, clopt_variable *const *vars,
                                      size_t n) {
    clopt_strategy *s = m->s;
    const mpi_state *t = state_of(s);
    const int builds = vars && !m->r[0].opt->built;
    if (st == CLOPT_OK && m->disagreed)
        st = clopt__dist_fail(s, CLOPT_ERR_BAD_STATE,
                              "apply: the ranks built different optimizers or variable lists "
                              "(CLOPT_ERR_REPLICAS_MISMATCH at build); make the optimizer anew");
    const vote *all = NULL;
    if ((st = agree(s, st, builds, n, 0, &all)) != CLOPT_OK) return st;
    for (int k = 1; st == CLOPT_OK && k < t->size; k++) {
        if (all[k].a != all[0].a)
            st = clopt__dist_fail(s, CLOPT_ERR_REPLICAS_MISMATCH,
                      "apply: rank %d passes %llu gradients but rank 0 passes %llu", k,
                      (unsigned long long)all[k].a, (unsigned long long)all[0].a);
        else if (all[k].flag != all[0].flag)
            st = clopt__dist_fail(s, CLOPT_ERR_BAD_STATE,
                      "apply: rank %d %s but rank 0 %s (an earlier build failed on some ranks "
                      "only, or vars is NULL on some); make the optimizer anew",
                      k, all[k].flag ? "builds" : "does not build",
                      all[0].flag ? "builds" : "does not");
    }
    if (st != CLOPT_OK || n == 0) return st;
    unsigned char *mask = malloc(n), *every = malloc(n * (size_t)t->size);
    st = agree(s, mask && every ? CLOPT_OK
                                : clopt__dist_fail(s, CLOPT_ERR_OUT_OF_MEMORY, "apply: out of memory"),
               0, 0, 0, NULL);
    if (st == CLOPT_OK) {
        for (size_t i = 0; i < n; i++) mask[i] = grads[i] != NULL;
        MPI_Allgather(mask, (int)n, MPI_BYTE, every, (int)n, MPI_BYTE, t->comm);
        for (int k = 1; st == CLOPT_OK && k < t->size; k++)
            for (size_t i = 0; i < n; i++) {
                if (every[(size_t)k * n + i] == every[i]) continue;
                st = clopt__dist_fail(s, CLOPT_ERR_INVALID_ARGUMENT,
                          "apply: gradient %zu is missing on rank %d but not on rank %d; a "
                          "missing gradient must be missing on every rank",
                          i, every[i] ? k : 0, every[i] ? 0 : k);
                break;
            }
    }
    free(mask);
    free(every);
    return st;
}

/* A fingerprint of the plan's launches: their dtypes and element counts. */
static uint64_t plan_print(const clopt_mirrored_optimizer *m) {
    const clopt__plan *p = &clopt__dist_stepper(m, 0)->plan;
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < p->nlaunches; i++) {
        const clopt__plan_launch *pl = &p->launches[i];
        uint64_t total = 0;
        for (size_t k = pl->range_base; k < pl->range_base + pl->nranges; k++)
            total += p->grads[k]->padded;
        h = (h ^ (uint64_t)pl->dtype) * 1099511628211ull;
        h = (h ^ total) * 1099511628211ull;
    }
    return h;
}

static clopt_status mpi_prepared(clopt_mirrored_optimizer *m, clopt_status st) {
    const vote *all = NULL;
    const uint64_t nl = st == CLOPT_OK ? clopt__dist_stepper(m, 0)->plan.nlaunches : 0;
    if ((st = agree(m->s, st, 0, st == CLOPT_OK ? plan_print(m) : 0, nl, &all)) != CLOPT_OK)
        return st;
    for (int k = 1; k < state_of(m->s)->size; k++)
        if (all[k].a != all[0].a || all[k].b != all[0].b) {
            st = clopt__dist_fail(m->s, CLOPT_ERR_REPLICAS_MISMATCH,
                      "apply: rank %d groups its gradients unlike rank 0 (%llu launch groups "
                      "against %llu, or other sizes)",
                      k, (unsigned long long)all[k].b, (unsigned long long)all[0].b);
            break;
        }
    return st;
}

static clopt_status mpi_finite_agreed(clopt_mirrored_optimizer *m, clopt_status st, int *finite) {
    const vote *all = NULL;
    if ((st = agree(m->s, st, *finite, 0, 0, &all)) != CLOPT_OK) return st;
    for (int k = 0; k < state_of(m->s)->size; k++) *finite &= all[k].flag != 0;
    return CLOPT_OK;
}

static clopt_status mpi_step_agreed(clopt_mirrored_optimizer *m, clopt_status st,
                                    int exchanged) {
    clopt_strategy *s = m->s;
    st = agree(s, st, 0, 0, 0, NULL);
    if (st == CLOPT_OK || !exchanged) return st;
    char why[sizeof s->error];
    snprintf(why, sizeof why, "%s", s->error);
    return clopt__dist_fail(s, CLOPT_ERR_REPLICAS_DIVERGED,
                "apply: %s (%s), after the all-reduce's exchange: the other replicas took the "
                "step, so the replicas now differ; restore them from rank 0 "
                "(clopt_mirrored_optimizer_broadcast) or from a checkpoint "
                "(clopt_mirrored_optimizer_checkpoint_load_mpi)",
                why, clopt_status_name(st));
}

static clopt_status mpi_checked(clopt_mirrored_optimizer *m, clopt_status st, uint64_t *hash,
                                const char *const *names, size_t k) {
    clopt_strategy *s = m->s;
    const mpi_state *t = state_of(s);
    const uint64_t h = st == CLOPT_OK ? clopt__hash64(CLOPT__HASH_INIT, hash, k * sizeof *hash) : 0;
    const vote *all = NULL;
    if ((st = agree(s, st, 0, h, k, &all)) != CLOPT_OK) return st;
    int rank = 0; /* the first rank whose checksums differ from rank 0's */
    for (int j = 1; !rank && j < t->size; j++)
        if (all[j].a != all[0].a || all[j].b != all[0].b) rank = j;
    if (!rank) return CLOPT_OK;
    if (all[rank].b != all[0].b) /* the build signatures agreed: should not happen */
        return clopt__dist_fail(s, CLOPT_ERR_REPLICAS_DIVERGED,
                    "apply: rank %d checks %llu variables but rank 0 %llu (CLOPT_DIST_CHECK)",
                    rank, (unsigned long long)all[rank].b, (unsigned long long)all[0].b);
    /* Every rank saw the same votes: all take part in naming the variable. */
    uint64_t *rank0 = hash + k, at = k;
    memcpy(rank0, hash, k * sizeof *hash);
    MPI_Bcast(rank0, (int)k, MPI_UINT64_T, 0, t->comm);
    if (t->rank == rank)
        for (at = 0; at < k && hash[at] == rank0[at];) at++;
    MPI_Bcast(&at, 1, MPI_UINT64_T, rank, t->comm);
    return clopt__dist_fail(s, CLOPT_ERR_REPLICAS_DIVERGED,
                "apply: rank %d's '%s' differs from rank 0's after step %lld (CLOPT_DIST_CHECK)",
                rank, at < k ? names[at] : "(a variable)",
                (long long)clopt_optimizer_iterations(m->r[0].opt));
}

static void mpi_destroy(clopt_strategy *s) {
    mpi_state *t = state_of(s);
    if (!t) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&t->comm);
    free(t->pack);
    free(t->recv);
    free(t->send);
    free(t->nloc);
    free(t->votes);
    free(t);
    s->transport = NULL;
}

static const clopt__dist_reducer mpi_reducer = {
    .name = "mpi",
    .reduce_launch = mpi_reduce,
    .variable_created = mpi_variable_created,
    .built = mpi_built,
    .inputs_agreed = mpi_inputs_agreed,
    .prepared = mpi_prepared,
    .finite_agreed = mpi_finite_agreed,
    .step_agreed = mpi_step_agreed,
    .checked = mpi_checked,
    .destroy = mpi_destroy,
};

/* ---- the public calls ---- */

/* This rank's strategy on local_device (a list: several local replicas), or a status with
 * clopt_last_create_error's message. */
static clopt_status open_local(const char *local_device, clopt_strategy **s) {
    return local_device ? clopt_strategy_create(local_device, s)
                        : clopt_strategy_create_replicated(NULL, 1, s);
}

/* Every rank's local replica count (votes' a) and CLOPT_DIST_CHECK (any rank's: every rank
 * must run its collective alike) into t and s. */
static void lay_out(mpi_state *t, clopt_strategy *s, const vote *all) {
    t->world = 0;
    t->kmax = 1;
    for (int k = 0; k < t->size; k++) {
        t->nloc[k] = (int)all[k].a;
        t->base[k] = (int)t->world;
        t->world += all[k].a;
        if (all[k].a > t->kmax) t->kmax = all[k].a;
        s->check |= all[k].flag;
    }
    s->world = t->world;
    s->first = (size_t)t->base[t->rank];
}

clopt_status clopt_strategy_create_mpi(MPI_Comm comm, const char *local_device,
                                       clopt_strategy **out) {
    clopt__create_fail("%s", "");
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (!init || fin || comm == MPI_COMM_NULL) {
        clopt__create_fail("clopt_strategy_create_mpi: %s",
                           comm == MPI_COMM_NULL ? "comm is MPI_COMM_NULL"
                                                 : "MPI is not initialized (or finalized)");
        return CLOPT_ERR_INVALID_ARGUMENT;
    }
    MPI_Comm dup;
    MPI_Comm_dup(comm, &dup); /* collective: before anything that may fail on one rank */
    int rank, size;
    MPI_Comm_rank(dup, &rank);
    MPI_Comm_size(dup, &size);
    mpi_state *t = calloc(1, sizeof *t);
    vote *all = t ? calloc((size_t)size, sizeof *all) : NULL;
    int *nloc = all ? calloc(2 * (size_t)size, sizeof *nloc) : NULL;
    if (!nloc) { /* a few bytes a rank: without them this rank cannot even tell the others */
        fprintf(stderr, "clopt_strategy_create_mpi: rank %d: out of memory\n", rank);
        MPI_Abort(comm, 1);
    }
    clopt_strategy *s = NULL;
    clopt_status st = CLOPT_OK;
    if (st == CLOPT_OK && !out) {
        clopt__create_fail("clopt_strategy_create_mpi: out is NULL");
        st = CLOPT_ERR_INVALID_ARGUMENT;
    }
    if (st == CLOPT_OK) st = open_local(local_device, &s);
    vote mine;
    memset(&mine, 0, sizeof mine);
    mine.st = st;
    mine.a = s ? s->n : 0;
    mine.flag = s ? s->check : 0;
    put_msg(&mine, clopt_last_create_error());
    MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, dup);
    const int bad = first_failure(all, size);
    if (bad >= 0) {
        st = (clopt_status)all[bad].st;
        char why[sizeof mine.msg];
        snprintf(why, sizeof why, "%s", all[bad].msg);
        clopt__create_fail("clopt_strategy_create_mpi: rank %d: %s", bad, why);
        free(nloc);
        free(all);
        free(t);
        clopt_strategy_destroy(s);
        MPI_Comm_free(&dup);
        return st;
    }
    t->votes = all;
    t->comm = dup;
    t->rank = rank;
    t->size = size;
    t->nloc = nloc;
    t->base = nloc + size;
    lay_out(t, s, all);
    s->transport = t;
    s->reducer = &mpi_reducer;
    *out = s;
    return CLOPT_OK;
}

size_t clopt_strategy_num_replicas_in_sync(const clopt_strategy *s) {
    return s ? (s->world ? s->world : s->n) : 0;
}

size_t clopt_strategy_first_replica(const clopt_strategy *s) { return s ? s->first : 0; }

clopt_status clopt_strategy_mpi_reduce_stats(const clopt_strategy *s, double *seconds,
                                             uint64_t *bytes) {
    if (!s || !state_of(s) || !seconds || !bytes) return CLOPT_ERR_INVALID_ARGUMENT;
    *seconds = state_of(s)->reduce_s;
    *bytes = state_of(s)->reduce_bytes;
    return CLOPT_OK;
}

/* The variables the optimizer was built on (the inner optimizer's for a wrapper), then the
 * optimizer's own, from rank 0's first replica to every local replica of every rank. */
static clopt_status bcast_state(clopt_mirrored_optimizer *m) {
    clopt_strategy *s = m->s;
    clopt_optimizer *o = m->r[0].opt;
    const clopt_optimizer *in = clopt__dist_stepper(m, 0);
    const size_t count = clopt_optimizer_variable_count(o);
    clopt_status st = CLOPT_OK;
    for (size_t i = 0; st == CLOPT_OK && i < in->nvars; i++) {
        clopt_variable *row[MAX_REPLICAS];
        for (size_t r = 0; r < s->n; r++) row[r] = clopt__dist_stepper(m, r)->vars[i];
        st = bcast_variable(s, row, s->n);
    }
    for (size_t k = 0; st == CLOPT_OK && k < count; k++) {
        clopt_variable *v = NULL;
        clopt_optimizer_variable(o, k, NULL, NULL, &v);
        const size_t len = v ? (size_t)clopt_variable_size(v) : 1;
        double *b = malloc(len * sizeof *b);
        st = b ? CLOPT_OK : CLOPT_ERR_OUT_OF_MEMORY;
        if (st == CLOPT_OK && state_of(s)->rank == 0)
            st = clopt_optimizer_variable_read(o, k, b, len);
        if (st != CLOPT_OK) clopt__dist_fail_replica(s, 0, st);
        if ((st = agree(s, st, 0, 0, 0, NULL)) == CLOPT_OK) {
            MPI_Bcast(b, (int)len, MPI_DOUBLE, 0, state_of(s)->comm);
            for (size_t r = state_of(s)->rank == 0; st == CLOPT_OK && r < s->n; r++)
                if ((st = clopt_optimizer_variable_write(m->r[r].opt, k, b, len)) != CLOPT_OK)
                    clopt__dist_fail_replica(s, r, st);
            st = agree(s, st, 0, 0, 0, NULL);
        }
        free(b);
    }
    return st;
}

clopt_status clopt_mirrored_optimizer_broadcast(clopt_mirrored_optimizer *m) {
    if (!m) return CLOPT_ERR_INVALID_ARGUMENT;
    clopt_strategy *s = m->s;
    s->error[0] = '\0';
    if (!state_of(s)) return CLOPT_OK;
    clopt_optimizer *o = m->r[0].opt;
    clopt_status st = o->built ? CLOPT_OK
                               : clopt__dist_fail(s, CLOPT_ERR_NOT_BUILT,
                                                  "broadcast: the optimizer is not built");
    const vote *all = NULL;
    const clopt_optimizer *in = clopt__dist_stepper(m, 0);
    st = agree(s, st, 0, clopt_optimizer_variable_count(o), in->nvars, &all);
    if (st != CLOPT_OK) return st;
    for (int k = 1; k < state_of(s)->size; k++)
        if (all[k].a != all[0].a || all[k].b != all[0].b) {
            st = clopt__dist_fail(s, CLOPT_ERR_REPLICAS_MISMATCH,
                      "broadcast: rank %d has %llu optimizer variables over %llu variables, rank "
                      "0 %llu over %llu", k, (unsigned long long)all[k].a,
                      (unsigned long long)all[k].b, (unsigned long long)all[0].a,
                      (unsigned long long)all[0].b);
            break;
        }
    return st == CLOPT_OK ? bcast_state(m) : st;
}

clopt_status clopt_mirrored_optimizer_checkpoint_save_mpi(clopt_mirrored_optimizer *m,
                                                          clopt_variable *const *vars, size_t n,
                                                          const char *path) {
    if (!m) return CLOPT_ERR_INVALID_ARGUMENT;
    clopt_strategy *s = m->s;
    s->error[0] = '\0';
    clopt_status st = CLOPT_OK;
    if (!state_of(s) || state_of(s)->rank == 0) {
        st = clopt_checkpoint_save(m->r[0].opt, vars, n, path);
        if (st != CLOPT_OK) clopt__dist_fail_replica(s, 0, st);
    }
    return state_of(s) ? agree(s, st, 0, 0, 0, NULL) : st;
}

clopt_status clopt_mirrored_optimizer_checkpoint_load_mpi(clopt_mirrored_optimizer *m,
                                                          clopt_variable *const *vars, size_t n,
                                                          const char *path) {
    if (!m) return CLOPT_ERR_INVALID_ARGUMENT;
    clopt_strategy *s = m->s;
    s->error[0] = '\0';
    if (!state_of(s))
        return clopt__dist_fail(s, CLOPT_ERR_INVALID_ARGUMENT,
                                "checkpoint_load_mpi: not an MPI strategy");
    clopt_status st = CLOPT_OK;
    if (state_of(s)->rank == 0) {
        st = clopt_checkpoint_load(m->r[0].opt, vars, n, path);
        if (st != CLOPT_OK) clopt__dist_fail_replica(s, 0, st);
    }
    if ((st = agree(s, st, 0, n, 0, NULL)) != CLOPT_OK) return st;
    for (size_t i = 0; st == CLOPT_OK && i < n; i++) st = bcast_variable(s, &vars[i], 1);
    return st == CLOPT_OK ? clopt_mirrored_optimizer_broadcast(m) : st;
}

#else
/* Without MPI this file is empty (ISO C wants a declaration). */
typedef int clopt__dist_mpi_unused;
#endif
