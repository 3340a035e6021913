/* `clopt tune --gemm`: runs CLBlast's own tuners (clblast-utils) for a device and the shape of
 * Muon's Newton-Schulz products, and stores the winners in the tuning database, where the
 * library finds them (src/core/tuning_gemm.c) and hands them to CLBlast. */
#ifndef CLOPT_TUNE_GEMM_H
#define CLOPT_TUNE_GEMM_H

#include <stdio.h>
#include "clopt/context.h"

/* Whether the arguments ask for the GEMM tuners (--gemm among them). */
int tune_gemm_wanted(int argc, char **argv);
/* `clopt tune --gemm ...`: parses its own arguments; the exit status. */
int tune_gemm_main(int argc, char **argv);
/* The help's lines for --gemm. */
void tune_gemm_help(FILE *out);
/* `clopt tune --show`: the GEMM parameters in force and their entry. */
void tune_gemm_show(clopt_context *ctx);

#endif
