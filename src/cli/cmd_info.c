/*
 * tileattn info: the machine as the library sees it and the plan it would
 * make for a problem given by the shape flags. No tensor is read: the
 * optional mask files are loaded only to check them against the shapes and
 * to let the plan see which options are on.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "flags.h"
#include "io.h"

/* describe_machine and describe_plan truncate to this; a page of text. */
#define DESCRIPTION_BYTES 16384

static void print_info_help(FILE *out) {
    fputs("Usage: tileattn info [shape flags] [mask flags]\n"
          "\n"
          "Prints the machine (caches, cores, instruction set and why) and the plan the\n"
          "library would use for the problem: tile sizes, microkernels, work split.\n"
          "With --cu-seqlens-q/k, the batch and the longest sequences come from the files.\n"
          "\n",
          out);
    ta_cli_print_problem_flags(out, 1);
}

int ta_cmd_info(int argc, char **argv) {
    const char *cmd = "info";
    ta_cli_problem problem;
    ta_cli_problem_init(&problem);
    for (int i = 1; i < argc; i++) {
        if (ta_cli_is_help(argv[i])) {
            print_info_help(stdout);
            return TA_EXIT_OK;
        }
    }
    for (int i = 1; i < argc;) {
        const char *arg = argv[i];
        int r = ta_cli_parse_problem_flag(argc, argv, &i, &problem);
        if (r < 0) return TA_EXIT_USAGE;
        if (r == 0) {
            ta_cli_error(cmd, "unknown argument '%s' (try 'tileattn info --help')", arg);
            return TA_EXIT_USAGE;
        }
    }

    int status = TA_EXIT_USAGE;
    ta_cli_inputs in;
    memset(&in, 0, sizeof in);
    if (ta_cli_load_cu_seqlens(cmd, &problem, &in) != 0) goto done;
    ta_cli_dims *d = &in.dims;
    if (!d->varlen) {
        d->batch = problem.batch;
        d->seqlen_q = problem.seqlen_q;
        d->seqlen_k = problem.seqlen_k;
    }
    d->heads_q = problem.heads_q;
    d->heads_kv = problem.heads_kv;
    d->head_dim = problem.head_dim;
    d->head_dim_v = problem.head_dim_v;
    in.dtype = problem.dtype;
    if (ta_cli_load_extras(cmd, &problem, &in) != 0) goto done;
    tileattn_forward_args args;
    ta_cli_fill_args(&problem, &in, &args);

    static char text[DESCRIPTION_BYTES];
    printf("instruction set: %s\n\n", tileattn_isa_name());
    tileattn_status s = tileattn_describe_machine(text, sizeof text);
    if (s != TILEATTN_OK) {
        ta_cli_error(cmd, "describing the machine: %s", tileattn_status_string(s));
        goto done;
    }
    fputs(text, stdout);
    if (text[0] != '\0' && text[strlen(text) - 1] != '\n') putchar('\n');

    putchar('\n');
    s = tileattn_describe_plan(&args, text, sizeof text);
    if (s != TILEATTN_OK) {
        ta_cli_error(cmd, "no plan for this problem: %s", tileattn_status_string(s));
        goto done;
    }
    fputs(text, stdout);
    if (text[0] != '\0' && text[strlen(text) - 1] != '\n') putchar('\n');
    status = TA_EXIT_OK;

done:
    ta_cli_inputs_free(&in);
    return status;
}
