/*
 * tileattn: the command-line front end. Each subcommand lives in its own
 * file (cmd_*.c) and receives argv starting at its own name.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmd_decode.h"
#include "cmd_grad.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"run", ta_cmd_run, "attention on .npy tensors, writing O (and LSE) as .npy"},
    {"check", ta_cmd_check, "compare an O (and LSE) computed elsewhere with the reference"},
    {"bench", ta_cmd_bench, "time the library against baselines"},
    {"info", ta_cmd_info, "describe this machine and the plan for a problem"},
    {"grad", ta_cmd_grad, "the backward pass on .npy tensors, writing dQ, dK, dV"},
    {"check-grad", ta_cmd_check_grad, "compare dQ, dK, dV computed elsewhere with the reference"},
    {"decode", ta_cmd_decode, "decoding over a KV cache (contiguous or paged) in .npy files"},
    {"demo", ta_cmd_demo, "a small worked example"},
};

static void print_usage(FILE *out) {
    fputs("Usage: tileattn <command> [flags]   (exact attention on CPUs)\n\nCommands:\n", out);
    for (size_t c = 0; c < sizeof commands / sizeof commands[0]; c++)
        fprintf(out, "  %-10s %s\n", commands[c].name, commands[c].summary);
    fputs("\n'tileattn <command> --help' lists a command's flags; 'tileattn --version' the\n"
          "version. Exit status: 0 success, 1 check found an error above tolerance,\n"
          "2 bad usage or bad input.\n",
          out);
}

static const command *find_command(const char *name) {
    for (size_t c = 0; c < sizeof commands / sizeof commands[0]; c++)
        if (strcmp(commands[c].name, name) == 0) return &commands[c];
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_usage(stderr);
        return TA_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        if (strcmp(name, "help") == 0 && argc >= 3) {
            /* "tileattn help run" is "tileattn run --help". */
            const command *c = find_command(argv[2]);
            if (c == NULL) {
                fprintf(stderr, "tileattn: unknown command '%s' (try 'tileattn --help')\n",
                        argv[2]);
                return TA_EXIT_USAGE;
            }
            char help_flag[] = "--help";
            char *help_argv[] = {argv[2], help_flag, NULL};
            return c->run(2, help_argv);
        }
        print_usage(stdout);
        return TA_EXIT_OK;
    }
    if (strcmp(name, "--version") == 0) {
        printf("tileattn %d.%d.%d\n", TILEATTN_VERSION_MAJOR, TILEATTN_VERSION_MINOR,
               TILEATTN_VERSION_PATCH);
        return TA_EXIT_OK;
    }
    const command *c = find_command(name);
    if (c == NULL) {
        fprintf(stderr, "tileattn: unknown %s '%s' (try 'tileattn --help')\n",
                name[0] == '-' ? "option" : "command", name);
        return TA_EXIT_USAGE;
    }
    return c->run(argc - 1, argv + 1);
}
