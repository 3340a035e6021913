/* clopt: the command-line tool. Dispatches to one command per file (cmd_*.c). */
#include <stdio.h>
#include <string.h>
#include "cli_internal.h"

static const struct command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
    void (*help)(FILE *out);
} commands[] = {
    {"devices", "list the OpenCL devices and the spec of each", cli_cmd_devices,
     cli_help_devices},
    {"replay", "run an optimizer over recorded gradients (docs/replay.md)", cli_cmd_replay,
     cli_help_replay},
    {"inspect", "list a checkpoint's tensors, checksums and config", cli_cmd_inspect,
     cli_help_inspect},
    {"bench", "time optimizer steps against hand-written C loops", cli_cmd_bench,
     cli_help_bench},
    {"tune", "search kernel parameters for a device; write the tuning database", cli_cmd_tune,
     cli_help_tune},
};
#define NCOMMANDS (sizeof commands / sizeof *commands)

int cli_is_help(const char *arg) { return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0; }

static void usage(FILE *out) {
    fprintf(out,
            "usage: clopt [--help] [--version] COMMAND [ARGS]\n"
            "\n"
            "clopt %s: the Keras optimizer API on OpenCL.\n"
            "\n"
            "commands:\n",
            clopt_version_string());
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "  %-10s %s\n", "help", "show the help of a command: clopt help replay");
    fputs("\n"
          "options:\n"
          "  -h, --help     show this help\n"
          "  -V, --version  show the tool's and the library's version\n"
          "\n"
          "environment:\n"
          "  CLOPT_DEVICE     the default device spec (see `clopt devices`)\n"
          "  CLOPT_CACHE_DIR  where compiled kernels are cached\n"
          "\n"
          "Run 'clopt COMMAND --help' for a command's options.\n",
          out);
}

static const struct command *find(const char *name) {
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

static int help_command(int argc, char **argv) {
    if (argc < 2 || cli_is_help(argv[1])) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    const struct command *c = find(argv[1]);
    if (!c) {
        fprintf(stderr, "clopt help: unknown command '%s'\n\n", argv[1]);
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    c->help(stdout);
    return CLI_EXIT_OK;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (cli_is_help(cmd)) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
        printf("clopt %s (library %s)\n", CLOPT_VERSION_STRING, clopt_version_string());
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "help") == 0) return help_command(argc - 1, argv + 1);
    const struct command *c = find(cmd);
    if (!c) {
        fprintf(stderr, "clopt: unknown %s '%s'\n\n", cmd[0] == '-' ? "option" : "command",
                cmd);
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    return c->run(argc - 1, argv + 1);
}
