/* Element conversions between JSON doubles and the four dtypes. float16 and bfloat16 are kept
 * as raw 16-bit patterns by the library, so the tool converts them here. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli_internal.h"

/* float32 -> float16 bits for a value exactly representable in float16 (or inf/NaN). */
static uint16_t f16_exact_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t e = (x >> 23) & 0xffu, m = x & 0x7fffffu;
    if (e == 0xff) return (uint16_t)(sign | 0x7c00u | (m ? 0x200u | (m >> 13) : 0));
    if (e == 0 && m == 0) return sign;
    int exp = (int)e - 127;
    if (exp >= -14) return (uint16_t)(sign | (uint32_t)(exp + 15) << 10 | (m >> 13));
    /* subnormal: value = m16 * 2^-24 */
    uint32_t full = m | 0x800000u;
    return (uint16_t)(sign | (full >> (uint32_t)(-exp - 14 + 13)));
}

/* double -> float16, round to nearest even, directly from the double (NumPy's rule). */
static uint16_t f16_from_double(double x) {
    if (isnan(x)) return f16_exact_bits(NAN);
    double a = fabs(x);
    if (a != 0 && !isinf(a)) {
        int k;
        frexp(a, &k);                  /* a = f * 2^k, f in [0.5, 1) */
        int e = k - 1 < -14 ? -14 : k - 1; /* float16 exponent (subnormals share -14) */
        double q = ldexp(1.0, e - 10); /* spacing of float16 values near a */
        a = nearbyint(a / q) * q;      /* exact: scaling by powers of two */
        if (a >= 65520.0) a = INFINITY;
    }
    return f16_exact_bits((float)copysign(a, x));
}

static float f16_to_float(uint16_t h) {
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    double v;
    if (e == 0x1f) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp((double)m, -24);
    else v = ldexp((double)(m | 0x400u), (int)e - 25);
    return (float)((h & 0x8000u) ? -v : v);
}

/* float -> bfloat16, round to nearest even; NaN stays a quiet NaN (the kernels' rule). */
static uint16_t bf16_from_float(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

static float bf16_to_float(uint16_t h) {
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static uint16_t to16(double x, clopt_dtype d) {
    return d == CLOPT_FLOAT16 ? f16_from_double(x) : bf16_from_float((float)x);
}

void cli_store(void *buf, clopt_dtype dtype, size_t i, double x) {
    switch (dtype) {
    case CLOPT_FLOAT32: ((float *)buf)[i] = (float)x; break;
    case CLOPT_FLOAT64: ((double *)buf)[i] = x; break;
    case CLOPT_FLOAT16:
    case CLOPT_BFLOAT16: ((uint16_t *)buf)[i] = to16(x, dtype); break;
    }
}

double cli_load(const void *buf, clopt_dtype dtype, size_t i) {
    switch (dtype) {
    case CLOPT_FLOAT32: return ((const float *)buf)[i];
    case CLOPT_FLOAT64: return ((const double *)buf)[i];
    case CLOPT_FLOAT16: return f16_to_float(((const uint16_t *)buf)[i]);
    case CLOPT_BFLOAT16: return bf16_to_float(((const uint16_t *)buf)[i]);
    }
    return 0;
}

void cli_format_16(uint16_t bits, clopt_dtype dtype, char *out) {
    /* Every float16 and bfloat16 value is a float32: write the shortest text that reads back
     * to that float32, so a reader in float32 or float64 gets the stored value, not merely a
     * decimal that rounds to it in 16 bits ("0.8984375", not "0.9", for bfloat16 0.8984375). */
    cli_format_f32_short(dtype == CLOPT_FLOAT16 ? f16_to_float(bits) : bf16_to_float(bits), out);
}

void cli_put_element(cli_buf *b, const void *buf, clopt_dtype dtype, size_t i) {
    char num[32];
    switch (dtype) {
    case CLOPT_FLOAT32: cli_format_f32(((const float *)buf)[i], num); break;
    case CLOPT_FLOAT64: cli_format_f64(((const double *)buf)[i], num); break;
    case CLOPT_FLOAT16:
    case CLOPT_BFLOAT16: cli_format_16(((const uint16_t *)buf)[i], dtype, num); break;
    default: strcpy(num, "null"); break;
    }
    cli_buf_puts(b, num);
}
