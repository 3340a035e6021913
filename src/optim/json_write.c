/* JSON output with Python's number style: reals in the shortest form that reads back to the same
 * double (as Python's repr, so 0.9 stays 0.9), keys in insertion order. jansson parses; this
 * writes, because jansson's writer prints reals with a fixed precision (0.90000000000000002). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "json_internal.h"

typedef struct sbuf {
    char *s;
    size_t n, cap;
    int oom;
} sbuf;

static void put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

void clopt__format_real(double x, char *out, size_t n) {
    if (!isfinite(x)) {
        snprintf(out, n, "%s", isnan(x) ? "NaN" : (x > 0 ? "Infinity" : "-Infinity"));
        return;
    }
    /* The fewest significant digits that read back exactly, as Python's repr. */
    char e[40];
    for (int p = 0; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p, x);
        if (strtod(e, NULL) == x) break;
    }
    const char *q = e;
    int neg = *q == '-';
    if (neg) q++;
    char digits[24];
    size_t nd = 0;
    for (; *q && *q != 'e'; q++)
        if (*q != '.' && nd + 1 < sizeof digits) digits[nd++] = *q;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = '\0';
    int exp = atoi(q + 1);
    char body[64];
    size_t b = 0;
    if (exp >= -4 && exp < 16) { /* positional, as repr: 0.0001, 1e-05 */
        if (exp < 0) {
            b += (size_t)snprintf(body, sizeof body, "0.");
            for (int k = 0; k < -exp - 1; k++) body[b++] = '0';
            b += (size_t)snprintf(body + b, sizeof body - b, "%s", digits);
        } else {
            for (int k = 0; k <= exp; k++) body[b++] = (size_t)k < nd ? digits[k] : '0';
            body[b++] = '.';
            if ((size_t)exp + 1 < nd)
                b += (size_t)snprintf(body + b, sizeof body - b, "%s", digits + exp + 1);
            else
                body[b++] = '0';
            body[b] = '\0';
        }
    } else { /* scientific, as repr: 1e-07, 1.5e+20 */
        b += (size_t)snprintf(body, sizeof body, "%c%s%s", digits[0], nd > 1 ? "." : "",
                              digits + 1);
        snprintf(body + b, sizeof body - b, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
    snprintf(out, n, "%s%s", neg ? "-" : "", body);
}

static void put_string(sbuf *b, const char *s) {
    put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c;
            put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            puts_(b, esc);
        } else {
            put(b, (const char *)&c, 1);
        }
    }
    put(b, "\"", 1);
}

static void put_value(sbuf *b, const json_t *v) {
    char num[64];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *val;
        int first = 1;
        put(b, "{", 1);
        json_object_foreach((json_t *)v, key, val) {
            if (!first) put(b, ", ", 2);
            first = 0;
            put_string(b, key);
            put(b, ": ", 2);
            put_value(b, val);
        }
        put(b, "}", 1);
        break;
    }
    case JSON_ARRAY:
        put(b, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) put(b, ", ", 2);
            put_value(b, json_array_get(v, i));
        }
        put(b, "]", 1);
        break;
    case JSON_STRING: put_string(b, json_string_value(v)); break;
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
        puts_(b, num);
        break;
    case JSON_REAL:
        clopt__format_real(json_real_value(v), num, sizeof num);
        puts_(b, num);
        break;
    case JSON_TRUE: puts_(b, "true"); break;
    case JSON_FALSE: puts_(b, "false"); break;
    case JSON_NULL: puts_(b, "null"); break;
    }
}

const char *clopt__json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

char *clopt__json_dump(const json_t *v) {
    sbuf b = {0};
    put_value(&b, v);
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}
