/* Writes the valid part of the seed corpora (tests/fuzz/gen_corpus.py adds the corrupt ones):
 *   DIR/config/<name>.json: the get_config text of a range of configs (every optimizer class,
 *     every schedule class, LossScaleOptimizer, base options), so that the seeds are exactly what
 *     clopt itself writes;
 *   DIR/safetensors/<setup>.safetensors: a checkpoint of each setup of fuzz_util.h after one
 *     step, as clopt_checkpoint_save / clopt_optimizer_save write it;
 *   DIR/h5/<setup>.weights.h5: with libhdf5, two of them as clopt_optimizer_save_h5 writes them.
 * Usage: fuzz_make_seeds DIR (the subdirectories must exist). */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include "fuzz_util.h"

static const struct {
    const char *name, *json;
} configs[] = {
    {"sgd", "{\"class_name\": \"SGD\"}"},
    {"sgd_momentum",
     "{\"class_name\": \"SGD\", \"config\": {\"momentum\": 0.9, \"nesterov\": true}}"},
    {"adam", "{\"class_name\": \"Adam\"}"},
    {"adam_amsgrad_clip",
     "{\"class_name\": \"Adam\", \"config\": {\"amsgrad\": true, \"clipnorm\": 1.0}}"},
    {"adamw_ema",
     "{\"class_name\": \"AdamW\", \"config\": {\"use_ema\": true, "
     "\"ema_overwrite_frequency\": 2}}"},
    {"rmsprop_centered",
     "{\"class_name\": \"RMSprop\", \"config\": {\"centered\": true, \"momentum\": 0.5}}"},
    {"adagrad", "{\"class_name\": \"Adagrad\"}"},
    {"adadelta_accum",
     "{\"class_name\": \"Adadelta\", \"config\": {\"gradient_accumulation_steps\": 2}}"},
    {"adamax", "{\"class_name\": \"Adamax\", \"config\": {\"global_clipnorm\": 0.5}}"},
    {"nadam", "{\"class_name\": \"Nadam\", \"config\": {\"weight_decay\": 0.01}}"},
    {"ftrl", "{\"class_name\": \"Ftrl\", \"config\": {\"l1_regularization_strength\": 0.1}}"},
    {"lion", "{\"class_name\": \"Lion\", \"config\": {\"clipvalue\": 0.5}}"},
    {"lamb", "{\"class_name\": \"Lamb\"}"},
    {"adafactor", "{\"class_name\": \"Adafactor\"}"},
    {"schedule_free_adamw", "{\"class_name\": \"ScheduleFreeAdamW\"}"},
    {"muon", "{\"class_name\": \"Muon\"}"},
    {"loss_scale",
     "{\"class_name\": \"LossScaleOptimizer\", "
     "\"config\": {\"inner_optimizer\": {\"class_name\": \"SGD\"}, "
     "\"dynamic_growth_steps\": 3}}"},
    {"sched_exponential",
     "{\"class_name\": \"Adam\", "
     "\"config\": {\"learning_rate\": {\"class_name\": \"ExponentialDecay\", "
     "\"config\": {\"initial_learning_rate\": 0.1, \"decay_steps\": 3, \"decay_rate\": 0.9, "
     "\"staircase\": true}}}}"},
    {"sched_piecewise",
     "{\"class_name\": \"SGD\", "
     "\"config\": {\"learning_rate\": {\"class_name\": \"PiecewiseConstantDecay\", "
     "\"config\": {\"boundaries\": [1, 2.5], \"values\": [0.1, 0.01, 0.001]}}}}"},
    {"sched_polynomial",
     "{\"class_name\": \"SGD\", "
     "\"config\": {\"learning_rate\": {\"class_name\": \"PolynomialDecay\", "
     "\"config\": {\"initial_learning_rate\": 0.1, \"decay_steps\": 2, \"power\": 0.5, "
     "\"cycle\": true}}}}"},
    {"sched_inverse_time",
     "{\"class_name\": \"RMSprop\", "
     "\"config\": {\"learning_rate\": {\"class_name\": \"InverseTimeDecay\", "
     "\"config\": {\"initial_learning_rate\": 0.1, \"decay_steps\": 1.0, "
     "\"decay_rate\": 0.5}}}}"},
    {"sched_cosine_warmup",
     "{\"class_name\": \"AdamW\", "
     "\"config\": {\"learning_rate\": {\"class_name\": \"CosineDecay\", "
     "\"config\": {\"initial_learning_rate\": 0.0, \"decay_steps\": 4, \"alpha\": 0.1, "
     "\"warmup_target\": 0.1, \"warmup_steps\": 1}}}}"},
    {"sched_cosine_restarts",
     "{\"class_name\": \"Lion\", "
     "\"config\": {\"learning_rate\": {\"class_name\": \"CosineDecayRestarts\", "
     "\"config\": {\"initial_learning_rate\": 0.1, \"first_decay_steps\": 2, \"t_mul\": 1.5, "
     "\"m_mul\": 0.9}}}}"},
};

static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    char path[4096];
    clopt_context *ctx = fuzz_context();
    for (size_t i = 0; i < sizeof configs / sizeof *configs; i++) {
        clopt_optimizer *o = NULL;
        char *text = NULL;
        clopt_status st = clopt_optimizer_from_config(ctx, configs[i].json, &o);
        if (st == CLOPT_OK) st = clopt_optimizer_get_config(o, &text);
        FUZZ_CHECK(st == CLOPT_OK, "%s: %s: %s", configs[i].name, clopt_status_name(st),
                   clopt_context_last_error(ctx));
        snprintf(path, sizeof path, "%s/config/%s.json", argv[1], configs[i].name);
        if (write_file(path, text) != 0) return 1;
        clopt_free(text);
        clopt_optimizer_destroy(o);
    }
    for (int k = 0; k < FUZZ_NSETUPS; k++) {
        fuzz_setup su;
        fuzz_setup_make(ctx, &fuzz_setups[k], 1, &su);
        snprintf(path, sizeof path, "%s/safetensors/%s.safetensors", argv[1], su.spec->label);
        clopt_status st = su.spec->with_model
                              ? clopt_checkpoint_save(su.opt, su.vars, (size_t)su.spec->nvars, path)
                              : clopt_optimizer_save(su.opt, path);
        FUZZ_CHECK(st == CLOPT_OK, "%s: %s: %s", su.spec->label, clopt_status_name(st),
                   clopt_context_last_error(ctx));
        if (su.opt && clopt_checkpoint_has_h5() && (k == 0 || k == 2)) {
            snprintf(path, sizeof path, "%s/h5/%s.weights.h5", argv[1], su.spec->label);
            st = clopt_optimizer_save_h5(su.opt, path);
            FUZZ_CHECK(st == CLOPT_OK, "%s: %s: %s", su.spec->label, clopt_status_name(st),
                       clopt_context_last_error(ctx));
        }
    }
    clopt_context_destroy(ctx);
    return 0;
}
