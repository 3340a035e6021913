/* mlp: the train_digits model on a clopt context (see mlp.h). On OpenCL every operation is
 * enqueued on one in-order queue (the context's, or with profiling the example's own queue on
 * the same cl_context, which the caller orders against clopt's queue with mlp_finish and
 * clopt_finish); nothing is read back but the metric sums, when asked. */
#include "mlp.h"
#include <clblast_c.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MLP_ERR(...) (fprintf(stderr, "train_digits: " __VA_ARGS__), fputc('\n', stderr), -1)

/* The example's kernels. Offsets are in elements; each kernel touches rows x cols row-major
 * blocks. softmax_xent runs as one work-group so that its sums need no atomics and come out the
 * same every run (a resumed run repeats them bit for bit). */
static const char mlp_kernels[] =
    "#define WG XENT_WG\n"
    "__kernel void gather_rows(__global const float *x, __global const int *y,\n"
    "                          __global const int *perm, uint first, uint cols,\n"
    "                          __global float *a0, __global int *yb) {\n"
    "    size_t j = get_global_id(0), r = get_global_id(1);\n"
    "    size_t src = (size_t)perm[first + r];\n"
    "    a0[r * cols + j] = x[src * cols + j];\n"
    "    if (j == 0) yb[r] = y[src];\n"
    "}\n"
    "/* z = z + b, then ReLU when relu. */\n"
    "__kernel void bias_act(__global float *z, __global const float *b, uint boff, uint cols,\n"
    "                       int relu) {\n"
    "    size_t j = get_global_id(0), i = get_global_id(1) * cols + j;\n"
    "    float v = z[i] + b[boff + j];\n"
    "    z[i] = relu ? fmax(v, 0.0f) : v;\n"
    "}\n"
    "/* Per row: loss = logsumexp(z) - z[label], correct = argmax == label; with grads,\n"
    " * g = (softmax(z) - onehot) * scale and gb = column sums of g.\n"
    " * The sums go to metrics[moff..]. */\n"
    "__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))\n"
    "void softmax_xent(__global const float *z, uint zoff, __global const int *y, uint yoff,\n"
    "                  uint rows, uint ncls, float scale, int grads, __global float *g,\n"
    "                  __global float *gb, uint gboff, __global float *metrics, uint moff) {\n"
    "    __local float lsum[WG], lright[WG];\n"
    "    uint t = get_local_id(0);\n"
    "    float loss = 0.0f, right = 0.0f;\n"
    "    for (uint r = t; r < rows; r += WG) {\n"
    "        __global const float *zr = z + zoff + (size_t)r * ncls;\n"
    "        float m = zr[0];\n"
    "        uint best = 0;\n"
    "        for (uint k = 1; k < ncls; k++)\n"
    "            if (zr[k] > m) { m = zr[k]; best = k; }\n"
    "        float s = 0.0f;\n"
    "        for (uint k = 0; k < ncls; k++) s += exp(zr[k] - m);\n"
    "        int label = y[yoff + r];\n"
    "        loss += log(s) - (zr[label] - m);\n"
    "        right += best == (uint)label ? 1.0f : 0.0f;\n"
    "        if (grads)\n"
    "            for (uint k = 0; k < ncls; k++)\n"
    "                g[(size_t)r * ncls + k] =\n"
    "                    (exp(zr[k] - m) / s - (k == (uint)label ? 1.0f : 0.0f)) * scale;\n"
    "    }\n"
    "    lsum[t] = loss;\n"
    "    lright[t] = right;\n"
    "    barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);\n"
    "    if (grads)\n"
    "        for (uint k = t; k < ncls; k += WG) {\n"
    "            float acc = 0.0f;\n"
    "            for (uint r = 0; r < rows; r++) acc += g[(size_t)r * ncls + k];\n"
    "            gb[gboff + k] = acc;\n"
    "        }\n"
    "    if (t == 0) {\n"
    "        float a = 0.0f, c = 0.0f;\n"
    "        for (uint i = 0; i < WG; i++) { a += lsum[i]; c += lright[i]; }\n"
    "        metrics[moff] += a;\n"
    "        metrics[moff + 1] += c;\n"
    "        metrics[moff + 2] += (float)rows;\n"
    "    }\n"
    "}\n"
    "/* Backward through ReLU: g *= (a > 0); gb = column sums of the result. */\n"
    "__kernel void relu_back(__global float *g, __global const float *a, uint rows, uint cols,\n"
    "                        __global float *gb, uint gboff) {\n"
    "    size_t j = get_global_id(0);\n"
    "    float acc = 0.0f;\n"
    "    for (size_t r = 0; r < rows; r++) {\n"
    "        size_t i = r * cols + j;\n"
    "        float v = a[i] > 0.0f ? g[i] : 0.0f;\n"
    "        g[i] = v;\n"
    "        acc += v;\n"
    "    }\n"
    "    gb[gboff + j] = acc;\n"
    "}\n";

enum { XENT_WG = 64 };

/* One GEMM of a step, kept to time it alone (mlp_gemm_alone). */
struct mlp_gemm_call {
    int ta, tb;
    size_t mm, n, k, lda, ldb, ldc;
    mlp_mem a, b, c;
    double seconds; /* in profiled steps */
};

/* ---- helpers ---- */

static int cl_check(cl_int err, const char *call) {
    return err == CL_SUCCESS ? 0 : MLP_ERR("%s failed: OpenCL error %d", call, (int)err);
}

static int clopt_check(mlp *m, clopt_status st, const char *call) {
    if (st == CLOPT_OK) return 0;
    return MLP_ERR("%s: %s: %s", call, clopt_status_name(st), clopt_context_last_error(m->ctx));
}

static float *fptr(mlp_mem v) { return (float *)v.host + v.off; }
static int *iptr(mlp_mem v) { return (int *)v.host + v.off; }

/* A new buffer of n elements of `size` bytes, initialised from src (or, on the host path,
 * zeroed; device buffers are always written before they are read). */
static int mem_alloc(mlp *m, mlp_mem *v, size_t n, size_t size, const void *src) {
    if (n == 0) n = 1;
    if (!m->on_device) {
        v->host = calloc(n, size);
        if (!v->host) return MLP_ERR("out of host memory (%zu bytes)", n * size);
        if (src) memcpy(v->host, src, n * size);
        return 0;
    }
    cl_int err;
    v->mem = clCreateBuffer(m->clctx, CL_MEM_READ_WRITE | (src ? CL_MEM_COPY_HOST_PTR : 0),
                            n * size, (void *)src, &err);
    return cl_check(err, "clCreateBuffer");
}

static void mem_free(mlp_mem *v) {
    if (v->mem) clReleaseMemObject(v->mem);
    free(v->host);
    memset(v, 0, sizeof *v);
}

/* A variable as an mlp_mem: its buffer and offset on a device, a host mirror on the host. */
static int var_mem(mlp *m, clopt_variable *var, mlp_mem *v) {
    if (!m->on_device)
        return mem_alloc(m, v, (size_t)clopt_variable_size(var), sizeof(float), NULL);
    size_t off = 0;
    if (clopt_check(m, clopt_variable_cl_mem(var, &v->mem, &off), "clopt_variable_cl_mem"))
        return -1;
    v->off = off / sizeof(float);
    v->host = NULL;
    return 0;
}

/* Host path: a whole variable from (to_var) or into its host mirror. */
static int host_copy(mlp *m, clopt_variable *var, mlp_mem mirror, int to_var) {
    const size_t n = (size_t)clopt_variable_size(var) * sizeof(float);
    if (to_var)
        return clopt_check(m, clopt_variable_write(var, mirror.host, n), "clopt_variable_write");
    return clopt_check(m, clopt_variable_read(var, mirror.host, n), "clopt_variable_read");
}

/* splitmix64: the example's random numbers (weights, shuffles, synthetic data). */
uint64_t mlp_rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A float uniform in [lo, hi). */
float mlp_rng_uniform(uint64_t *state, float lo, float hi) {
    return lo + (hi - lo) * (float)((mlp_rng_next(state) >> 40) * (1.0 / 16777216.0));
}

/* ---- profiling ---- */

/* After an operation: on a profiling queue, a marker whose end time closes the operation. */
static int mark(mlp *m, int category, int call) {
    if (!m->profiling) return 0;
    cl_event ev;
    if (cl_check(clEnqueueMarkerWithWaitList(m->queue, 0, NULL, &ev), "clEnqueueMarker"))
        return -1;
    if (m->nmarks == m->cap_marks) {
        int cap = m->cap_marks ? 2 * m->cap_marks : 64;
        void *a = realloc(m->marks, (size_t)cap * sizeof *m->marks);
        if (!a) {
            clReleaseEvent(ev);
            return MLP_ERR("out of host memory");
        }
        m->marks = a;
        m->cap_marks = cap;
    }
    m->marks[m->nmarks++] = (mlp_mark){ev, category, call};
    return 0;
}

static int mark_end(cl_event ev, cl_ulong *t) {
    return cl_check(clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof *t, t, NULL),
                    "clGetEventProfilingInfo");
}

void mlp_profile_reset(mlp *m) {
    memset(m->seconds, 0, sizeof m->seconds);
    m->gemm_flops = 0;
    for (int i = 0; i < m->ncalls; i++) m->calls[i].seconds = 0;
}

int mlp_profile_collect(mlp *m) {
    if (!m->profiling) return 0;
    int rc = cl_check(clFinish(m->queue), "clFinish");
    cl_ulong prev = 0;
    for (int i = 0; i < m->nmarks && rc == 0; i++) {
        cl_ulong end = 0;
        rc = mark_end(m->marks[i].ev, &end);
        const mlp_mark *k = &m->marks[i];
        if (k->category >= 0 && prev && end > prev) {
            const double s = (double)(end - prev) * 1e-9;
            m->seconds[k->category] += s;
            if (k->call >= 0) m->calls[k->call].seconds += s;
        }
        prev = end;
    }
    for (int i = 0; i < m->nmarks; i++) clReleaseEvent(m->marks[i].ev);
    m->nmarks = 0;
    return rc;
}

/* ---- the operations: one OpenCL launch (or CLBlast call) each, or the same in C ---- */

/* C = op(A) x op(B), row-major, op transposing when ta / tb. */
static int gemm(mlp *m, int ta, int tb, size_t mm, size_t n, size_t k, mlp_mem a, size_t lda,
                mlp_mem b, size_t ldb, mlp_mem c, size_t ldc) {
    int call = -1;
    if (m->record_calls && m->ncalls < 4 * MLP_MAX_LAYERS) {
        call = m->ncalls++;
        m->calls[call] = (mlp_gemm_call){ta, tb, mm, n, k, lda, ldb, ldc, a, b, c, 0};
    } else if (m->profiling) {
        for (int i = 0; i < m->ncalls && call < 0; i++) {
            const mlp_gemm_call *g = &m->calls[i];
            if (g->ta == ta && g->tb == tb && g->mm == mm && g->n == n && g->k == k &&
                g->c.mem == c.mem && g->c.off == c.off)
                call = i;
        }
    }
    m->gemm_flops += 2.0 * (double)mm * (double)n * (double)k;
    if (m->on_device) {
        CLBlastStatusCode st = CLBlastSgemm(
            CLBlastLayoutRowMajor, ta ? CLBlastTransposeYes : CLBlastTransposeNo,
            tb ? CLBlastTransposeYes : CLBlastTransposeNo, mm, n, k, 1.0f, a.mem, a.off, lda, b.mem,
            b.off, ldb, 0.0f, c.mem, c.off, ldc, &m->queue, NULL);
        if (st != CLBlastSuccess)
            return MLP_ERR("CLBlastSgemm (%zu x %zu x %zu) failed: CLBlast status %d", mm, n, k,
                           (int)st);
        return mark(m, MLP_T_GEMM, call);
    }
    const float *pa = fptr(a), *pb = fptr(b);
    float *pc = fptr(c);
    for (size_t i = 0; i < mm; i++)
        for (size_t j = 0; j < n; j++) {
            float acc = 0.0f;
            for (size_t p = 0; p < k; p++)
                acc += (ta ? pa[p * lda + i] : pa[i * lda + p]) *
                       (tb ? pb[j * ldb + p] : pb[p * ldb + j]);
            pc[i * ldc + j] = acc;
        }
    return 0;
}

#define SET_ARG(k, i, v) err |= clSetKernelArg((k), (i), sizeof(v), &(v))

static int launch(mlp *m, cl_kernel k, cl_uint dims, const size_t *global, const size_t *local,
                  const char *name) {
    cl_int err = clEnqueueNDRangeKernel(m->queue, k, dims, NULL, global, local, 0, NULL, NULL);
    if (err != CL_SUCCESS) return MLP_ERR("launching %s: OpenCL error %d", name, (int)err);
    return mark(m, MLP_T_KERNEL, -1);
}

/* act[0] and ybatch := the data set's rows order[first .. first + rows). */
static int gather(mlp *m, int first, int rows) {
    const cl_uint cols = (cl_uint)m->dims[0];
    if (m->on_device) {
        cl_uint f = (cl_uint)first;
        cl_int err = 0;
        cl_kernel k = m->k_gather;
        SET_ARG(k, 0, m->x.mem);
        SET_ARG(k, 1, m->y.mem);
        SET_ARG(k, 2, m->perm.mem);
        SET_ARG(k, 3, f);
        SET_ARG(k, 4, cols);
        SET_ARG(k, 5, m->act[0].mem);
        SET_ARG(k, 6, m->ybatch.mem);
        if (cl_check(err, "clSetKernelArg(gather_rows)")) return -1;
        const size_t global[2] = {cols, (size_t)rows};
        return launch(m, k, 2, global, NULL, "gather_rows");
    }
    for (int r = 0; r < rows; r++) {
        const size_t src = (size_t)iptr(m->perm)[first + r];
        memcpy(fptr(m->act[0]) + (size_t)r * cols, fptr(m->x) + src * cols, cols * sizeof(float));
        iptr(m->ybatch)[r] = iptr(m->y)[src];
    }
    return 0;
}

/* z += b per row, then ReLU when relu. z is an activation buffer (offset 0). */
static int bias_act(mlp *m, mlp_mem z, mlp_mem b, int rows, int cols, int relu) {
    if (m->on_device) {
        cl_uint boff = (cl_uint)b.off, c = (cl_uint)cols;
        cl_int err = 0, r = relu;
        cl_kernel k = m->k_bias_act;
        SET_ARG(k, 0, z.mem);
        SET_ARG(k, 1, b.mem);
        SET_ARG(k, 2, boff);
        SET_ARG(k, 3, c);
        SET_ARG(k, 4, r);
        if (cl_check(err, "clSetKernelArg(bias_act)")) return -1;
        const size_t global[2] = {(size_t)cols, (size_t)rows};
        return launch(m, k, 2, global, NULL, "bias_act");
    }
    float *pz = fptr(z);
    const float *pb = fptr(b);
    for (size_t r = 0; r < (size_t)rows; r++)
        for (size_t j = 0; j < (size_t)cols; j++) {
            float v = pz[r * cols + j] + pb[j];
            pz[r * cols + j] = relu ? fmaxf(v, 0.0f) : v;
        }
    return 0;
}

/* Softmax cross-entropy of logits z against labels y (rows of them) into metrics[moff..]; with
 * grads, dloss/dz scaled by 1/global_rows (the mean over the global batch, of which these rows
 * are this replica's share) into delta[L] and its column sums into the last bias gradient. The
 * host loop sums in the kernel's order. */
static int softmax_xent(mlp *m, mlp_mem z, mlp_mem y, int rows, int global_rows, int grads,
                        int moff) {
    const int L = m->nlayers, ncls = m->dims[L];
    const float scale = 1.0f / (float)global_rows;
    if (m->on_device) {
        cl_uint zoff = (cl_uint)z.off, yoff = (cl_uint)y.off, r = (cl_uint)rows,
                nc = (cl_uint)ncls, gboff = (cl_uint)m->gb[L - 1].off, mo = (cl_uint)moff;
        cl_uint mbase = (cl_uint)m->metrics.off + mo;
        cl_int err = 0, gr = grads;
        cl_kernel k = m->k_xent;
        SET_ARG(k, 0, z.mem);
        SET_ARG(k, 1, zoff);
        SET_ARG(k, 2, y.mem);
        SET_ARG(k, 3, yoff);
        SET_ARG(k, 4, r);
        SET_ARG(k, 5, nc);
        SET_ARG(k, 6, scale);
        SET_ARG(k, 7, gr);
        SET_ARG(k, 8, m->delta[L].mem);
        SET_ARG(k, 9, m->gb[L - 1].mem);
        SET_ARG(k, 10, gboff);
        SET_ARG(k, 11, m->metrics.mem);
        SET_ARG(k, 12, mbase);
        if (cl_check(err, "clSetKernelArg(softmax_xent)")) return -1;
        const size_t global = XENT_WG, local = XENT_WG;
        return launch(m, k, 1, &global, &local, "softmax_xent");
    }
    float lsum[XENT_WG] = {0}, lright[XENT_WG] = {0};
    const float *pz = fptr(z);
    const int *py = iptr(y);
    float *g = fptr(m->delta[L]);
    for (int r = 0; r < rows; r++) {
        const float *zr = pz + (size_t)r * ncls;
        float mx = zr[0], s = 0.0f;
        int best = 0;
        for (int k = 1; k < ncls; k++)
            if (zr[k] > mx) mx = zr[best = k];
        for (int k = 0; k < ncls; k++) s += expf(zr[k] - mx);
        const int label = py[r];
        lsum[r % XENT_WG] += logf(s) - (zr[label] - mx);
        lright[r % XENT_WG] += best == label ? 1.0f : 0.0f;
        if (grads)
            for (int k = 0; k < ncls; k++)
                g[(size_t)r * ncls + k] =
                    (expf(zr[k] - mx) / s - (k == label ? 1.0f : 0.0f)) * scale;
    }
    if (grads)
        for (int k = 0; k < ncls; k++) {
            float acc = 0.0f;
            for (int r = 0; r < rows; r++) acc += g[(size_t)r * ncls + k];
            fptr(m->gb[L - 1])[k] = acc;
        }
    float a = 0.0f, c = 0.0f, *met = fptr(m->metrics) + moff;
    for (int i = 0; i < XENT_WG; i++) {
        a += lsum[i];
        c += lright[i];
    }
    met[0] += a;
    met[1] += c;
    met[2] += (float)rows;
    return 0;
}

/* delta[l] *= (act[l] > 0) and gb[l - 1] := its column sums. */
static int relu_back(mlp *m, int l, int rows) {
    const int cols = m->dims[l];
    if (m->on_device) {
        cl_uint r = (cl_uint)rows, c = (cl_uint)cols, gboff = (cl_uint)m->gb[l - 1].off;
        cl_int err = 0;
        cl_kernel k = m->k_relu_back;
        SET_ARG(k, 0, m->delta[l].mem);
        SET_ARG(k, 1, m->act[l].mem);
        SET_ARG(k, 2, r);
        SET_ARG(k, 3, c);
        SET_ARG(k, 4, m->gb[l - 1].mem);
        SET_ARG(k, 5, gboff);
        if (cl_check(err, "clSetKernelArg(relu_back)")) return -1;
        const size_t global = (size_t)cols;
        return launch(m, k, 1, &global, NULL, "relu_back");
    }
    float *g = fptr(m->delta[l]), *gb = fptr(m->gb[l - 1]);
    const float *a = fptr(m->act[l]);
    for (size_t j = 0; j < (size_t)cols; j++) {
        float acc = 0.0f;
        for (size_t r = 0; r < (size_t)rows; r++) {
            size_t i = r * cols + j;
            g[i] = a[i] > 0.0f ? g[i] : 0.0f;
            acc += g[i];
        }
        gb[j] = acc;
    }
    return 0;
}

/* ---- the model ---- */

static int forward(mlp *m, mlp_mem in, int rows) {
    for (int l = 1; l <= m->nlayers; l++) {
        const size_t din = (size_t)m->dims[l - 1], dout = (size_t)m->dims[l];
        if (gemm(m, 0, 0, (size_t)rows, dout, din, in, din, m->w[l - 1], dout, m->act[l], dout) ||
            bias_act(m, m->act[l], m->b[l - 1], rows, (int)dout, l < m->nlayers))
            return -1;
        in = m->act[l];
    }
    return 0;
}

/* A replica with no rows of the batch contributes zero gradients to the sum. */
static int zero_grads(mlp *m) {
    for (int i = 0; i < 2 * m->nlayers; i++) {
        mlp_mem g = i % 2 ? m->gb[i / 2] : m->gw[i / 2];
        const size_t n = (size_t)clopt_variable_size(m->grads[i]);
        if (!m->on_device) {
            memset(fptr(g), 0, n * sizeof(float));
            if (host_copy(m, m->grads[i], g, 1)) return -1;
            continue;
        }
        const float zero = 0.0f;
        if (cl_check(clEnqueueFillBuffer(m->queue, g.mem, &zero, sizeof zero,
                                         g.off * sizeof(float), n * sizeof(float), 0, NULL, NULL),
                     "clEnqueueFillBuffer"))
            return -1;
    }
    return 0;
}

int mlp_forward_backward(mlp *m, int first, int rows, int global_rows) {
    const int L = m->nlayers;
    if (rows == 0) return zero_grads(m);
    if (mark(m, -1, -1) || gather(m, first, rows) || forward(m, m->act[0], rows) ||
        softmax_xent(m, m->act[L], m->ybatch, rows, global_rows, 1, MLP_TRAIN))
        return -1;
    for (int l = L; l >= 1; l--) {
        const size_t din = (size_t)m->dims[l - 1], dout = (size_t)m->dims[l];
        /* dW = act[l-1]^T delta[l]; delta[l-1] = delta[l] W^T, masked by ReLU. */
        if (gemm(m, 1, 0, din, dout, (size_t)rows, m->act[l - 1], din, m->delta[l], dout,
                 m->gw[l - 1], dout))
            return -1;
        if (l > 1 && (gemm(m, 0, 1, (size_t)rows, din, dout, m->delta[l], dout, m->w[l - 1], dout,
                           m->delta[l - 1], din) ||
                      relu_back(m, l - 1, rows)))
            return -1;
    }
    m->record_calls = 0;
    if (m->on_device) return 0;
    for (int l = 0; l < L; l++)
        if (host_copy(m, m->grads[2 * l], m->gw[l], 1) ||
            host_copy(m, m->grads[2 * l + 1], m->gb[l], 1))
            return -1;
    return 0;
}

/* Host path: the host mirrors := the variables (weights, or also the metric sums). */
static int read_vars(mlp *m, int with_metrics) {
    if (m->on_device) return 0;
    for (int l = 0; l < m->nlayers; l++)
        if (host_copy(m, m->vars[2 * l], m->w[l], 0) ||
            host_copy(m, m->vars[2 * l + 1], m->b[l], 0))
            return -1;
    return with_metrics ? host_copy(m, m->metrics_var, m->metrics, 0) : 0;
}

int mlp_after_step(mlp *m) { return read_vars(m, 0); }
int mlp_sync_from_vars(mlp *m) { return read_vars(m, 1); }

int mlp_sync_to_vars(mlp *m) {
    return m->on_device ? 0 : host_copy(m, m->metrics_var, m->metrics, 1);
}

int mlp_evaluate(mlp *m) {
    const int d0 = m->dims[0], L = m->nlayers;
    if (mark(m, -1, -1)) return -1;
    for (int first = m->ntrain; first < m->nrows; first += m->rows_cap) {
        const int rows = m->nrows - first < m->rows_cap ? m->nrows - first : m->rows_cap;
        mlp_mem in = m->x, labels = m->y;
        in.off += (size_t)first * (size_t)d0;
        labels.off += (size_t)first;
        if (forward(m, in, rows) || softmax_xent(m, m->act[L], labels, rows, rows, 0, MLP_EVAL))
            return -1;
    }
    return 0;
}

int mlp_read_metrics(mlp *m, float out[MLP_NMETRICS]) {
    if (!m->on_device) {
        memcpy(out, m->metrics.host, MLP_NMETRICS * sizeof(float));
        return 0;
    }
    return clopt_check(m, clopt_variable_read(m->metrics_var, out, MLP_NMETRICS * sizeof(float)),
                       "clopt_variable_read");
}

int mlp_zero_metrics(mlp *m) {
    static const float zeros[MLP_NMETRICS];
    if (!m->on_device) {
        memset(m->metrics.host, 0, sizeof zeros);
        return 0;
    }
    return clopt_check(m, clopt_variable_write(m->metrics_var, zeros, sizeof zeros),
                       "clopt_variable_write");
}

int mlp_set_order(mlp *m, const int *perm) {
    const size_t n = (size_t)m->ntrain * sizeof(int);
    if (!m->on_device) {
        memcpy(m->perm.host, perm, n);
        return 0;
    }
    return cl_check(clEnqueueWriteBuffer(m->queue, m->perm.mem, CL_TRUE, 0, n, perm, 0, NULL, NULL),
                    "clEnqueueWriteBuffer");
}

int mlp_finish(mlp *m) {
    return m->on_device ? cl_check(clFinish(m->queue), "clFinish") : 0;
}

int64_t mlp_param_count(const mlp *m) {
    int64_t n = 0;
    for (int l = 0; l < m->nlayers; l++) n += (int64_t)(m->dims[l] + 1) * m->dims[l + 1];
    return n;
}

int mlp_weights_hash(mlp *m, uint64_t *out) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < 2 * m->nlayers; i++) {
        const size_t n = (size_t)clopt_variable_size(m->vars[i]) * sizeof(float);
        unsigned char *buf = malloc(n);
        if (!buf) return MLP_ERR("out of host memory");
        if (clopt_check(m, clopt_variable_read(m->vars[i], buf, n), "clopt_variable_read")) {
            free(buf);
            return -1;
        }
        for (size_t j = 0; j < n; j++) h = (h ^ buf[j]) * 0x100000001b3ull;
        free(buf);
    }
    *out = h;
    return 0;
}

int mlp_gemm_alone(mlp *m, int steps, int reps, double *flops, double *seconds) {
    *flops = *seconds = 0;
    if (!m->profiling) return 0;
    if (mlp_profile_collect(m)) return -1;
    printf("GEMMs of one step (CLBlastSgemm, row-major; m x n x k):\n");
    for (int i = 0; i < m->ncalls; i++) {
        const mlp_gemm_call g = m->calls[i];
        const double f = 2.0 * (double)g.mm * (double)g.n * (double)g.k;
        const double in_step = g.seconds;
        const double before = m->seconds[MLP_T_GEMM];
        if (mark(m, -1, -1)) return -1;
        for (int r = 0; r < reps; r++)
            if (gemm(m, g.ta, g.tb, g.mm, g.n, g.k, g.a, g.lda, g.b, g.ldb, g.c, g.ldc))
                return -1;
        if (mlp_profile_collect(m)) return -1;
        const double alone = m->seconds[MLP_T_GEMM] - before;
        *flops += f * reps;
        *seconds += alone;
        printf("  %s %5zu x %5zu x %5zu: in the steps %8.2f GFLOP/s, alone %8.2f GFLOP/s\n",
               g.ta ? "A^T B" : g.tb ? "A B^T" : "A B  ", g.mm, g.n, g.k,
               in_step > 0 ? f * steps / in_step * 1e-9 : 0.0,
               alone > 0 ? f * reps / alone * 1e-9 : 0.0);
    }
    return 0;
}

/* ---- creation ---- */

static int build_kernels(mlp *m) {
    cl_int err;
    const char *src = mlp_kernels;
    m->program = clCreateProgramWithSource(m->clctx, 1, &src, NULL, &err);
    if (cl_check(err, "clCreateProgramWithSource")) return -1;
    char opts[64];
    snprintf(opts, sizeof opts, "-DXENT_WG=%d", XENT_WG);
    err = clBuildProgram(m->program, 1, &m->device, opts, NULL, NULL);
    if (err != CL_SUCCESS) {
        char log[4096] = "";
        clGetProgramBuildInfo(m->program, m->device, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log,
                              NULL);
        return MLP_ERR("building the example's kernels: OpenCL error %d\n%s", (int)err, log);
    }
    static const char *names[] = {"gather_rows", "bias_act", "softmax_xent", "relu_back"};
    cl_kernel *ks[] = {&m->k_gather, &m->k_bias_act, &m->k_xent, &m->k_relu_back};
    for (int i = 0; i < 4; i++) {
        *ks[i] = clCreateKernel(m->program, names[i], &err);
        if (err != CL_SUCCESS)
            return MLP_ERR("clCreateKernel(%s): OpenCL error %d", names[i], (int)err);
    }
    return 0;
}

static int open_device(mlp *m, int profile) {
    cl_command_queue q;
    if (clopt_check(m, clopt_context_cl_context(m->ctx, &m->clctx), "clopt_context_cl_context") ||
        clopt_check(m, clopt_context_cl_queue(m->ctx, &q), "clopt_context_cl_queue") ||
        cl_check(clGetCommandQueueInfo(q, CL_QUEUE_DEVICE, sizeof m->device, &m->device, NULL),
                 "clGetCommandQueueInfo"))
        return -1;
    m->queue = q;
    if (profile) {
        /* clopt's queue has no profiling: the example's work goes to a queue of its own. */
        cl_int err;
        m->queue = clCreateCommandQueue(m->clctx, m->device, CL_QUEUE_PROFILING_ENABLE, &err);
        if (cl_check(err, "clCreateCommandQueue(profiling)")) return -1;
        m->own_queue = 1;
        m->profiling = 1;
        m->calls = calloc(4 * MLP_MAX_LAYERS, sizeof *m->calls);
        if (!m->calls) return MLP_ERR("out of host memory");
        m->record_calls = 1;
    }
    return build_kernels(m);
}

/* The model variables (Glorot uniform kernels, zero biases), then their gradients, each group
 * contiguous so that the optimizer updates them in few launches. */
static int create_vars(mlp *m, uint64_t seed) {
    uint64_t rng = seed ^ 0x5EED0F1A17ull;
    for (int l = 0; l < m->nlayers; l++) {
        const int64_t wshape[2] = {m->dims[l], m->dims[l + 1]}, bshape[1] = {m->dims[l + 1]};
        const size_t nw = (size_t)wshape[0] * (size_t)wshape[1];
        float *w = malloc(nw * sizeof *w);
        if (!w) return MLP_ERR("out of host memory");
        const float limit = sqrtf(6.0f / (float)(wshape[0] + wshape[1]));
        for (size_t i = 0; i < nw; i++) w[i] = mlp_rng_uniform(&rng, -limit, limit);
        char name[2][32];
        snprintf(name[0], sizeof name[0], l ? "dense_%d/kernel" : "dense/kernel", l);
        snprintf(name[1], sizeof name[1], l ? "dense_%d/bias" : "dense/bias", l);
        clopt_status st = clopt_variable_create(m->ctx, name[0], CLOPT_FLOAT32, 2, wshape, w,
                                                &m->vars[2 * l]);
        free(w);
        if (clopt_check(m, st, "clopt_variable_create") ||
            clopt_check(m, clopt_variable_create(m->ctx, name[1], CLOPT_FLOAT32, 1, bshape, NULL,
                                                 &m->vars[2 * l + 1]),
                        "clopt_variable_create"))
            return -1;
    }
    for (int i = 0; i < 2 * m->nlayers; i++) {
        char name[48];
        snprintf(name, sizeof name, "%s_grad", clopt_variable_name(m->vars[i]));
        if (clopt_check(m, clopt_variable_create(m->ctx, name, CLOPT_FLOAT32,
                                                 clopt_variable_ndim(m->vars[i]),
                                                 clopt_variable_shape(m->vars[i]), NULL,
                                                 &m->grads[i]),
                        "clopt_variable_create"))
            return -1;
    }
    const int64_t mshape[1] = {MLP_NMETRICS};
    return clopt_check(m, clopt_variable_create(m->ctx, "train/metrics", CLOPT_FLOAT32, 1, mshape,
                                                NULL, &m->metrics_var),
                       "clopt_variable_create");
}

int mlp_create(mlp *m, clopt_context *ctx, int nlayers, const int *dims, int rows_cap,
               const float *x, const int *y, int nrows, int ntrain, uint64_t seed, int profile) {
    memset(m, 0, sizeof *m);
    m->ctx = ctx;
    m->on_device = strcmp(clopt_context_backend_name(ctx), "host") != 0;
    m->nlayers = nlayers;
    memcpy(m->dims, dims, (size_t)(nlayers + 1) * sizeof *dims);
    m->rows_cap = rows_cap;
    m->nrows = nrows;
    m->ntrain = ntrain;
    if (m->on_device && open_device(m, profile)) return -1;
    if (create_vars(m, seed)) return -1;
    for (int l = 0; l < nlayers; l++)
        if (var_mem(m, m->vars[2 * l], &m->w[l]) || var_mem(m, m->vars[2 * l + 1], &m->b[l]) ||
            var_mem(m, m->grads[2 * l], &m->gw[l]) || var_mem(m, m->grads[2 * l + 1], &m->gb[l]))
            return -1;
    if (var_mem(m, m->metrics_var, &m->metrics) || read_vars(m, 1)) return -1;
    for (int l = 0; l <= nlayers; l++) {
        const size_t n = (size_t)rows_cap * (size_t)dims[l];
        if (mem_alloc(m, &m->act[l], n, sizeof(float), NULL) ||
            (l > 0 && mem_alloc(m, &m->delta[l], n, sizeof(float), NULL)))
            return -1;
    }
    return mem_alloc(m, &m->x, (size_t)nrows * (size_t)dims[0], sizeof(float), x) ||
                   mem_alloc(m, &m->y, (size_t)nrows, sizeof(int), y) ||
                   mem_alloc(m, &m->ybatch, (size_t)rows_cap, sizeof(int), NULL) ||
                   mem_alloc(m, &m->perm, (size_t)ntrain, sizeof(int), NULL)
               ? -1
               : 0;
}

void mlp_destroy(mlp *m) {
    for (int i = 0; i < m->nmarks; i++) clReleaseEvent(m->marks[i].ev);
    free(m->marks);
    free(m->calls);
    for (int l = 0; l < m->nlayers; l++) {
        if (!m->on_device) {
            free(m->w[l].host);
            free(m->b[l].host);
            free(m->gw[l].host);
            free(m->gb[l].host);
        }
    }
    if (!m->on_device) free(m->metrics.host);
    for (int l = 0; l <= m->nlayers; l++) {
        mem_free(&m->act[l]);
        mem_free(&m->delta[l]);
    }
    mem_free(&m->x);
    mem_free(&m->y);
    mem_free(&m->ybatch);
    mem_free(&m->perm);
    cl_kernel ks[] = {m->k_gather, m->k_bias_act, m->k_xent, m->k_relu_back};
    for (int i = 0; i < 4; i++)
        if (ks[i]) clReleaseKernel(ks[i]);
    if (m->program) clReleaseProgram(m->program);
    if (m->own_queue) clReleaseCommandQueue(m->queue);
    /* The variables belong to the context: clopt_context_destroy frees them. */
}
