/* What the optimizers must forget when the user destroys a variable, and whether one still uses
 * it (the optimizer layer's context hooks, optimizer.c). A launch plan caches the gradient
 * handles of the last apply with their arena offsets; a variable created after another was
 * destroyed may get the same handle address at another offset, so a plan naming a destroyed
 * handle is dropped and the next apply builds a fresh one. */
#include "optim_internal.h"

void clopt__optimizers_forget_variable(clopt_context *ctx, void *head,
                                       const clopt_variable *v) {
    (void)ctx;
    for (clopt_optimizer *top = head; top; top = top->next)
        for (clopt_optimizer *o = top; o; o = clopt__wrapped(o)) { /* a wrapper's inner too */
            clopt__plan *p = &o->plan;
            for (size_t i = 0; p->grads && i < p->n; i++)
                if (p->grads[i] == v) {
                    p->n = 0; /* no valid plan: the next apply rebuilds */
                    break;
                }
        }
}

const char *clopt__optimizer_using(const clopt_context *ctx, void *head,
                                   const clopt_variable *v) {
    (void)ctx;
    for (const clopt_optimizer *top = head; top; top = top->next)
        for (const clopt_optimizer *o = top; o; o = clopt__wrapped(o))
            for (size_t i = 0; i < o->nvars; i++)
                if (o->vars[i] == v) return top->name;
    return NULL;
}
