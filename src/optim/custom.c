/* Optimizer classes a program defines (include/clopt/optimizer_class.h): a description turned
 * into a class table entry whose update is the program's kernel (clopt__user_kernel), the
 * process-wide registry, and the classes of one from_config call (Keras's custom_objects). */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "clopt/optimizer_class.h"
#include "optim_internal.h"

_Static_assert(CLOPT_CLASS_MAX_HPARAMS <= CLOPT__MAX_PARAMS, "class hyperparameters");
_Static_assert(CLOPT_CLASS_MAX_SLOTS <= CLOPT__MAX_SLOTS, "class slots");
_Static_assert(CLOPT_CLASS_MAX_SLOTS <= CLOPT__USER_MAX_SLOTS, "host kernel slots");
_Static_assert(CLOPT_CLASS_MAX_SCALARS == CLOPT__MAX_SCALARS, "class scalars");

/* A program's class. `cls` comes first: an optimizer's cls points at it. */
typedef struct custom_class {
    clopt__optimizer_class cls;
    clopt__param params[CLOPT__MAX_PARAMS];
    char *keys[CLOPT__MAX_PARAMS];
    char *class_name, *registered_name, *module, *default_name;
    char *slot_names[CLOPT__MAX_SLOTS];
    double slot_inits[CLOPT__MAX_SLOTS];
    int nslots;
    clopt_class_scalars_fn scalars;
    void *user_data;
    clopt__user_kernel kernel;
    char kernel_name[40];
    char *source;
} custom_class;

/* ---- checking a description ---- */

static int is_identifier(const char *s) {
    if (!s || !(isalpha((unsigned char)*s) || *s == '_')) return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_') return 0;
    return 1;
}

/* A name a slot or scalar may not take: the other names of the block the program's statements
 * run in (kernel_source; the kernel's own arguments and locals are loaded and stored outside it,
 * so the block may shadow them), and clopt's. */
static int reserved(const char *s) {
    static const char *const names[] = {"w", "g", "real", "store_t", "c0", "c1", "c2", "c3",
                                        "c4", "c5", "c6", "c7", "q0", "q1", "q2", "q3", NULL};
    const size_t n = strlen(s);
    if (n && s[n - 1] == '_') return 1;
    if (strncmp(s, "clopt", 5) == 0) return 1;
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], s) == 0) return 1;
    return 0;
}

/* The message of a bad description; CLOPT_ERR_BAD_VALUE. */
#define BAD(...) (snprintf(msg, cap, __VA_ARGS__), CLOPT_ERR_BAD_VALUE)

static clopt_status check_hparam(const clopt_hparam *h, int i, const clopt_hparam *all,
                                 char *msg, size_t cap) {
    if (!h->key || !*h->key) return BAD("hparams[%d]: key is NULL or empty", i);
    if (!strcmp(h->key, "name") || !strcmp(h->key, "learning_rate"))
        return BAD("hparams[%d]: '%s' is a key of the base class", i, h->key);
    for (int b = 0; b < CLOPT__B_COUNT; b++)
        if (!strcmp(h->key, clopt__base_params[b].key))
            return BAD("hparams[%d]: '%s' is a key of the base class", i, h->key);
    for (int j = 0; j < i; j++)
        if (!strcmp(all[j].key, h->key)) return BAD("hparams[%d]: key '%s' repeats", i, h->key);
    if ((unsigned)h->type > CLOPT_HPARAM_BOOL)
        return BAD("hparams[%d] ('%s'): unknown type %d", i, h->key, (int)h->type);
    if (isnan(h->lo) || isnan(h->hi) || h->lo > h->hi)
        return BAD("hparams[%d] ('%s'): bounds [%g, %g] are not a range", i, h->key, h->lo,
                   h->hi);
    const int nullable = h->type == CLOPT_HPARAM_FLOAT_OR_NULL ||
                         h->type == CLOPT_HPARAM_INT_OR_NULL;
    if (h->def_null && !nullable)
        return BAD("hparams[%d] ('%s'): a null default needs a *_OR_NULL type", i, h->key);
    if (h->def_null) return CLOPT_OK;
    if (h->type == CLOPT_HPARAM_BOOL ? (h->def != 0 && h->def != 1)
                                     : (isnan(h->def) || h->def < h->lo || h->def > h->hi ||
                                        (h->lo_open && h->def == h->lo) ||
                                        (h->hi_open && h->def == h->hi)))
        return BAD("hparams[%d] ('%s'): default %g is out of its bounds", i, h->key, h->def);
    if (h->type == CLOPT_HPARAM_INT_OR_NULL && h->def != floor(h->def))
        return BAD("hparams[%d] ('%s'): default %g is not an integer", i, h->key, h->def);
    return CLOPT_OK;
}

/* Slot and scalar names: identifiers, not clopt's, each once across both lists. */
static clopt_status check_names(const clopt_optimizer_class_desc *d, char *msg, size_t cap) {
    const char *seen[CLOPT__MAX_SLOTS + CLOPT__MAX_SCALARS];
    int n = 0;
    for (int list = 0; list < 2; list++) {
        const char *const *names = list ? d->scalar_names : d->slot_names;
        const int count = list ? (d->scalar_names ? d->nscalars : 0) : d->nslots;
        const char *what = list ? "scalar_names" : "slot_names";
        for (int i = 0; i < count; i++) {
            const char *s = names[i];
            if (!is_identifier(s))
                return BAD("%s[%d]: '%s' is not a C identifier", what, i, s ? s : "(null)");
            if (reserved(s)) return BAD("%s[%d]: '%s' is a name clopt's kernel uses", what, i, s);
            for (int j = 0; j < n; j++)
                if (!strcmp(seen[j], s)) return BAD("%s[%d]: '%s' is named twice", what, i, s);
            seen[n++] = s;
        }
    }
    return CLOPT_OK;
}

static clopt_status check_desc(const clopt_optimizer_class_desc *d, char *msg, size_t cap) {
    if (!is_identifier(d->class_name))
        return BAD("class_name '%s' is not an identifier",
                   d->class_name ? d->class_name : "(null)");
    if (d->registered_name && (!*d->registered_name || strlen(d->registered_name) > 200))
        return BAD("%s: registered_name is empty or longer than 200", d->class_name);
    if (d->default_name && !*d->default_name)
        return BAD("%s: default_name is empty", d->class_name);
    if (!isfinite(d->default_learning_rate) || d->default_learning_rate < 0)
        return BAD("%s: default_learning_rate %g is not a finite number >= 0", d->class_name,
                   d->default_learning_rate);
    if (d->nhparams < 0 || d->nhparams > CLOPT_CLASS_MAX_HPARAMS || (d->nhparams && !d->hparams))
        return BAD("%s: nhparams %d (at most %d, with hparams set)", d->class_name, d->nhparams,
                   CLOPT_CLASS_MAX_HPARAMS);
    if (d->nslots < 0 || d->nslots > CLOPT_CLASS_MAX_SLOTS || (d->nslots && !d->slot_names))
        return BAD("%s: nslots %d (at most %d, with slot_names set)", d->class_name, d->nslots,
                   CLOPT_CLASS_MAX_SLOTS);
    if (d->nscalars < 0 || d->nscalars > CLOPT_CLASS_MAX_SCALARS || (d->nscalars && !d->scalars))
        return BAD("%s: nscalars %d (at most %d, with the scalars callback set)", d->class_name,
                   d->nscalars, CLOPT_CLASS_MAX_SCALARS);
    if (!d->opencl_update || !*d->opencl_update)
        return BAD("%s: opencl_update is NULL or empty", d->class_name);
    if (!d->host_update) return BAD("%s: host_update is NULL", d->class_name);
    for (int i = 0; i < d->nslots; i++)
        if (d->slot_inits && !isfinite(d->slot_inits[i]))
            return BAD("%s: slot_inits[%d] is not finite", d->class_name, i);
    clopt_status st;
    for (int i = 0; i < d->nhparams; i++)
        if ((st = check_hparam(&d->hparams[i], i, d->hparams, msg, cap)) != CLOPT_OK) {
            /* Say whose table it is. */
            char inner[400];
            snprintf(inner, sizeof inner, "%s", msg);
            return BAD("%s: %s", d->class_name, inner);
        }
    return check_names(d, msg, cap);
}

/* ---- the class's hooks ---- */

static int slots(const clopt_optimizer *o, clopt__slot_kind *k) {
    const custom_class *c = (const custom_class *)o->cls;
    for (int i = 0; i < c->nslots; i++)
        k[i] = (clopt__slot_kind){c->slot_names[i], 0, c->slot_inits[i]};
    return c->nslots;
}

static void launch(const clopt_optimizer *o, const clopt__step_info *s, clopt__launch *l) {
    const custom_class *c = (const custom_class *)o->cls;
    double hp[CLOPT__MAX_PARAMS], out[CLOPT__MAX_SCALARS] = {0};
    for (int i = 0; i < c->cls.nparams; i++) hp[i] = o->hp[i].null ? NAN : o->hp[i].v;
    const clopt_class_step step = {s->lr, s->t, l->dtype, hp};
    if (c->scalars) c->scalars(&step, out, c->user_data);
    l->kernel = c->kernel.name;
    l->user = &c->kernel;
    memcpy(l->scalars, out, sizeof out);
}

/* ---- making a class ---- */

/* Keras's default name of an Optimizer subclass (to_snake_case: AdaBelief -> ada_belief). */
static char *snake_case(const char *s) {
    char *r = malloc(2 * strlen(s) + 1), *p = r;
    if (!r) return NULL;
    for (size_t i = 0; s[i]; i++) {
        const unsigned char ch = (unsigned char)s[i];
        if (i && isupper(ch) && (islower((unsigned char)s[i - 1]) ||
                                 islower((unsigned char)s[i + 1])))
            *p++ = '_';
        *p++ = (char)tolower(ch);
    }
    *p = '\0';
    return r;
}

/* The update kernel of a program's class: its rule, as the built-in classes' (elementwise.c). */
static char *kernel_source(const clopt_optimizer_class_desc *d, const char *kname) {
    const clopt__elementwise e = {
        .nslots = d->nslots,
        .slot_names = d->slot_names,
        .nscalars = d->nscalars,
        .scalar_names = d->scalar_names,
        .opencl = d->opencl_update,
    };
    return clopt__elementwise_source(&e, "a program's optimizer class", d->class_name, kname);
}

void clopt__custom_class_free(clopt__optimizer_class *cls) {
    custom_class *c = (custom_class *)cls;
    if (!c) return;
    for (int i = 0; i < CLOPT__MAX_PARAMS; i++) free(c->keys[i]);
    for (int i = 0; i < CLOPT__MAX_SLOTS; i++) free(c->slot_names[i]);
    free(c->class_name);
    free(c->registered_name);
    free(c->module);
    free(c->default_name);
    free(c->source);
    free(c);
}

/* A class from a checked description; NULL when out of memory. */
static custom_class *class_new(const clopt_optimizer_class_desc *d) {
    custom_class *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    int bad = !(c->class_name = clopt__strdup(d->class_name)) ||
              !(c->registered_name = clopt__strdup(d->registered_name ? d->registered_name
                                                                      : d->class_name)) ||
              !(c->module = clopt__strdup(d->module ? d->module : "__main__")) ||
              !(c->default_name = d->default_name ? clopt__strdup(d->default_name)
                                                  : snake_case(d->class_name));
    for (int i = 0; i < d->nhparams && !bad; i++) {
        const clopt_hparam *h = &d->hparams[i];
        static const clopt__ptype types[] = {CLOPT__P_FLOAT, CLOPT__P_FLOAT_OR_NULL,
                                             CLOPT__P_INT_OR_NULL, CLOPT__P_BOOL};
        bad = !(c->keys[i] = clopt__strdup(h->key));
        c->params[i] = (clopt__param){c->keys[i], types[h->type], h->def, h->def_null,
                                      h->lo, h->hi, h->lo_open, h->hi_open};
    }
    for (int i = 0; i < d->nslots && !bad; i++) {
        bad = !(c->slot_names[i] = clopt__strdup(d->slot_names[i]));
        c->slot_inits[i] = d->slot_inits ? d->slot_inits[i] : 0.0;
    }
    /* The kernel's name: the hash of its source under a fixed name, so one source is one
     * program in the backend's caches. */
    char *probe = bad ? NULL : kernel_source(d, "custom");
    if (probe) {
        snprintf(c->kernel_name, sizeof c->kernel_name, "custom_%016llx",
                 (unsigned long long)clopt__hash64(CLOPT__HASH_INIT, probe, strlen(probe)));
        c->source = kernel_source(d, c->kernel_name);
    }
    free(probe);
    if (bad || !c->source) {
        clopt__custom_class_free(&c->cls);
        return NULL;
    }
    c->nslots = d->nslots;
    c->scalars = d->scalars;
    c->user_data = d->user_data;
    c->kernel = (clopt__user_kernel){c->kernel_name, c->source, d->host_update, d->user_data,
                                     d->nslots};
    c->cls = (clopt__optimizer_class){
        .class_name = c->class_name,
        .default_name = c->default_name,
        .default_lr = d->default_learning_rate,
        .params = c->params,
        .nparams = d->nhparams,
        .slots = slots,
        .launch = launch,
        .registered_name = c->registered_name,
        .module = c->module,
    };
    return c;
}

/* ---- the registry and a call's classes ---- */

static _Thread_local char class_error[512];

/* A call's classes: this thread's clopt_optimizer_from_config_with_classes in progress. */
static _Thread_local const clopt_optimizer_class_desc *scope;
static _Thread_local size_t scope_n;

const char *clopt_class_last_error(void) { return class_error; }

int clopt_optimizer_class_registered(const char *name) {
    int builtin = 0;
    for (int by = 0; by < 2; by++)
        if (clopt__registry_find(name, by, &builtin) && !builtin) return 1;
    return 0;
}

clopt_status clopt_optimizer_class_register(const clopt_optimizer_class_desc *d) {
    char *msg = class_error;
    const size_t cap = sizeof class_error;
    msg[0] = '\0';
    if (!d) {
        snprintf(msg, cap, "clopt_optimizer_class_register: desc is NULL");
        return CLOPT_ERR_INVALID_ARGUMENT;
    }
    clopt_status st = check_desc(d, msg, cap);
    if (st != CLOPT_OK) return st;
    const char *reg = d->registered_name ? d->registered_name : d->class_name;
    custom_class *c = class_new(d);
    if (!c) {
        snprintf(msg, cap, "%s: out of host memory", reg);
        return CLOPT_ERR_OUT_OF_MEMORY;
    }
    const clopt__optimizer_class *clash;
    st = clopt__registry_add(&c->cls, &clash);
    if (st == CLOPT_OK) return CLOPT_OK;
    if (!clash) snprintf(msg, cap, "%s: out of host memory", reg);
    else if (!clash->registered_name)
        snprintf(msg, cap, "%s: a built-in optimizer class has this name", reg);
    else snprintf(msg, cap, "%s: a registered class has its class_name or registered_name", reg);
    clopt__custom_class_free(&c->cls);
    return st;
}

/* The call's class named `name` (by registered_name, or by class_name). */
static const clopt_optimizer_class_desc *scope_find(const char *name, int by_class_name) {
    for (size_t i = 0; i < scope_n; i++) {
        const clopt_optimizer_class_desc *d = &scope[i];
        const char *n = by_class_name || !d->registered_name ? d->class_name : d->registered_name;
        if (!strcmp(n, name)) return d;
    }
    return NULL;
}

/* One of the call's classes, copied for the optimizer that uses it. */
static const clopt__optimizer_class *from_scope(const clopt_optimizer_class_desc *d,
                                                clopt__optimizer_class **owned) {
    custom_class *c = class_new(d);
    *owned = c ? &c->cls : NULL;
    return *owned;
}

/* Keras's order: the call's classes by registered_name, the registered ones by it, the
 * built-in classes by class_name, then the call's and the registered ones by class_name. */
const clopt__optimizer_class *clopt__class_resolve(const char *class_name,
                                                   const char *registered_name,
                                                   clopt__optimizer_class **owned) {
    const clopt_optimizer_class_desc *d;
    const clopt__optimizer_class *r;
    int builtin = 0;
    *owned = NULL;
    if (registered_name && (d = scope_find(registered_name, 0))) return from_scope(d, owned);
    if (registered_name && (r = clopt__registry_find(registered_name, 0, NULL))) return r;
    r = clopt__registry_find(class_name, 1, &builtin);
    if (r && builtin) return r;
    if ((d = scope_find(class_name, 1))) return from_scope(d, owned);
    return r;
}

clopt_status clopt_optimizer_from_config_with_classes(clopt_context *ctx, const char *json,
                                                      const clopt_optimizer_class_desc *classes,
                                                      size_t n, clopt_optimizer **out) {
    if (!ctx) return CLOPT_ERR_INVALID_ARGUMENT;
    if (n && !classes)
        return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT,
                           "clopt_optimizer_from_config_with_classes: classes is NULL, n %zu", n);
    char msg[512];
    for (size_t i = 0; i < n; i++) {
        clopt_status st = check_desc(&classes[i], msg, sizeof msg);
        if (st != CLOPT_OK)
            return clopt__fail(ctx, st,
                               "clopt_optimizer_from_config_with_classes: classes[%zu]: %s", i,
                               msg);
    }
    const clopt_optimizer_class_desc *saved = scope;
    const size_t saved_n = scope_n;
    scope = classes;
    scope_n = n;
    clopt_status st = clopt_optimizer_from_config(ctx, json, out);
    scope = saved;
    scope_n = saved_n;
    return st;
}
