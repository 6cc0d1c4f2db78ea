/*
 * Helpers for the CLI tests: a fresh temporary directory per test, whole
 * files in and out, and spawning the tileattn binary with its output
 * captured.
 */
#ifndef TA_TEST_CLI_UTIL_H
#define TA_TEST_CLI_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Creates a fresh directory under $TMPDIR (or /tmp) and returns its path
 * (static storage); NULL on failure. */
const char *tu_make_temp_dir(void);

/* Removes the directory made by tu_make_temp_dir and everything in it. */
void tu_remove_temp_dir(void);

/* dir/name in a static ring of buffers (valid for the next 512 calls). */
const char *tu_path(const char *name);

/* Writes len bytes to path (not atomically: tests want exact bytes). 0/-1. */
int tu_write_file(const char *path, const void *bytes, size_t len);

/* Reads a whole file into a malloc'ed buffer (NUL-terminated); NULL if it
 * cannot be read. */
char *tu_read_file(const char *path, size_t *len);

/* 1 if path exists. */
int tu_exists(const char *path);

/* Number of entries in the temp directory, not counting . and .. */
int tu_count_entries(void);

/* 1 if some entry of the temp directory contains ".tmp." (a temporary
 * file) or ".bak." (a commit's backup link) in its name. */
int tu_has_temp_leftovers(void);

/* Runs $TILEATTN_CLI with the NULL-terminated arguments (without argv[0]),
 * capturing stdout and stderr into malloc'ed strings (free them; either
 * pointer may be NULL to discard). Returns the exit status, or -1 if the
 * process could not be run or did not exit normally. */
int tu_run_cli(char **out, char **err, const char *const *args);

/* An argument list for tu_run_args, built piece by piece (at most 63). */
typedef struct tu_arglist {
    const char *v[64];
    int n;
} tu_arglist;

/* Appends strings up to a NULL; more than 63 fails the test. */
void tu_add(tu_arglist *a, ...);

/* Appends a NULL-terminated list (NULL: nothing). */
void tu_add_list(tu_arglist *a, const char *const *list);

/* tu_run_cli on an argument list. */
int tu_run_args(const tu_arglist *a, char **out, char **err);

/* Fails the test unless the file holds exactly len bytes equal to bytes. */
void tu_expect_file_equals(const char *path, const char *bytes, size_t len);

/* A deterministic pseudo-random float in [lo, hi). */
float tu_random_float(uint64_t *state, float lo, float hi);

/* Number of '\n' in s. */
int tu_count_lines(const char *s);

#endif /* TA_TEST_CLI_UTIL_H */
