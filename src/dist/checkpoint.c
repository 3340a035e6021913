/* Checkpoints of a mirrored optimizer (include/clopt/distribute.h): replica 0 writes, through
 * clopt_checkpoint_save (atomic); a load is checked on replica 0 first, then written to every
 * replica, so that a bad file changes none. */
#include "clopt/checkpoint.h"
#include "dist_internal.h"

/* A path is given and every row of vars names row 0's variables, row r in replica r's
 * context. */
static clopt_status check_input(clopt_strategy *s, clopt_variable *const *vars, size_t n,
                                const char *path, const char *what) {
    if (!path) return clopt__dist_fail(s, CLOPT_ERR_INVALID_ARGUMENT, "%s: path is NULL", what);
    if (!vars && n)
        return clopt__dist_fail(s, CLOPT_ERR_INVALID_ARGUMENT, "%s: vars is NULL, n is %zu",
                                what, n);
    for (size_t r = 0; r < s->n; r++) {
        for (size_t i = 0; i < n; i++) {
            const clopt_variable *b = vars[r * n + i];
            if (!b)
                return clopt__dist_fail(s, CLOPT_ERR_INVALID_ARGUMENT,
                                        "%s: variable %zu of replica %zu is NULL", what, i, r);
            if (b->ctx != s->ctx[r])
                return clopt__dist_fail(s, CLOPT_ERR_CONTEXT_MISMATCH,
                            "%s: variable %zu ('%s') of replica %zu is not in replica %zu's "
                            "context",
                            what, i, b->name, r, r);
        }
        clopt_status st = clopt__dist_check_row(s, vars, n, r, CLOPT_ERR_INVALID_ARGUMENT, what);
        if (st != CLOPT_OK) return st;
    }
    return CLOPT_OK;
}

clopt_status clopt_mirrored_optimizer_checkpoint_save(clopt_mirrored_optimizer *m,
                                                      clopt_variable *const *vars, size_t n,
                                                      const char *path) {
    if (!m) return CLOPT_ERR_INVALID_ARGUMENT;
    clopt_strategy *s = m->s;
    s->error[0] = '\0';
    clopt_status st = check_input(s, vars, n, path, "checkpoint_save");
    if (st != CLOPT_OK) return st;
    st = clopt_checkpoint_save(m->r[0].opt, vars, n, path);
    return st == CLOPT_OK ? CLOPT_OK : clopt__dist_fail_replica(s, 0, st);
}

clopt_status clopt_mirrored_optimizer_checkpoint_load(clopt_mirrored_optimizer *m,
                                                      clopt_variable *const *vars, size_t n,
                                                      const char *path) {
    if (!m) return CLOPT_ERR_INVALID_ARGUMENT;
    clopt_strategy *s = m->s;
    s->error[0] = '\0';
    clopt_status st = check_input(s, vars, n, path, "checkpoint_load");
    for (size_t r = 0; st == CLOPT_OK && r < s->n; r++)
        if (!m->r[r].opt->built)
            st = clopt__dist_fail(s, CLOPT_ERR_NOT_BUILT,
                                  "checkpoint_load: replica %zu's optimizer is not built", r);
    /* Replica 0 reads and checks the whole file before writing anything. */
    for (size_t r = 0; st == CLOPT_OK && r < s->n; r++) {
        st = clopt_checkpoint_load(m->r[r].opt, vars ? vars + r * n : NULL, n, path);
        if (st != CLOPT_OK) return clopt__dist_fail_replica(s, r, st);
    }
    return st;
}
