/* The optimizer layer's internals: hyperparameter tables, optimizer classes, slot layout. */
#ifndef CLOPT_OPTIM_INTERNAL_H
#define CLOPT_OPTIM_INTERNAL_H

#include <regex.h>
#include <jansson.h>
#include <math.h>
#include "clopt/optimizer.h"
#include "../core/core_internal.h"
#include "optim_access.h"

/* ---- hyperparameters: one table per class drives from_config, get_config and validation ---- */

typedef enum clopt__ptype {
    CLOPT__P_FLOAT,         /* a number */
    CLOPT__P_FLOAT_OR_NULL, /* a number or null (None) */
    CLOPT__P_INT_OR_NULL,   /* an integer or null */
    CLOPT__P_BOOL,
    CLOPT__P_NUMBER,        /* a number written back as given: an integer stays an integer, as
                             * Python keeps int and float apart (Muon's adam_lr_ratio=1); a whole
                             * default is an integer (clopt_optimizer.hp_integer) */
    CLOPT__P_STRING_LIST    /* a list of strings, or null read as the empty list (Keras's
                             * `x or []`: Muon's exclude_layers); clopt_optimizer.hp_list */
} clopt__ptype;

typedef struct clopt__param {
    const char *key; /* Keras's config key */
    clopt__ptype type;
    double def;      /* default value */
    int def_null;    /* the default is None */
    double lo, hi;   /* allowed range (inclusive unless *_open) */
    int lo_open, hi_open;
} clopt__param;

/* The entries of an array. */
#define CLOPT__COUNTOF(a) ((int)(sizeof(a) / sizeof *(a)))
/* A class's parameter table and its count, in its clopt__optimizer_class initializer. */
#define CLOPT__PARAMS(a) .params = (a), .nparams = CLOPT__COUNTOF(a)

typedef struct clopt__value {
    double v;
    int null;
} clopt__value;

#define CLOPT__MAX_PARAMS 16

/* Base-class keys, in Keras get_config order after name and learning_rate. */
enum {
    CLOPT__B_WEIGHT_DECAY,
    CLOPT__B_CLIPNORM,
    CLOPT__B_GLOBAL_CLIPNORM,
    CLOPT__B_CLIPVALUE,
    CLOPT__B_USE_EMA,
    CLOPT__B_EMA_MOMENTUM,
    CLOPT__B_EMA_OVERWRITE_FREQUENCY,
    CLOPT__B_LOSS_SCALE_FACTOR,
    CLOPT__B_GRADIENT_ACCUMULATION_STEPS,
    CLOPT__B_COUNT
};
extern const clopt__param clopt__base_params[CLOPT__B_COUNT];

/* ---- slots ---- */

#define CLOPT__MAX_SLOTS 4

/* One kind of slot variable per built variable. Kinds with the same `group` are interleaved per
 * variable in Keras's variable list (Adam: m0 v0 m1 v1); groups follow each other (Adam's
 * velocity_hat block after the pairs). */
typedef struct clopt__slot_kind {
    const char *name; /* Keras slot name: "momentum", "velocity" */
    int group;
    double init;      /* constant initial value (see also clopt__optimizer_class.copy_slots) */
} clopt__slot_kind;

/* How a class's slot kind appears in Keras's variable list for one variable, when it is not a
 * view of the variable's shape named "<variable>_<kind>" (clopt__optimizer_class.slot_entry).
 * The slot's storage is always the variable's size; a view of another shape sees the first
 * elements of it (Adafactor's row and column statistics; the rest is the class's scratch). */
typedef struct clopt__slot_entry {
    char *name;  /* Keras's name (malloc'd; the layer frees it), or NULL for the default */
    int ndim;    /* the view's shape: at most the variable's element count */
    int64_t shape[CLOPT_MAX_NDIM];
    int placeholder; /* instead of a view: a host integer scalar, o->state[state_index]
                      * (Adafactor's dummy Variable(0) for variables of rank < 2) */
    int state_index;
    int absent; /* no entry in Keras's list for this variable (Muon's velocity of a variable on
                 * the Muon path); the storage is still there, the class's scratch */
} clopt__slot_entry;

/* ---- classes ---- */

typedef struct clopt__plan clopt__plan;
typedef struct clopt__plan_launch clopt__plan_launch;

typedef struct clopt__step_info {
    int64_t t;  /* 1-based step for bias corrections: iterations + 1 */
    double lr;  /* learning rate for this step */
} clopt__step_info;

/* An element-wise update rule: how a class (a built-in one, or a program's: custom.c) updates
 * one element, given twice. `opencl`: statements that elementwise.c places in a fused update
 * kernel, where w is the variable's element after weight decay, g the processed gradient, each
 * slot a real named slot_names[k] and each scalar a const real named scalar_names[k] (c0..c7
 * when NULL); `prelude`: lines before the kernel (the statements' #defines), or NULL. `host`:
 * the same in double, for the host backend (clopt__user_kernel.host). */
typedef struct clopt__elementwise {
    const char *name; /* the kernel's name (a built-in's: "adam_amsgrad") */
    const char *prelude;
    int nslots;
    const char *const *slot_names;
    int nscalars;
    const char *const *scalar_names;
    const char *opencl;
    void (*host)(double *w, double g, double *slots, const double *scalars, void *user_data);
    void *user_data;
} clopt__elementwise;

/* A built-in class's element-wise rule and the kernel made from it when the registry registers
 * the class (registry.c; kernel.source NULL until then). */
typedef struct clopt__builtin_update {
    clopt__elementwise rule;
    clopt__user_kernel kernel;
} clopt__builtin_update;

/* The OpenCL source of rule e's kernel `kname` (malloc'd; NULL when out of memory); label and
 * what name it in its first comment. */
char *clopt__elementwise_source(const clopt__elementwise *e, const char *what,
                                const char *label, const char *kname);
/* Makes the kernels of u[0 .. n-1] that are not made yet. */
clopt_status clopt__builtin_updates_make(clopt__builtin_update *u, int n, const char *label);

/* Points launch l at kernel k (a rule's kernel: clopt__launch_user). */
static inline void clopt__launch_rule(clopt__launch *l, const clopt__user_kernel *k) {
    l->kernel = k->name;
    l->user = k;
    l->ndefines = 0;
}

/* In a rule's host function: its scalars by the names of list K of cl/scalars.cl
 * (const double lr = c[0]), and the list's names in order, for clopt__elementwise.scalar_names
 * (each list gives its indices in order from 0). */
#define CLOPT__RULE_SCALAR_(i, name, doc) const double name = c_[i]; (void)name;
#define CLOPT__RULE_SCALARS(K, c) \
    const double *const c_ = (c); \
    CLOPT_SCALARS_##K(CLOPT__RULE_SCALAR_)
#define CLOPT__RULE_NAME_(i, name, doc) #name,

typedef struct clopt__optimizer_class {
    const char *class_name;   /* "Adam" */
    const char *default_name; /* "adam" */
    double default_lr;
    const clopt__param *params; /* class keys, in Keras get_config order */
    int nparams;
    /* Slot kinds for the optimizer's current hyperparameters; returns how many. */
    int (*slots)(const clopt_optimizer *opt, clopt__slot_kind *kinds);
    /* Checks cross-parameter rules beyond the table's ranges (may be NULL). */
    clopt_status (*validate)(clopt_optimizer *opt);
    /* Fills the launch's kernel, defines and per-step scalars. */
    void (*launch)(const clopt_optimizer *opt, const clopt__step_info *step, clopt__launch *l);
    /* Optional: called once per update step before the launches (host-side state such as
     * Nadam's u_product, which the variable list then shows as scalar_name: o->state[0]). */
    void (*before_step)(clopt_optimizer *opt, const clopt__step_info *step);
    const char *scalar_name; /* a class scalar appended to the variable list, or NULL */
    /* Optional: adjusts base defaults before the config is read (AdamW's weight_decay). */
    void (*init)(clopt_optimizer *opt);
    /* Optional: a step that needs per-variable reductions of its own (Lamb's norms of w and r),
     * in three launches per plan launch whatever the number of variables (stages.c,
     * run_stats): first `launch`'s launch with kernel stats_kernel (it reads the gradient with
     * GRAD(), updates the slots and writes two per-block partial sums to aux_buf, the plan's
     * partials); then the backend's segment pass segment_kernel over the variables' chunk
     * ranges (per-variable results written back over each of their chunks' partials); then the
     * update launch itself with the same aux_buf. The update kernel must not call GRAD() again
     * (on an accumulation step it zeroes the accumulator) and must not rely on a stored w. */
    const char *stats_kernel;
    const char *segment_kernel;
    /* Optional: bit k set when the class's slot kind k starts as a copy of its variable at build
     * instead of its constant init (ScheduleFreeAdamW's z: Keras's assign(z, ops.copy(var))). */
    unsigned copy_slots;
    /* Optional: the Keras entry of the class's slot kind k (0-based among the class's kinds)
     * for built variable i, when it differs from the default view (e is pre-filled with the
     * default: the variable's shape, name NULL). */
    clopt_status (*slot_entry)(const clopt_optimizer *opt, size_t i, int k,
                               clopt__slot_entry *e);
    /* Optional: class state made at build once the slots are laid out (opt->class_state), and
     * its release (also after a failed build: it must accept a partial state). */
    clopt_status (*on_build)(clopt_optimizer *opt);
    void (*on_unbuild)(clopt_optimizer *opt);
    /* Optional: runs the update of plan launch `pl` of plan `p` itself, in passes of its own
     * (Adafactor's row and column statistics), instead of `launch`'s launch `l` alone or the
     * stats_kernel passes; still a constant number of launches per plan launch (Muon: per
     * shape of its Newton-Schulz variables, whose products are batched per shape). `l` is the
     * update launch as `launch` filled it. With `warm`, only compiles and warms the kernels. */
    clopt_status (*run_launch)(clopt_optimizer *opt, const clopt__plan *p,
                               const clopt__plan_launch *pl, clopt__launch *l, int warm);
    /* Optional: the weight-decay multiplier of built variable i, written into its segment's
     * decay real instead of 1 (0 still when the variable is excluded from weight decay). A class
     * that sets it makes `launch` set the launch's decay switch and pipe[3] (the learning rate
     * then) itself: Muon's per-path rates, adam_weight_decay or weight_decay. */
    double (*decay_rate)(const clopt_optimizer *opt, size_t i);
    /* Optional: the class wraps another optimizer (LossScaleOptimizer); see below. */
    const struct clopt__wrapper_ops *wrapper;
    /* A program's class (custom.c): Keras's registered_name and module in its serialized form
     * (NULL for the built-in classes: null and "keras.optimizers"). */
    const char *registered_name;
    const char *module;
    /* A built-in class's element-wise rules (its launch picks one per step), whose kernels the
     * registry makes when it registers the class; NULL for a class without. */
    clopt__builtin_update *updates;
    int nupdates;
} clopt__optimizer_class;

/* What a wrapper class does in place of the base class. A wrapper's optimizer struct is its own
 * (`size` bytes, starting with a clopt_optimizer); it owns the optimizer it wraps, which holds
 * the variables, slots, iterations and learning rate. The base layer reaches the wrapped one only
 * through `inner`: build and apply are the wrapper's, and the variable list is the wrapper's own
 * entries followed by the inner optimizer's. */
typedef struct clopt__wrapper_ops {
    size_t size;
    /* Reads the config dict (its inner optimizer's included) and writes it back. configure also
     * adds the wrapper's own entries of the variable list (clopt__optimizer_init_optvars first). */
    clopt_status (*configure)(clopt_optimizer *opt, const json_t *config);
    json_t *(*config_json)(const clopt_optimizer *opt);
    clopt_optimizer *(*inner)(const clopt_optimizer *opt);
    clopt_status (*build)(clopt_optimizer *opt, clopt_variable *const *vars, size_t n);
    clopt_status (*apply)(clopt_optimizer *opt, clopt_variable *const *grads,
                          clopt_variable *const *vars, size_t n);
    /* Makes the host-side state current where the device keeps it (write: the caller is about
     * to change host state, which the device must then take again). */
    clopt_status (*sync)(const clopt_optimizer *opt, int write);
    /* Frees what configure and build made (the inner optimizer included). */
    void (*destroy)(clopt_optimizer *opt);
} clopt__wrapper_ops;


/* The registry (registry.c): one table of every class a config can name. The built-in classes
 * are registered into it on first use (their rules' kernels made then), a program's classes by
 * clopt_optimizer_class_register (custom.c); thread-safe. find: by registered_name (exact case;
 * the built-in classes have none), or by class_name (a built-in's in any case, as Keras's
 * optimizers.get, a registered one's exact), with *builtin set. add: refuses (CLOPT_ERR_BAD_STATE,
 * with *clash the class it collides with) a class whose class_name or registered_name another
 * has under either. builtin_at: the i-th built-in class, NULL past the last. ready: CLOPT_OK, or
 * CLOPT_ERR_OUT_OF_MEMORY when the built-in classes could not be registered. */
const clopt__optimizer_class *clopt__registry_find(const char *name, int by_class_name,
                                                   int *builtin);
clopt_status clopt__registry_add(const clopt__optimizer_class *cls,
                                 const clopt__optimizer_class **clash);
const clopt__optimizer_class *clopt__builtin_class_at(size_t i);
clopt_status clopt__registry_ready(void);

/* Programs' classes (custom.c). The class a config names: by its registered_name among the
 * call's classes (clopt__custom_scope_begin) and the registered ones, then by class_name among
 * the built-in ones, the call's and the registered ones; NULL when none. When the class is one
 * of the call's, *owned receives a copy the optimizer keeps (clopt__custom_class_free). */
const clopt__optimizer_class *clopt__class_resolve(const char *class_name,
                                                   const char *registered_name,
                                                   clopt__optimizer_class **owned);
void clopt__custom_class_free(clopt__optimizer_class *cls);

/* The per-dtype slot storage of a built optimizer: one dedicated block holding every slot kind
 * at a stride, so one offset addresses a variable and all its slots. */
typedef struct clopt__slot_group {
    clopt__arena_block *block;
    size_t stride; /* elements per slot kind */
    size_t used;   /* elements laid out so far */
    void *seg_buf; /* 2 reals per built variable: clip factor, weight-decay flag */
} clopt__slot_group;

/* An entry of Keras's `variables` list. */
typedef struct clopt__optvar {
    char *name;
    char *path;
    clopt__optvar_kind kind;
    clopt_dtype dtype;   /* of a scalar: ITERATION is int64 (no clopt_dtype), LR float32 */
    clopt_variable *var; /* CLOPT__OV_SLOT only */
    int owns_memory;     /* var is a whole variable (add_variable), not a slot-block view */
    int state_index;     /* CLOPT__OV_SCALAR: the value is opt->state[state_index] */
    int integer;         /* CLOPT__OV_SCALAR: an integer (LSO's step_counter) */
} clopt__optvar;

/* A cached launch plan for one (variables, gradients) pattern of apply. */
struct clopt__plan_launch {
    clopt_dtype dtype;
    clopt__arena_block *var_block, *grad_block;
    size_t nblocks;             /* blocks of its segments: its units of work */
    size_t range_base, nranges; /* its segments (one per variable) in the plan's table */
    size_t run_base, nruns;     /* its runs (plan.c, layout_runs): at plan.n + run_base */
    size_t nrun_blocks;         /* blocks of its runs */
};

struct clopt__plan {
    size_t n;            /* pairs */
    size_t *var_index;   /* built index of each pair */
    clopt_variable **grads; /* NULL entries: the variable itself (passes without gradients) */
    clopt__plan_launch *launches;
    size_t nlaunches;
    void *ranges_buf;    /* backend buffer of clopt__segment: one per pair, launch by launch,
                          * then the runs of the launches' segments */
    void *partials_buf;  /* 16 bytes per block (two reals: clopt__launch.aux_buf), 8 for norm
                          * clipping alone, one entry when no step uses them */
    size_t ranges_cap, partials_cap; /* entries */
    /* apply's pairs were checked at handle epoch `epoch` (clopt__handles_epoch), and they are
     * the built list in order (`whole`): a step with the same lists at that epoch skips the
     * checks (apply.c, same_step). */
    uint64_t epoch;
    int whole;
};

/* What a wrapper asks of one step of the optimizer it wraps (LossScaleOptimizer): gradients
 * divided by `unscale` (0: not), and with step_state set, a step the device decides
 * (loss_scale_device.c): every launch reads its per-step scalars from step_table[dtype] at the
 * device's count and skips itself unless the device's finite flag says go, and the host neither
 * counts the step nor runs the class's before_step. At build, the kernels a step will take are
 * warmed for it, and with finite_check the finite-check kernel too. NULL: a plain step. */
typedef struct clopt__step_request {
    double unscale;
    void *step_state;
    void *step_table[4];
    int finite_check;
} clopt__step_request;

struct clopt_optimizer {
    clopt_context *ctx;
    const clopt__optimizer_class *cls;
    char *name;
    float lr; /* Keras keeps a float learning rate in a float32 variable */
    struct clopt__schedule *schedule; /* or a schedule, evaluated at the raw iteration count */
    clopt__value base[CLOPT__B_COUNT];
    clopt__value hp[CLOPT__MAX_PARAMS];
    unsigned char hp_integer[CLOPT__MAX_PARAMS]; /* CLOPT__P_NUMBER: written as an integer */
    json_t *hp_list[CLOPT__MAX_PARAMS];          /* CLOPT__P_STRING_LIST: an array of strings
                                                  * (owned), NULL for the empty list */
    double state[4]; /* class host-side state; a class scalar (Nadam's u_product) is state[0] */
    void *class_state; /* a built class's own state (clopt__optimizer_class.on_build) */
    int built;
    clopt_kernel_params kparams; /* block shape of its plans: the context's at build (tuning.c) */
    int64_t iterations;
    size_t nvars;
    clopt_variable **vars;     /* the built list (borrowed) */
    size_t *slot_off;          /* per built variable: element offset in its group */
    int nkinds;
    clopt__slot_kind kinds[CLOPT__MAX_SLOTS + 2]; /* the pipeline's (EMA, accumulator), then the
                                                  * class's (at most CLOPT__MAX_SLOTS) */
    clopt__slot_group groups[4]; /* by dtype */
    clopt__optvar *optvars;
    size_t noptvars, capoptvars;
    size_t nbaseoptvars; /* entries made at creation (iteration, learning_rate) */
    clopt__plan plan;     /* the last apply's pairs */
    clopt__plan all_plan; /* every built variable, no gradients: EMA passes */
    int slot_base;        /* pipeline slot kinds before the class's */
    int slot_ema, slot_acc; /* their kinds, -1 if absent */
    unsigned char *no_decay; /* per built variable: excluded from weight decay */
    double *decay_real;      /* per built variable: its segment's decay real (host copy) */
    char **decay_exclude_names; /* regular expressions (Keras var_names) */
    size_t ndecay_exclude_names;
    clopt_variable **pending_no_decay; /* excluded by identity (kept across build) */
    size_t npending_no_decay;
    size_t *scratch_idx;            /* nvars entries, for apply */
    clopt_variable **scratch_grads; /* nvars entries, for apply */
    struct clopt_optimizer *prev, *next;
    clopt__optimizer_class *own_class; /* a copy of the call's class it was made from (cls) */
};

/* The optimizer a wrapper wraps, NULL for any other. */
/* A LossScaleOptimizer over replicas (src/dist; loss_scale.c). host_decided: before build, keeps
 * its steps host-decided. finite: the finite check of the prepared inner optimizer's gradients,
 * read back. current: the dynamic scale (the inner step's unscale). after: moves the step
 * counter and scale on after a step that was (or, not finite, was not) taken. */
void clopt__loss_scale_host_decided(clopt_optimizer *o);
clopt_status clopt__loss_scale_finite(clopt_optimizer *o, int *finite);
double clopt__loss_scale_current(const clopt_optimizer *o);
void clopt__loss_scale_after(clopt_optimizer *o, int finite);

static inline clopt_optimizer *clopt__wrapped(const clopt_optimizer *o) {
    return o->cls->wrapper ? o->cls->wrapper->inner(o) : NULL;
}

/* Appends an entry to Keras's variable list (its path is "<optimizer name>/<name>"). */
clopt_status clopt__optvar_add(clopt_optimizer *o, const char *name, clopt__optvar_kind kind,
                               clopt_dtype dtype, clopt_variable *var);

/* Adds the creation-time entries of Keras's variable list (iteration, learning_rate). */
clopt_status clopt__optimizer_init_optvars(clopt_optimizer *o);
/* Entry `index` of Keras's variable list as clopt_optimizer_variable counts it (a wrapper's own
 * entries, then its inner optimizer's), and in *owner the optimizer that holds it; NULL when out
 * of range. */
clopt__optvar *clopt__optimizer_entry(const clopt_optimizer *o, size_t index,
                                      clopt_optimizer **owner);
/* Checks a variable list: non-empty, no NULL, same context, no duplicates. */
clopt_status clopt__optimizer_check_vars(clopt_optimizer *o, clopt_variable *const *vars,
                                         size_t n, const char *fn);

/* regcomp (POSIX extended, no sub-matches) of a Keras name pattern; nonzero when the pattern is
 * invalid or stacks three repetition operators in a row ("a+++"): Python's re refuses those
 * ("multiple repeat"; "a+?" and "a++" it takes) and glibc's regcomp can take gigabytes on long
 * runs of them. */
int clopt__regcomp(regex_t *re, const char *pattern);

/* Keras's gradient_accumulation_steps (0: off) and the iteration count divided by it. */
static inline int64_t clopt__accumulation_steps(const clopt_optimizer *o) {
    const clopt__value *v = &o->base[CLOPT__B_GRADIENT_ACCUMULATION_STEPS];
    return v->null ? 0 : (int64_t)v->v;
}
static inline int64_t clopt__iterations(const clopt_optimizer *o) {
    int64_t s = clopt__accumulation_steps(o);
    return s ? o->iterations / s : o->iterations;
}

/* Build (optimizer.c) in two halves, for a wrapper that builds the optimizer it wraps: begin
 * checks the variables and lays out slots, the variable list and the EMA plan; end warms the
 * kernels that steps with request `req` take (NULL: plain steps) and marks it built. When
 * either fails, build_failed records a message if none was and unbuilds. */
clopt_status clopt__optimizer_build_begin(clopt_optimizer *o, clopt_variable *const *vars,
                                          size_t n);
clopt_status clopt__optimizer_build_end(clopt_optimizer *o, const clopt__step_request *req);
clopt_status clopt__optimizer_build_failed(clopt_optimizer *o, clopt_status st);
/* The context's list of optimizers, the optimizer layer's data on the context (its hooks:
 * clopt__context_layer): attach puts an optimizer on it; free_detached frees one that is on no
 * list (a wrapper's inner optimizer); forget_variable drops the optimizers' cached launch plans
 * that name `v`, which is being destroyed (its handle address may come back for another). */
clopt_status clopt__optimizer_attach(clopt_optimizer *o);
void clopt__optimizer_free_detached(clopt_optimizer *o);
void clopt__optimizers_forget_variable(clopt_context *ctx, void *head, const clopt_variable *v);
/* The name of a live optimizer (a wrapper's inner one included) built with `v`, or NULL. */
const char *clopt__optimizer_using(const clopt_context *ctx, void *head, const clopt_variable *v);
clopt_status clopt__write_decay_flags(clopt_optimizer *o);
void clopt__apply_pending_no_decay(clopt_optimizer *o);

/* Launch plans (plan.c): the plan of the pairs (idx[i], grads[i]) rebuilt only when the pattern
 * changes (partials: per-block bytes its steps need), the EMA plan over every built variable
 * (grads NULL), and their release. */
int clopt__plan_matches(const clopt__plan *p, const size_t *idx, clopt_variable *const *grads,
                        size_t n);
clopt_status clopt__plan_build(clopt_optimizer *o, clopt__plan *p, const size_t *idx,
                               clopt_variable *const *grads, size_t n, size_t partials);
clopt_status clopt__all_plan_build(clopt_optimizer *o);
void clopt__plan_free(clopt_context *ctx, clopt__plan *p);

/* apply() in two halves (apply.c): checks and the launch plan (nothing changes; an unbuilt `o`
 * is built by clopt_optimizer_build(builder): itself, or the wrapper around it), then the step's
 * stages (stages.c) for request `req` (NULL: a plain step). A wrapper runs its finite check (a
 * kernel writing 0 to flag_buf's first float when a gradient is not finite) in between; with
 * `reset` the flag is set to go first (a device-decided step needs no reset: its finishing
 * kernel sets it back). */
clopt_status clopt__apply_prepare(clopt_optimizer *o, clopt_optimizer *builder,
                                  clopt_variable *const *grads, clopt_variable *const *vars,
                                  size_t n);
clopt_status clopt__apply_run(clopt_optimizer *o, const clopt__step_request *req);
/* A distributed step (src/dist), the stages split at the reduce seam. run_local: the stages
 * before it on this replica's prepared plan, writing each plan launch i's processed gradients
 * into out[i] (a buffer laid out like that launch's gradient block); on a step that only
 * accumulates it runs the whole step and sets *done. run_shared: the update, EMA and count,
 * reading launch i's gradients from reduced[i]. req: as clopt__apply_run's (its unscale only). */
clopt_status clopt__apply_run_local(clopt_optimizer *o, const clopt__step_request *req,
                                    void *const *out, int *done);
clopt_status clopt__apply_run_shared(clopt_optimizer *o, void *const *reduced);
clopt_status clopt__run_finite_check(clopt_optimizer *o, void *flag_buf, int reset);

/* stages.c: the learning rate at the current raw step (float, or the schedule); the kernels a
 * step takes, compiled and warmed at build; the partials its plans need; and, for device-decided
 * steps, the per-step scalars for dtype d (c0..c7, q0..q3 as kernels take them) and EMA's
 * momentum and overwrite beat at raw count it. */
double clopt__learning_rate(const clopt_optimizer *o);
clopt_status clopt__warm_kernels(clopt_optimizer *o, const clopt__step_request *req);
size_t clopt__partials_bytes(const clopt_optimizer *o);
void clopt__step_scalars(clopt_optimizer *o, clopt_dtype d, const clopt__step_info *step,
                         double out[CLOPT__MAX_SCALARS + 4]);
double clopt__ema_momentum_at(const clopt_optimizer *o, int64_t it);
int clopt__ema_overwrite_at(const clopt_optimizer *o, int64_t it);

/* Configs (config.c): an optimizer from a parsed serialize() object (not on the context's list),
 * and one config key read into an optimizer. */
clopt_status clopt__optimizer_from_json(clopt_context *ctx, const json_t *root,
                                        clopt_optimizer **out);
clopt_status clopt__config_key(clopt_optimizer *o, const char *key, const json_t *v);

/* Keras computes an optimizer's per-step scalars (bias corrections, Nadam's momentum schedule)
 * in the variable's dtype: float32 arithmetic for float32 variables (and for float16/bfloat16,
 * which clopt computes in float32), double for float64. clopt__in_dtype rounds x as that dtype
 * does; clopt__pow_dtype is b^t computed so. */
static inline double clopt__in_dtype(double x, clopt_dtype d) {
    return d == CLOPT_FLOAT64 ? x : (double)(float)x;
}
static inline double clopt__pow_dtype(double b, double t, clopt_dtype d) {
    return d == CLOPT_FLOAT64 ? pow(b, t) : (double)powf((float)b, (float)t);
}

/* Value of class parameter `i` / base parameter `i`. */
static inline double clopt__hp(const clopt_optimizer *o, int i) { return o->hp[i].v; }

#endif
