/* The optimizer classes clopt knows, by Keras class name: the table is made from the one list
 * of built-in classes, CLOPT_BUILTIN_CLASSES (cl/scalars.cl). */
#include "optim_internal.h"

#define CLOPT__DECLARE_CLASS(name) extern const clopt__optimizer_class clopt__##name##_class;
CLOPT_BUILTIN_CLASSES(CLOPT__DECLARE_CLASS)
#undef CLOPT__DECLARE_CLASS

#define CLOPT__CLASS_ENTRY(name) &clopt__##name##_class,
const clopt__optimizer_class *const clopt__optimizer_classes[] = {
    CLOPT_BUILTIN_CLASSES(CLOPT__CLASS_ENTRY) NULL,
};
#undef CLOPT__CLASS_ENTRY
