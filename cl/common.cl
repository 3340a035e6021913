/* Prepended to every clopt kernel source. Build options set DTYPE (0 float32, 1 float64,
 * 2 float16, 3 bfloat16: the last two are storage formats with float arithmetic) and CHUNK (the
 * elements of one chunk of a fused launch; the host sets it from CLOPT__CHUNK). */
#ifndef DTYPE
#define DTYPE 0
#endif
#ifndef CHUNK
#define CHUNK 256
#endif

#if DTYPE == 1
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double real;
typedef double store_t;
#define LOAD(p, i) ((p)[i])
#define STORE(p, i, x) ((p)[i] = (x))
#elif DTYPE == 2
typedef float real;
typedef half store_t;
#define LOAD(p, i) vload_half((i), (p))
#define STORE(p, i, x) vstore_half_rte((x), (i), (p))
#elif DTYPE == 3
typedef float real;
typedef ushort store_t;
#define LOAD(p, i) as_float((uint)(p)[i] << 16)
/* Round to nearest even; NaN stays a quiet NaN. */
inline ushort clopt_bf16(float x) {
    uint u = as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (ushort)((u >> 16) | 0x40u);
    return (ushort)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
#define STORE(p, i, x) ((p)[i] = clopt_bf16(x))
#else
typedef float real;
typedef float store_t;
#define LOAD(p, i) ((p)[i])
#define STORE(p, i, x) ((p)[i] = (x))
#endif

/* The arguments every fused update kernel takes: variable, gradient and slot buffers, the slot
 * stride (slot kind k is at s + k*ss), the chunk table (uint4: variable, gradient and slot
 * chunk, segment) and its first entry, per-segment float scalars, and eight per-step scalars. */
#define UPDATE_ARGS                                                                           \
    global store_t *w, global const store_t *g, global store_t *s, ulong ss,                  \
        global const uint4 *table, uint tbase, global const float *seg, real c0, real c1,     \
        real c2, real c3, real c4, real c5, real c6, real c7

/* Work-item gid handles element gid % CHUNK of chunk table[tbase + gid / CHUNK]: wi, gi and si
 * index the variable, gradient and first slot; sg is the segment. Arena padding makes every
 * chunk whole, so there is no bounds check. */
#define UPDATE_INDEX                                                                 \
    const size_t gid_ = get_global_id(0);                                            \
    const uint4 ch_ = table[tbase + gid_ / CHUNK];                                   \
    const size_t lane_ = gid_ % CHUNK;                                               \
    const size_t wi = (size_t)ch_.x * CHUNK + lane_, gi = (size_t)ch_.y * CHUNK + lane_, \
                 si = (size_t)ch_.z * CHUNK + lane_;                                 \
    const uint sg = ch_.w;                                                           \
    (void)sg; (void)seg; (void)ss;                                                   \
    (void)c0; (void)c1; (void)c2; (void)c3; (void)c4; (void)c5; (void)c6; (void)c7

#define SLOT(k) (si + (size_t)(k) * ss)
