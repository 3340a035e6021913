/* The optimizer classes clopt knows, by Keras class name. */
#include "optim_internal.h"

extern const clopt__optimizer_class clopt__sgd_class;
extern const clopt__optimizer_class clopt__adam_class;
extern const clopt__optimizer_class clopt__loss_scale_class;
extern const clopt__optimizer_class clopt__rmsprop_class;
extern const clopt__optimizer_class clopt__adagrad_class;
extern const clopt__optimizer_class clopt__adadelta_class;
extern const clopt__optimizer_class clopt__adamax_class;
extern const clopt__optimizer_class clopt__adamw_class;
extern const clopt__optimizer_class clopt__nadam_class;
extern const clopt__optimizer_class clopt__ftrl_class;
extern const clopt__optimizer_class clopt__lion_class;
/* Not in Keras's optimizers.get lookup (Keras cannot deserialize it); clopt resolves it. */
extern const clopt__optimizer_class clopt__lamb_class;
extern const clopt__optimizer_class clopt__adafactor_class;
extern const clopt__optimizer_class clopt__schedule_free_adamw_class;
extern const clopt__optimizer_class clopt__muon_class;

const clopt__optimizer_class *const clopt__optimizer_classes[] = {
    &clopt__sgd_class,
    &clopt__adam_class,
    &clopt__loss_scale_class,
    &clopt__rmsprop_class,
    &clopt__adagrad_class,
    &clopt__adadelta_class,
    &clopt__adamax_class,
    &clopt__adamw_class,
    &clopt__nadam_class,
    &clopt__ftrl_class,
    &clopt__lion_class,
    &clopt__lamb_class,
    &clopt__adafactor_class,
    &clopt__schedule_free_adamw_class,
    &clopt__muon_class,
    NULL,
};
