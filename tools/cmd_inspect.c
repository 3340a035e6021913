/* `clopt inspect FILE...`: every tensor of a safetensors checkpoint (name, dtype, shape, bytes,
 * FNV-1a 64 checksum of its bytes, the Keras path of optimizer variables), its metadata and its
 * optimizer config; or every dataset of a Keras .weights.h5 file (when built with libhdf5). The
 * reading and validation are the library's (src/io), so a safetensors file this command accepts
 * is one clopt_optimizer_load can read. */
#include <stdio.h>
#include <string.h>
#include "cli_internal.h"
#include "tool_internal.h"

void cli_help_inspect(FILE *out) {
    fputs("usage: clopt inspect FILE...\n"
          "\n"
          "Prints a summary of each safetensors checkpoint (clopt_optimizer_save,\n"
          "clopt_checkpoint_save, or any safetensors file): every tensor with its dtype, shape,\n"
          "size in bytes, the 64-bit FNV-1a checksum of its bytes, its CRC-32C as the file\n"
          "records it (clopt writes one per tensor; '-' when the file has none) and, for\n"
          "optimizer variables, their Keras path; the metadata, and the optimizer config. The\n"
          "whole file is validated first, recorded checksums included, as clopt_optimizer_load\n"
          "does. For a Keras .weights.h5 file (HDF5;\n"
          "needs a clopt built with libhdf5) it prints every dataset the same way and the\n"
          "groups' name attributes.\n"
          "\n"
          "options:\n"
          "  -h, --help  show this help\n"
          "\n"
          "Exit status: 0; 1 if a file cannot be read or is not a valid safetensors file;\n"
          "2 for bad usage.\n",
          out);
}

int cli_cmd_inspect(int argc, char **argv) {
    int nfiles = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            cli_help_inspect(stdout);
            return CLI_EXIT_OK;
        }
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "clopt inspect: unknown option '%s'\n", argv[i]);
            return CLI_EXIT_USAGE;
        }
        nfiles++;
    }
    if (nfiles == 0) {
        fprintf(stderr, "clopt inspect: no file given\n");
        cli_help_inspect(stderr);
        return CLI_EXIT_USAGE;
    }
    int rc = CLI_EXIT_OK, first = 1;
    for (int i = 1; i < argc; i++) {
        if (!first) fputc('\n', stdout);
        first = 0;
        char err[1024];
        clopt_status st = clopt__is_hdf5_file(argv[i])
                              ? clopt__inspect_h5(argv[i], stdout, err, sizeof err)
                              : clopt__inspect_file(argv[i], stdout, err, sizeof err);
        if (st != CLOPT_OK) {
            fprintf(stderr, "clopt inspect: %s (%s)\n", err, clopt_status_name(st));
            rc = CLI_EXIT_FAIL;
        }
    }
    fflush(stdout);
    return rc;
}
