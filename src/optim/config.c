/* Keras configs: clopt_optimizer_from_config and clopt_optimizer_get_config, driven by the
 * hyperparameter tables. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "json_internal.h"
#include "optim_internal.h"
#include "schedule_internal.h"

#define INF HUGE_VAL
/* Doubles of smaller magnitude convert to int64 exactly as C defines it (2^63 does not). */
#define CLOPT__INT64_SAFE 9.2e18

const clopt__param clopt__base_params[CLOPT__B_COUNT] = {
    [CLOPT__B_WEIGHT_DECAY] = {"weight_decay", CLOPT__P_FLOAT_OR_NULL, 0, 1, -INF, INF, 0, 0},
    [CLOPT__B_CLIPNORM] = {"clipnorm", CLOPT__P_FLOAT_OR_NULL, 0, 1, 0, INF, 0, 0},
    [CLOPT__B_GLOBAL_CLIPNORM] = {"global_clipnorm", CLOPT__P_FLOAT_OR_NULL, 0, 1, 0, INF, 0, 0},
    [CLOPT__B_CLIPVALUE] = {"clipvalue", CLOPT__P_FLOAT_OR_NULL, 0, 1, 0, INF, 0, 0},
    [CLOPT__B_USE_EMA] = {"use_ema", CLOPT__P_BOOL, 0, 0, 0, 1, 0, 0},
    [CLOPT__B_EMA_MOMENTUM] = {"ema_momentum", CLOPT__P_FLOAT, 0.99, 0, -INF, INF, 0, 0},
    [CLOPT__B_EMA_OVERWRITE_FREQUENCY] = {"ema_overwrite_frequency", CLOPT__P_INT_OR_NULL, 0, 1,
                                          -INF, INF, 0, 0},
    [CLOPT__B_LOSS_SCALE_FACTOR] = {"loss_scale_factor", CLOPT__P_FLOAT_OR_NULL, 0, 1, -INF, INF,
                                    0, 0},
    [CLOPT__B_GRADIENT_ACCUMULATION_STEPS] = {"gradient_accumulation_steps",
                                              CLOPT__P_INT_OR_NULL, 0, 1, -INF, INF, 0, 0},
};


static const char *expected(clopt__ptype t) {
    switch (t) {
    case CLOPT__P_FLOAT: return "a number";
    case CLOPT__P_FLOAT_OR_NULL: return "a number or null";
    case CLOPT__P_INT_OR_NULL: return "an integer or null";
    case CLOPT__P_BOOL: return "a boolean";
    case CLOPT__P_NUMBER: return "a number";
    case CLOPT__P_STRING_LIST: return "a list of strings or null";
    }
    return "?";
}

/* Reads one value of a parameter, checking its JSON type and range. */
static clopt_status read_param(clopt_context *ctx, const char *cls, const clopt__param *p,
                               const json_t *v, clopt__value *out, unsigned char *integer,
                               json_t **list) {
    int ok;
    clopt__value r = {0, 0};
    switch (p->type) {
    case CLOPT__P_BOOL:
        ok = json_is_boolean(v);
        r.v = json_is_true(v);
        break;
    case CLOPT__P_INT_OR_NULL:
        ok = json_is_integer(v) || json_is_null(v) ||
             (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)));
        r.null = json_is_null(v);
        r.v = json_number_value(v);
        break;
    case CLOPT__P_FLOAT_OR_NULL:
        ok = json_is_number(v) || json_is_null(v);
        r.null = json_is_null(v);
        r.v = json_number_value(v);
        break;
    case CLOPT__P_NUMBER:
        ok = json_is_number(v);
        r.v = json_number_value(v);
        break;
    case CLOPT__P_STRING_LIST: {
        ok = json_is_null(v) || json_is_array(v);
        size_t i;
        json_t *e;
        if (json_is_array(v)) json_array_foreach(v, i, e) ok &= json_is_string(e);
        if (!ok) break;
        json_decref(*list);
        *list = json_is_array(v) && json_array_size(v) ? json_incref((json_t *)v) : NULL;
        return CLOPT_OK;
    }
    default:
        ok = json_is_number(v);
        r.v = json_number_value(v);
        break;
    }
    if (!ok)
        return clopt__fail(ctx, CLOPT_ERR_BAD_TYPE, "%s config: '%s' must be %s, got %s", cls,
                           p->key, expected(p->type), clopt__json_type_name(v));
    /* An integer parameter is written back as a JSON integer (int64): a value beyond int64's
     * range (an integral real such as 1e300) could not be; converting it would be undefined. */
    if (p->type == CLOPT__P_INT_OR_NULL && !r.null && !(fabs(r.v) < CLOPT__INT64_SAFE))
        return clopt__fail(ctx, CLOPT_ERR_BAD_VALUE,
                           "%s config: '%s' = %g is outside the range of a 64-bit integer", cls,
                           p->key, r.v);
    if (!r.null && (!isfinite(r.v) || r.v < p->lo || r.v > p->hi ||
                    (p->lo_open && r.v == p->lo) || (p->hi_open && r.v == p->hi)))
        return clopt__fail(ctx, CLOPT_ERR_BAD_VALUE, "%s config: '%s' = %g is outside %s%g, %g%s",
                           cls, p->key, r.v, p->lo_open ? "(" : "[", p->lo, p->hi,
                           p->hi_open ? ")" : "]");
    *out = r;
    /* A JSON integer is written back as one, unless its double value is beyond int64's range
     * (9223372036854775807 reads as 2^63): then it is written as a real. */
    if (p->type == CLOPT__P_NUMBER)
        *integer = json_is_integer(v) && fabs(r.v) < CLOPT__INT64_SAFE;
    return CLOPT_OK;
}

/* Keras's base-class checks (semantics doc 1.1, steps 5 to 7). */
static clopt_status validate_base(clopt_context *ctx, const clopt_optimizer *o) {
    const char *cls = o->cls->class_name;
    const clopt__value *b = o->base;
    const clopt__value *acc = &b[CLOPT__B_GRADIENT_ACCUMULATION_STEPS];
    if (!acc->null && acc->v != 0 && acc->v < 2)
        return clopt__fail(ctx, CLOPT_ERR_BAD_VALUE,
                           "%s config: 'gradient_accumulation_steps' must be an integer >= 2, "
                           "got %g",
                           cls, acc->v);
    if (b[CLOPT__B_USE_EMA].v) {
        double m = b[CLOPT__B_EMA_MOMENTUM].v;
        const clopt__value *f = &b[CLOPT__B_EMA_OVERWRITE_FREQUENCY];
        if (m < 0 || m > 1)
            return clopt__fail(ctx, CLOPT_ERR_BAD_VALUE,
                               "%s config: 'ema_momentum' must be in [0, 1], got %g", cls, m);
        if (!f->null && f->v != 0 && f->v < 1)
            return clopt__fail(ctx, CLOPT_ERR_BAD_VALUE,
                               "%s config: 'ema_overwrite_frequency' must be an integer >= 1 or "
                               "null, got %g",
                               cls, f->v);
    }
    /* apply divides by it in float32: the factor and its reciprocal must both be finite there. */
    const clopt__value *lsf = &b[CLOPT__B_LOSS_SCALE_FACTOR];
    if (!lsf->null && !(lsf->v > 0 && isfinite((float)lsf->v) && isfinite((float)(1.0 / lsf->v))))
        return clopt__fail(ctx, CLOPT_ERR_BAD_VALUE,
                           "%s config: 'loss_scale_factor' must be > 0 and, with its reciprocal, "
                           "finite as a float32, got %g",
                           cls, lsf->v);
    int nclip = !b[CLOPT__B_CLIPNORM].null + !b[CLOPT__B_GLOBAL_CLIPNORM].null +
                !b[CLOPT__B_CLIPVALUE].null;
    if (nclip > 1)
        return clopt__fail(ctx, CLOPT_ERR_BAD_VALUE,
                           "%s config: only one of 'clipnorm', 'clipvalue' and 'global_clipnorm' "
                           "can be set",
                           cls);
    return CLOPT_OK;
}

static clopt_status parse_lr(clopt_context *ctx, clopt_optimizer *o, const json_t *v) {
    if (json_is_object(v)) {
        clopt__schedule *s;
        clopt_status st = clopt__schedule_from_json(ctx, v, &s);
        if (st != CLOPT_OK) return st;
        clopt__schedule_free(o->schedule);
        o->schedule = s;
        return CLOPT_OK;
    }
    if (!json_is_number(v))
        return clopt__fail(ctx, CLOPT_ERR_BAD_TYPE,
                           "%s config: 'learning_rate' must be a number or a schedule, got %s",
                           o->cls->class_name, clopt__json_type_name(v));
    double lr = json_number_value(v);
    /* Kept as a float32 (Keras's learning-rate variable): 1e300 would be inf, which get_config
     * could not write. */
    if (!isfinite(lr) || !isfinite((float)lr))
        return clopt__fail(ctx, CLOPT_ERR_BAD_VALUE,
                           "%s config: 'learning_rate' must be finite as a float32, got %g",
                           o->cls->class_name, lr);
    o->lr = (float)lr;
    return CLOPT_OK;
}

/* Applies one config key to the optimizer. */
static clopt_status apply_key(clopt_context *ctx, clopt_optimizer *o, const char *key,
                              const json_t *v) {
    const char *cls = o->cls->class_name;
    if (strcmp(key, "learning_rate") == 0) return parse_lr(ctx, o, v);
    if (strcmp(key, "decay") == 0) return CLOPT_OK; /* Keras drops it with a warning */
    if (strcmp(key, "name") == 0) {
        if (json_is_null(v)) return CLOPT_OK;
        if (!json_is_string(v))
            return clopt__fail(ctx, CLOPT_ERR_BAD_TYPE,
                               "%s config: 'name' must be a string or null, got %s", cls,
                               clopt__json_type_name(v));
        char *n = clopt__strdup(json_string_value(v));
        if (!n) return CLOPT_ERR_OUT_OF_MEMORY;
        free(o->name);
        o->name = n;
        return CLOPT_OK;
    }
    for (int i = 0; i < CLOPT__B_COUNT; i++)
        if (strcmp(key, clopt__base_params[i].key) == 0)
            return read_param(ctx, cls, &clopt__base_params[i], v, &o->base[i], NULL, NULL);
    for (int i = 0; i < o->cls->nparams; i++)
        if (strcmp(key, o->cls->params[i].key) == 0)
            return read_param(ctx, cls, &o->cls->params[i], v, &o->hp[i], &o->hp_integer[i],
                              &o->hp_list[i]);
    return clopt__fail(ctx, CLOPT_ERR_UNKNOWN_KEY, "%s config: unknown key '%s'", cls, key);
}

static clopt_status optimizer_new(clopt_context *ctx, const clopt__optimizer_class *cls,
                                  clopt_optimizer **out) {
    /* A wrapper's struct is its own, starting with the optimizer's. */
    clopt_optimizer *o = calloc(1, cls->wrapper ? cls->wrapper->size : sizeof *o);
    if (!o || !(o->name = clopt__strdup(cls->default_name))) {
        free(o);
        return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    o->ctx = ctx;
    o->cls = cls;
    o->lr = (float)cls->default_lr;
    for (int i = 0; i < CLOPT__B_COUNT; i++)
        o->base[i] = (clopt__value){clopt__base_params[i].def, clopt__base_params[i].def_null};
    for (int i = 0; i < cls->nparams; i++) {
        o->hp[i] = (clopt__value){cls->params[i].def, cls->params[i].def_null};
        o->hp_integer[i] = cls->params[i].def == floor(cls->params[i].def);
    }
    if (cls->init) cls->init(o);
    *out = o;
    return CLOPT_OK;
}

static clopt_status parse_json(clopt_context *ctx, const char *text, json_t **out) {
    json_error_t e;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &e);
    if (!root)
        return clopt__fail(ctx, CLOPT_ERR_JSON, "optimizer config: malformed JSON at line %d, "
                           "column %d: %s", e.line, e.column, e.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return clopt__fail(ctx, CLOPT_ERR_BAD_TYPE,
                           "optimizer config: the top level must be an object");
    }
    *out = root;
    return CLOPT_OK;
}

/* Checks the serialize() wrapper: class_name, config, and optionally module and
 * registered_name. */
static clopt_status read_wrapper(clopt_context *ctx, const json_t *root,
                                 const clopt__optimizer_class **cls,
                                 clopt__optimizer_class **owned, const json_t **config) {
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)root, key, val) {
        if (strcmp(key, "class_name") && strcmp(key, "config") && strcmp(key, "module") &&
            strcmp(key, "registered_name"))
            return clopt__fail(ctx, CLOPT_ERR_UNKNOWN_KEY,
                               "optimizer config: unknown top-level key '%s' (expected "
                               "class_name, config, module, registered_name)",
                               key);
    }
    const json_t *cn = json_object_get(root, "class_name");
    if (!cn) return clopt__fail(ctx, CLOPT_ERR_BAD_TYPE, "optimizer config: 'class_name' is missing");
    if (!json_is_string(cn))
        return clopt__fail(ctx, CLOPT_ERR_BAD_TYPE,
                           "optimizer config: 'class_name' must be a string, got %s",
                           clopt__json_type_name(cn));
    const json_t *rn = json_object_get(root, "registered_name");
    if (rn && !json_is_string(rn) && !json_is_null(rn))
        return clopt__fail(ctx, CLOPT_ERR_BAD_TYPE,
                           "optimizer config: 'registered_name' must be a string or null, got %s",
                           clopt__json_type_name(rn));
    const char *reg = json_string_value(rn);
    if (clopt__registry_ready() != CLOPT_OK)
        return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY,
                           "optimizer config: out of host memory registering the built-in "
                           "classes");
    *cls = clopt__class_resolve(json_string_value(cn), reg, owned);
    if (!*cls)
        return clopt__fail(ctx, CLOPT_ERR_UNKNOWN_OPTIMIZER,
                           "optimizer config: unknown optimizer class '%s'%s%s%s",
                           json_string_value(cn), reg ? " (registered_name '" : "",
                           reg ? reg : "", reg ? "')" : "");
    *config = json_object_get(root, "config");
    if (*config && !json_is_object(*config))
        return clopt__fail(ctx, CLOPT_ERR_BAD_TYPE,
                           "optimizer config: 'config' must be an object, got %s",
                           clopt__json_type_name(*config));
    return CLOPT_OK;
}

/* Reads one config key of the base class or the optimizer's class. */
clopt_status clopt__config_key(clopt_optimizer *o, const char *key, const json_t *v) {
    return apply_key(o->ctx, o, key, v);
}

clopt_status clopt__optimizer_from_json(clopt_context *ctx, const json_t *root,
                                        clopt_optimizer **out) {
    const clopt__optimizer_class *cls = NULL;
    clopt__optimizer_class *owned = NULL;
    const json_t *config = NULL;
    clopt_optimizer *o = NULL;
    clopt_status st;
    if (!json_is_object(root))
        return clopt__fail(ctx, CLOPT_ERR_BAD_TYPE, "optimizer config: expected an object");
    if ((st = read_wrapper(ctx, root, &cls, &owned, &config)) != CLOPT_OK) return st;
    if ((st = optimizer_new(ctx, cls, &o)) != CLOPT_OK) {
        clopt__custom_class_free(owned);
        return st;
    }
    o->own_class = owned;
    if (cls->wrapper) {
        st = cls->wrapper->configure(o, config); /* the variable list's entries too */
    } else {
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)config, key, val) {
            if ((st = apply_key(ctx, o, key, val)) != CLOPT_OK) break;
        }
        if (st == CLOPT_OK) st = validate_base(ctx, o);
        if (st == CLOPT_OK && cls->validate) st = cls->validate(o);
        if (st == CLOPT_OK) st = clopt__optimizer_init_optvars(o);
    }
    if (st != CLOPT_OK) {
        clopt__optimizer_free_detached(o);
        return st;
    }
    *out = o;
    return CLOPT_OK;
}

clopt_status clopt_optimizer_from_config(clopt_context *ctx, const char *json,
                                         clopt_optimizer **out) {
    if (!ctx) return CLOPT_ERR_INVALID_ARGUMENT;
    if (!json || !out)
        return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT,
                           "clopt_optimizer_from_config: %s is NULL", json ? "out" : "json");
    json_t *root = NULL;
    clopt_optimizer *o = NULL;
    clopt_status st = parse_json(ctx, json, &root);
    if (st == CLOPT_OK) st = clopt__optimizer_from_json(ctx, root, &o);
    json_decref(root);
    if (st == CLOPT_OK && (st = clopt__optimizer_attach(o)) != CLOPT_OK)
        clopt__optimizer_free_detached(o);
    if (st != CLOPT_OK) return st;
    *out = o;
    return CLOPT_OK;
}

static json_t *value_json(const clopt__param *p, const clopt__value *v, int integer,
                          json_t *list) {
    if (p->type == CLOPT__P_STRING_LIST) return list ? json_incref(list) : json_array();
    if (v->null) return json_null();
    switch (p->type) {
    case CLOPT__P_BOOL: return json_boolean(v->v != 0);
    case CLOPT__P_INT_OR_NULL: return json_integer((json_int_t)v->v);
    case CLOPT__P_NUMBER: return integer ? json_integer((json_int_t)v->v) : json_real(v->v);
    default: return json_real(v->v);
    }
}

/* The config dict in Keras's key order: name, learning_rate, the base keys, the class keys. */
static json_t *config_json(const clopt_optimizer *o) {
    json_t *c = json_object();
    if (!c) return NULL;
    int bad = json_object_set_new(c, "name", json_string(o->name));
    bad |= json_object_set_new(c, "learning_rate",
                               o->schedule ? clopt__schedule_to_json(o->schedule)
                                           : json_real((double)o->lr));
    for (int i = 0; i < CLOPT__B_COUNT; i++)
        bad |= json_object_set_new(c, clopt__base_params[i].key,
                                   value_json(&clopt__base_params[i], &o->base[i], 0, NULL));
    for (int i = 0; i < o->cls->nparams; i++)
        bad |= json_object_set_new(c, o->cls->params[i].key,
                                   value_json(&o->cls->params[i], &o->hp[i], o->hp_integer[i],
                                              o->hp_list[i]));
    if (bad) {
        json_decref(c);
        return NULL;
    }
    return c;
}

json_t *clopt__optimizer_to_json(const clopt_optimizer *o) {
    json_t *root = json_object(),
           *c = o->cls->wrapper ? o->cls->wrapper->config_json(o) : config_json(o);
    const char *module = o->cls->module ? o->cls->module : "keras.optimizers";
    if (root && c && !json_object_set_new(root, "module", json_string(module)) &&
        !json_object_set_new(root, "class_name", json_string(o->cls->class_name)) &&
        !json_object_set(root, "config", c) &&
        !json_object_set_new(root, "registered_name",
                             o->cls->registered_name ? json_string(o->cls->registered_name)
                                                     : json_null())) {
        json_decref(c);
        return root;
    }
    json_decref(root);
    json_decref(c);
    return NULL;
}

clopt_status clopt_optimizer_get_config(const clopt_optimizer *o, char **json) {
    if (!o) return CLOPT_ERR_INVALID_ARGUMENT;
    if (!json)
        return clopt__fail(o->ctx, CLOPT_ERR_INVALID_ARGUMENT,
                           "clopt_optimizer_get_config: json is NULL");
    json_t *root = clopt__optimizer_to_json(o);
    char *s = root ? clopt__json_dump(root) : NULL;
    json_decref(root);
    if (!s) return clopt__fail(o->ctx, CLOPT_ERR_OUT_OF_MEMORY, "get_config: out of memory");
    *json = s;
    return CLOPT_OK;
}
