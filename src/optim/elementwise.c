/* Element-wise update rules (clopt__elementwise, optim_internal.h): the one way a class gives
 * its per-element update, for the built-in classes and a program's alike. This file writes the
 * OpenCL kernel around a rule's statements; the host backend runs the rule's C function between
 * the same loads and stores (host_backend.c, user_kernel). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "optim_internal.h"

/* s followed by the formatted text (s freed); NULL when out of memory (s NULL stays NULL). */
static char *append(char *s, const char *fmt, ...) CLOPT__PRINTF(2, 3);
static char *append(char *s, const char *fmt, ...) {
    if (!s) return NULL;
    va_list ap;
    va_start(ap, fmt);
    const int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    const size_t len = strlen(s);
    char *t = n < 0 ? NULL : realloc(s, len + (size_t)n + 1);
    if (!t) {
        free(s);
        return NULL;
    }
    va_start(ap, fmt);
    vsnprintf(t + len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return t;
}

/* UPDATE_BEGIN's element, loaded into the names the rule's statements use (shadowing the
 * kernel's own w and g in an inner block), and stored back after them. */
char *clopt__elementwise_source(const clopt__elementwise *e, const char *what,
                                const char *label, const char *kname) {
    char *s = clopt__format("/* %s: %s. */\n%s", label, what, e->prelude ? e->prelude : "");
    s = append(s,
               "UPDATE_KERNEL void %s(UPDATE_ARGS) {\n"
               "    UPDATE_BEGIN;\n"
               "    const real g_in_ = GRAD();\n"
               "    real w_io_ = WEIGHT();\n",
               kname);
    for (int k = 0; k < e->nslots; k++)
        s = append(s, "    real s%d_io_ = LOAD(s, SLOT(%d));\n", k, k);
    s = append(s, "    {\n        const real g = g_in_;\n        real w = w_io_;\n");
    for (int k = 0; k < e->nslots; k++)
        s = append(s, "        real %s = s%d_io_;\n", e->slot_names[k], k);
    for (int k = 0; e->scalar_names && k < e->nscalars; k++)
        s = append(s, "        const real %s = c%d; (void)%s;\n", e->scalar_names[k], k,
                   e->scalar_names[k]);
    s = append(s, "        (void)g;\n        {\n#line 1 \"%s.opencl_update\"\n%s\n        }\n",
               label, e->opencl);
    s = append(s, "        w_io_ = w;\n");
    for (int k = 0; k < e->nslots; k++)
        s = append(s, "        s%d_io_ = %s;\n", k, e->slot_names[k]);
    s = append(s, "    }\n    STORE(w, wi, w_io_);\n");
    for (int k = 0; k < e->nslots; k++) s = append(s, "    STORE(s, SLOT(%d), s%d_io_);\n", k, k);
    return append(s, "    UPDATE_END;\n}\n");
}

clopt_status clopt__builtin_updates_make(clopt__builtin_update *u, int n, const char *label) {
    for (int i = 0; i < n; i++) {
        if (u[i].kernel.source) continue;
        char *src = clopt__elementwise_source(&u[i].rule, "a built-in class's update", label,
                                              u[i].rule.name);
        if (!src) return CLOPT_ERR_OUT_OF_MEMORY;
        u[i].kernel = (clopt__user_kernel){u[i].rule.name, src, u[i].rule.host,
                                           u[i].rule.user_data, u[i].rule.nslots};
    }
    return CLOPT_OK;
}
