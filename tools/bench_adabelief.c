/* `clopt bench`'s registered class: AdaBelief as examples/adabelief.h defines it (the C loop
 * c_adabelief in bench_loops.h computes its scalars with the same helpers), so the bench times a
 * program's class against a C loop as it times the built-in ones. */
#include "bench_internal.h"

int bench_register_adabelief(void) {
    if (clopt_optimizer_class_registered("AdaBelief")) return 0;
    const clopt_optimizer_class_desc desc = adabelief_class();
    return clopt_optimizer_class_register(&desc) == CLOPT_OK ? 0 : -1;
}
