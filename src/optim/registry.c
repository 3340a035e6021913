/* The optimizer classes clopt knows, by Keras class name. */
#include "optim_internal.h"

extern const clopt__optimizer_class clopt__sgd_class;
extern const clopt__optimizer_class clopt__adam_class;

const clopt__optimizer_class *const clopt__optimizer_classes[] = {
    &clopt__sgd_class,
    &clopt__adam_class,
    NULL,
};
