/*
 * Strict parsing of flag values, shared by the subcommands beside the
 * problem flags of cli.h. Every function prints its own one-line message
 * on failure.
 */
#ifndef TA_CLI_FLAGS_H
#define TA_CLI_FLAGS_H

#include <stdint.h>
#include <stdio.h>

/* Parses a whole decimal integer in [min, max]. 0 or -1. */
int ta_cli_parse_int64(const char *flag, const char *text, int64_t min, int64_t max,
                       int64_t *value);

/* Parses a whole finite float32 >= min (no NaN, no infinity, no
 * underflow). 0 or -1. */
int ta_cli_parse_float(const char *flag, const char *text, float min, float *value);

/* If argv[*i] is `flag` ("--flag value" or "--flag=value"), stores its file
 * name in *path and advances *i past it: returns 1, or -1 on a missing
 * value; returns 0 if argv[*i] is another flag. */
int ta_cli_path_flag(int argc, char **argv, int *i, const char *flag, const char **path);

/* The same for any text (a name from a fixed list, checked by the caller). */
int ta_cli_text_flag(int argc, char **argv, int *i, const char *flag, const char **text);

/* The same for a finite float >= 0. */
int ta_cli_float_flag(int argc, char **argv, int *i, const char *flag, float *value);

/* The same for an integer in [min, max]. */
int ta_cli_int64_flag(int argc, char **argv, int *i, const char *flag, int64_t min, int64_t max,
                      int64_t *value);

/* The same for --window L,R (two integers >= -1). */
int ta_cli_window_flag(int argc, char **argv, int *i, int64_t *left, int64_t *right);

/* Is arg one of the shape flags (--batch ... --dtype), which only bench and
 * info take? */
int ta_cli_is_shape_flag(const char *arg);

/* Is arg "--help" or "-h"? */
int ta_cli_is_help(const char *arg);

/* Prints the help lines of the shared flags: the shape flags if
 * with_shapes, then the mask flags. */
void ta_cli_print_problem_flags(FILE *out, int with_shapes);

#endif /* TA_CLI_FLAGS_H */
