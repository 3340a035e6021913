/* Keras learning-rate schedules (keras.optimizers.schedules): parsing a serialized schedule,
 * evaluating it at an optimizer step and writing it back. Semantics doc, section 4. */
#ifndef CLOPT_SCHEDULE_INTERNAL_H
#define CLOPT_SCHEDULE_INTERNAL_H

#include <jansson.h>
#include <stdint.h>
#include "clopt/status.h"

typedef struct clopt_context clopt_context;
typedef struct clopt__schedule clopt__schedule;

/* Parses a serialized Keras schedule: {"module": "keras.optimizers.schedules", "class_name": ...,
 * "config": {...}, "registered_name": null} or the bare {"class_name", "config"}. Class names:
 * ExponentialDecay, PiecewiseConstantDecay, PolynomialDecay, InverseTimeDecay, CosineDecay,
 * CosineDecayRestarts (exact, or matched case-insensitively). Missing optional keys take Keras's
 * defaults. Errors (message on ctx, naming the class and the key):
 *   missing required key, wrong JSON type -> CLOPT_ERR_BAD_TYPE
 *   unknown class                         -> CLOPT_ERR_UNKNOWN_SCHEDULE
 *   unknown config key                    -> CLOPT_ERR_UNKNOWN_KEY
 *   decay_steps <= 0, first_decay_steps <= 0, PiecewiseConstantDecay lengths -> CLOPT_ERR_BAD_VALUE
 *   a value that makes the learning rate NaN or inf (a number beyond float32, t_mul <= 0, a
 *   negative decay_rate or power where that gives NaN or inf)  -> CLOPT_ERR_BAD_VALUE
 * On success *out owns a new schedule (free with clopt__schedule_free). */
clopt_status clopt__schedule_from_json(clopt_context *ctx, const json_t *obj, clopt__schedule **out);

/* The learning rate at raw step `step` (the optimizer's raw iteration count), computed in float32
 * as Keras does for a Python-float initial_learning_rate; the float32 result widened to double. */
double clopt__schedule_value(const clopt__schedule *s, int64_t step);

/* The Keras serialize() form: {"module": "keras.optimizers.schedules", "class_name": ...,
 * "config": {... in get_config order ...}, "registered_name": null}. New reference; NULL when out
 * of memory. */
json_t *clopt__schedule_to_json(const clopt__schedule *s);

/* The Keras class name ("ExponentialDecay", ...). */
const char *clopt__schedule_class_name(const clopt__schedule *s);

void clopt__schedule_free(clopt__schedule *s); /* NULL ok */

#endif
