/* The registry: one table of every optimizer class a config can name. The built-in classes
 * (the list CLOPT_BUILTIN_CLASSES in cl/scalars.cl) are registered into it on first use, their
 * element-wise rules' kernels made then; a program's classes join it through
 * clopt_optimizer_class_register (custom.c). Entries are never removed. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "optim_internal.h"

#define CLOPT__DECLARE_CLASS(name) extern const clopt__optimizer_class clopt__##name##_class;
CLOPT_BUILTIN_CLASSES(CLOPT__DECLARE_CLASS)
#undef CLOPT__DECLARE_CLASS

#define CLOPT__CLASS_ENTRY(name) &clopt__##name##_class,
static const clopt__optimizer_class *const builtin[] = {CLOPT_BUILTIN_CLASSES(CLOPT__CLASS_ENTRY)};
#undef CLOPT__CLASS_ENTRY
#define NBUILTIN (sizeof builtin / sizeof *builtin)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static const clopt__optimizer_class **table; /* the built-in classes first, in list order */
static size_t ntable, captable;
static clopt_status init_status;

static clopt_status append(const clopt__optimizer_class *cls) {
    if (ntable == captable) {
        const size_t cap = captable ? 2 * captable : 2 * NBUILTIN;
        const clopt__optimizer_class **t = realloc(table, cap * sizeof *t);
        if (!t) return CLOPT_ERR_OUT_OF_MEMORY;
        table = t;
        captable = cap;
    }
    table[ntable++] = cls;
    return CLOPT_OK;
}

static void init(void) {
    for (size_t i = 0; i < NBUILTIN && init_status == CLOPT_OK; i++) {
        const clopt__optimizer_class *c = builtin[i];
        init_status = clopt__builtin_updates_make(c->updates, c->nupdates, c->class_name);
        if (init_status == CLOPT_OK) init_status = append(c);
    }
}

clopt_status clopt__registry_ready(void) {
    pthread_once(&once, init);
    return init_status;
}

static int is_builtin(size_t i) { return i < NBUILTIN; }

/* Entry i's name of the kind asked, or NULL (a built-in class has no registered_name). */
static const char *key(size_t i, int by_class_name) {
    return by_class_name ? table[i]->class_name : table[i]->registered_name;
}

/* Under the lock. */
static const clopt__optimizer_class *find(const char *name, int by_class_name, int *builtin_out) {
    for (size_t i = 0; i < ntable; i++) {
        const char *k = key(i, by_class_name);
        if (!k) continue;
        const int hit = is_builtin(i) ? !strcasecmp(k, name) : !strcmp(k, name);
        if (hit) {
            if (builtin_out) *builtin_out = is_builtin(i);
            return table[i];
        }
    }
    return NULL;
}

const clopt__optimizer_class *clopt__registry_find(const char *name, int by_class_name,
                                                   int *builtin_out) {
    if (builtin_out) *builtin_out = 0;
    if (!name || clopt__registry_ready() != CLOPT_OK) return NULL;
    pthread_mutex_lock(&lock);
    const clopt__optimizer_class *c = find(name, by_class_name, builtin_out);
    pthread_mutex_unlock(&lock);
    return c;
}

clopt_status clopt__registry_add(const clopt__optimizer_class *cls,
                                 const clopt__optimizer_class **clash) {
    *clash = NULL;
    clopt_status st = clopt__registry_ready();
    if (st != CLOPT_OK) return st;
    const char *names[2] = {cls->class_name, cls->registered_name};
    pthread_mutex_lock(&lock);
    for (int n = 0; n < 2 && !*clash; n++)
        for (int by = 0; by < 2 && !*clash && names[n]; by++)
            *clash = find(names[n], by, NULL);
    if (!*clash) st = append(cls);
    pthread_mutex_unlock(&lock);
    return *clash ? CLOPT_ERR_BAD_STATE : st;
}

const clopt__optimizer_class *clopt__builtin_class_at(size_t i) {
    if (clopt__registry_ready() != CLOPT_OK) return NULL;
    return i < NBUILTIN ? builtin[i] : NULL;
}
