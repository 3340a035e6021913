/* JSON text in and out for the tool. jansson parses standard JSON; Python's json module also
 * writes NaN, Infinity and -Infinity, which a recorded gradient may well contain, so those
 * tokens are turned into marker strings before parsing. Numbers are written here, not by
 * jansson, so that every value reads back to the same bits; non-finite ones as the strings
 * "NaN", "Infinity" and "-Infinity" (strict JSON), which are read back as numbers too. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli_internal.h"

/* The non-JSON tokens; parsing turns each into a marker string, the token after a \001 (a
 * control character no real key or name has). */
static const char *const tokens[3] = {"NaN", "Infinity", "-Infinity"};

typedef struct repl {
    size_t orig_off, orig_len, new_len;
} repl;

static int word_char(char c) { return isalnum((unsigned char)c) || c == '_' || c == '.'; }

/* Which token (0..2) starts at text[i] as a whole word, or -1. */
static int token_at(const char *text, size_t len, size_t i) {
    if (i > 0 && word_char(text[i - 1])) return -1;
    for (int t = 2; t >= 0; t--) {
        size_t n = strlen(tokens[t]);
        if (i + n <= len && memcmp(text + i, tokens[t], n) == 0 &&
            (i + n == len || !word_char(text[i + n])))
            return t;
    }
    return -1;
}

/* Rewrites the tokens outside strings. Returns the new text (or NULL when there is none to
 * rewrite, or on OOM with *oom set) and the list of replacements. */
static char *rewrite(const char *text, size_t len, repl **reps, size_t *nreps, int *oom) {
    cli_buf b = {0};
    size_t n = 0, cap = 0, last = 0;
    repl *r = NULL;
    int in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
            continue;
        }
        if (c == '"') {
            in_str = 1;
            continue;
        }
        if (c != 'N' && c != 'I' && c != '-') continue;
        int t = token_at(text, len, i);
        if (t < 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            repl *p = realloc(r, cap * sizeof *r);
            if (!p) {
                *oom = 1;
                break;
            }
            r = p;
        }
        cli_buf_put(&b, text + last, i - last);
        size_t before = b.n;
        cli_buf_printf(&b, "\"\\u0001%s\"", tokens[t]);
        r[n++] = (repl){i, strlen(tokens[t]), b.n - before};
        i += strlen(tokens[t]) - 1;
        last = i + 1;
    }
    if (*oom || b.oom || n == 0) {
        if (b.oom) *oom = 1;
        cli_buf_free(&b);
        free(r);
        return NULL;
    }
    cli_buf_put(&b, text + last, len - last);
    if (b.oom) {
        *oom = 1;
        cli_buf_free(&b);
        free(r);
        return NULL;
    }
    *reps = r;
    *nreps = n;
    return b.s;
}

json_t *cli_json_parse(const char *text, size_t len, char *err, size_t errn) {
    repl *reps = NULL;
    size_t nreps = 0;
    int oom = 0;
    char *alt = rewrite(text, len, &reps, &nreps, &oom);
    if (oom) {
        snprintf(err, errn, "out of memory");
        return NULL;
    }
    json_error_t e;
    json_t *root = alt ? json_loadb(alt, strlen(alt), JSON_REJECT_DUPLICATES, &e)
                       : json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
    if (!root) {
        int line = e.line, col = e.column;
        if (alt && e.position >= 0) {
            /* Map the position in the rewritten text back to the original. */
            size_t p = (size_t)e.position, shift = 0, orig = 0;
            int mapped = 0;
            for (size_t k = 0; k < nreps; k++) {
                size_t new_off = reps[k].orig_off + shift;
                if (p >= new_off + reps[k].new_len) {
                    shift += reps[k].new_len - reps[k].orig_len;
                } else {
                    if (p > new_off) orig = reps[k].orig_off, mapped = 1;
                    break;
                }
            }
            if (!mapped) orig = p - shift;
            if (orig > len) orig = len;
            line = 1;
            size_t bol = 0;
            for (size_t k = 0; k < orig; k++)
                if (text[k] == '\n') line++, bol = k + 1;
            col = (int)(orig - bol);
        }
        snprintf(err, errn, "malformed JSON at line %d, column %d: %s", line, col, e.text);
    }
    free(alt);
    free(reps);
    return root;
}

int cli_json_number(const json_t *v, double *out) {
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return 1;
    }
    if (json_is_string(v)) {
        /* The bare tokens (as markers), or the strings clopt replay writes for them. */
        const char *s = json_string_value(v);
        if (s[0] == '\001') s++;
        if (strcmp(s, tokens[0]) == 0) *out = NAN;
        else if (strcmp(s, tokens[1]) == 0) *out = INFINITY;
        else if (strcmp(s, tokens[2]) == 0) *out = -INFINITY;
        else return 0;
        return 1;
    }
    return 0;
}

const char *cli_json_type_name(const json_t *v) {
    double d;
    if (!v) return "nothing";
    if (cli_json_number(v, &d)) return "a number";
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* Strings, not Python's bare tokens, so that strict JSON parsers accept the output. */
static int special(double x, char *out) {
    if (isnan(x)) strcpy(out, "\"NaN\"");
    else if (isinf(x)) strcpy(out, x > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    else return 0;
    return 1;
}

void cli_format_f64(double x, char *out) {
    if (!special(x, out)) snprintf(out, 32, "%.17g", x);
}

void cli_format_f32(float x, char *out) {
    if (!special(x, out)) snprintf(out, 32, "%.9g", (double)x);
}

void cli_format_f32_short(float x, char *out) {
    if (special(x, out)) return;
    for (int p = 1; p <= 9; p++) {
        snprintf(out, 32, "%.*g", p, (double)x);
        if (strtof(out, NULL) == x) return;
    }
}
