/* JSON helpers shared by configs, schedules and the command-line tool. */
#ifndef CLOPT_JSON_INTERNAL_H
#define CLOPT_JSON_INTERNAL_H

#include <jansson.h>
#include <stddef.h>

/* Writes `v` compactly with Python-style reals; caller frees. NULL when out of memory. */
char *clopt__json_dump(const json_t *v);

/* Shortest decimal form of x that reads back exactly, Python style ("0.9", "1.0", "1e-07"). */
void clopt__format_real(double x, char *out, size_t n);

/* "an object", "a number", "null", ...: for messages naming what a config value was. */
const char *clopt__json_type_name(const json_t *v);

#endif
