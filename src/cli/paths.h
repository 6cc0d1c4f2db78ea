/*
 * The commands' check that they will not write over their own files: no two
 * outputs are one file, and no output is an input. Two different strings
 * ("o.npy", "./o.npy", a symbolic link, a hard link) may name one file, so
 * the check compares files, not strings.
 */
#ifndef TA_CLI_PATHS_H
#define TA_CLI_PATHS_H

#include "cli.h"

/* A file a command was given: the flag that named it, and the path (NULL
 * when the flag was left out). */
typedef struct ta_cli_path {
    const char *flag;
    const char *path;
} ta_cli_path;

/* Appends the input files of the shared mask flags (--alibi, --bias,
 * --mask, --sinks, --cu-seqlens-q, --cu-seqlens-k) to list; returns how
 * many (6: the absent ones with a NULL path). */
int ta_cli_problem_inputs(const ta_cli_problem *p, ta_cli_path *list);

/* 1 if a and b name the same file: the same device and inode when both
 * exist, else the same name in the same directory. */
int ta_cli_same_file(const char *a, const char *b);

/* Prints "cmd: --out and --lse name the same file (...)" or "cmd: --out
 * names the input file of --q (...)" and returns -1 on the first clash, 0
 * when there is none. A stream (a character device such as /dev/null, or a
 * FIFO) may be named by several outputs: it keeps nothing to overwrite. */
int ta_cli_check_paths(const char *cmd, const ta_cli_path *outputs, int n_outputs,
                       const ta_cli_path *inputs, int n_inputs);

#endif /* TA_CLI_PATHS_H */
