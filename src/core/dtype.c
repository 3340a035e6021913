/* Element conversions between the storage dtypes and double (float16 and bfloat16 round the
 * double to nearest even, as vstore_half_rte and the kernels' bfloat16 store do with a float). */
#include <math.h>
#include <string.h>
#include "core_internal.h"

static uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    uint32_t mant = x & 0x7fffffu;
    if (((x >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00u);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        mant |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)exp << 10) | (mant >> 13), rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ffu, x;
    if (exp == 0x1f) x = sign | 0x7f800000u | (mant << 13);
    else if (exp) x = sign | ((exp + 112) << 23) | (mant << 13);
    else if (!mant) x = sign;
    else {
        int e = -1;
        do { mant <<= 1; e++; } while (!(mant & 0x400u));
        x = sign | ((uint32_t)(112 - e) << 23) | ((mant & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static uint16_t f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

static float bf16_to_f32(uint16_t h) {
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* x rounded to float32 toward zero, with the lowest bit set when that was inexact ("round to
 * odd"). Rounding this to float16 or bfloat16 (11 and 8 significant bits, against float32's 24)
 * gives x correctly rounded: rounding x to float32 to nearest first could land exactly on a
 * 16-bit tie and round a second time the wrong way (1 + 2^-11 + 2^-40 would become float16 1.0
 * instead of 1 + 2^-10). */
static float f64_to_f32_odd(double x) {
    float f = (float)x;
    if (isnan(x) || (double)f == x) return f;
    if (fabs((double)f) > fabs(x)) f = nextafterf(f, 0.0f); /* toward zero (also from inf) */
    uint32_t u;
    memcpy(&u, &f, 4);
    u |= 1u;
    memcpy(&f, &u, 4);
    return f;
}

double clopt__elem_load(const void *base, clopt_dtype dtype, size_t i) {
    switch (dtype) {
    case CLOPT_FLOAT32: return ((const float *)base)[i];
    case CLOPT_FLOAT64: return ((const double *)base)[i];
    case CLOPT_FLOAT16: return f16_to_f32(((const uint16_t *)base)[i]);
    case CLOPT_BFLOAT16: return bf16_to_f32(((const uint16_t *)base)[i]);
    }
    return 0;
}

void clopt__elem_store(void *base, clopt_dtype dtype, size_t i, double x) {
    switch (dtype) {
    case CLOPT_FLOAT32: ((float *)base)[i] = (float)x; break;
    case CLOPT_FLOAT64: ((double *)base)[i] = x; break;
    case CLOPT_FLOAT16: ((uint16_t *)base)[i] = f32_to_f16(f64_to_f32_odd(x)); break;
    case CLOPT_BFLOAT16: ((uint16_t *)base)[i] = f32_to_bf16(f64_to_f32_odd(x)); break;
    }
}

