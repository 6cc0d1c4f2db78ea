/*
 * Test helpers: see util.h. The temporary directory has two parts: work/,
 * where a test's files live (and which the leftover checks scan), and io/,
 * where a spawned command's stdout and stderr are captured.
 */
#define _POSIX_C_SOURCE 200809L

#include "util.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static char root_dir[4096];
static char work_dir[4200];
static char io_dir[4200];

const char *tu_make_temp_dir(void) {
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0') tmp = "/tmp";
    snprintf(root_dir, sizeof root_dir, "%s/tileattn-cli-test.XXXXXX", tmp);
    if (mkdtemp(root_dir) == NULL) return NULL;
    snprintf(work_dir, sizeof work_dir, "%s/work", root_dir);
    snprintf(io_dir, sizeof io_dir, "%s/io", root_dir);
    if (mkdir(work_dir, 0700) != 0 || mkdir(io_dir, 0700) != 0) return NULL;
    return work_dir;
}

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL) return;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        char path[8400];
        snprintf(path, sizeof path, "%s/%s", dir, entry->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(path);
        else
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

void tu_remove_temp_dir(void) {
    if (root_dir[0] != '\0') remove_tree(root_dir);
    root_dir[0] = '\0';
}

const char *tu_path(const char *name) {
    /* Tests hold many paths at once (tables of argument lists). */
    static char ring[512][4400];
    static int next;
    char *buf = ring[next++ % 512];
    snprintf(buf, sizeof ring[0], "%s/%s", work_dir, name);
    return buf;
}

int tu_write_file(const char *path, const void *bytes, size_t len) {
    FILE *f = fopen(path, "wb");
    if (f == NULL) return -1;
    size_t written = len > 0 ? fwrite(bytes, 1, len, f) : 0;
    if (fclose(f) != 0 || written != len) return -1;
    return 0;
}

char *tu_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    while (buf != NULL) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        cap *= 2;
        char *bigger = realloc(buf, cap + 1);
        if (bigger == NULL) {
            free(buf);
            buf = NULL;
        }
        buf = bigger;
    }
    fclose(f);
    if (buf == NULL) return NULL;
    buf[n] = '\0';
    if (len != NULL) *len = n;
    return buf;
}

int tu_exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

static int scan_work_dir(int *leftovers) {
    DIR *d = opendir(work_dir);
    if (d == NULL) return -1;
    int count = 0;
    *leftovers = 0;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        count++;
        if (strstr(entry->d_name, ".tmp.") != NULL || strstr(entry->d_name, ".bak.") != NULL)
            *leftovers = 1;
    }
    closedir(d);
    return count;
}

int tu_count_entries(void) {
    int leftovers;
    return scan_work_dir(&leftovers);
}

int tu_has_temp_leftovers(void) {
    int leftovers = 0;
    scan_work_dir(&leftovers);
    return leftovers;
}

int tu_run_cli(char **out, char **err, const char *const *args) {
    const char *exe = getenv("TILEATTN_CLI");
    if (exe == NULL || exe[0] == '\0') {
        fprintf(stderr, "TILEATTN_CLI is not set\n");
        return -1;
    }
    static int serial;
    char out_path[4400], err_path[4400];
    snprintf(out_path, sizeof out_path, "%s/stdout.%d", io_dir, serial);
    snprintf(err_path, sizeof err_path, "%s/stderr.%d", io_dir, serial);
    serial++;

    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)exe;
    for (int i = 0; args[i] != NULL && argc < 63; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&actions, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid;
    int spawn_status = posix_spawn(&pid, exe, &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    if (spawn_status != 0) {
        fprintf(stderr, "cannot spawn %s: %s\n", exe, strerror(spawn_status));
        return -1;
    }
    int wstatus;
    while (waitpid(pid, &wstatus, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    if (out != NULL) *out = tu_read_file(out_path, NULL);
    if (err != NULL) *err = tu_read_file(err_path, NULL);
    unlink(out_path);
    unlink(err_path);
    if (!WIFEXITED(wstatus)) return -1;
    return WEXITSTATUS(wstatus);
}

float tu_random_float(uint64_t *state, float lo, float hi) {
    /* xorshift64*: deterministic across platforms. */
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    uint64_t bits = (x * 0x2545F4914F6CDD1DULL) >> 40; /* 24 bits */
    return lo + (hi - lo) * ((float)bits * 0x1p-24f);
}

int tu_count_lines(const char *s) {
    int lines = 0;
    for (; s != NULL && *s != '\0'; s++)
        lines += *s == '\n';
    return lines;
}

void tu_add(tu_arglist *a, ...) {
    va_list ap;
    va_start(ap, a);
    const char *s;
    while ((s = va_arg(ap, const char *)) != NULL) {
        cr_assert_lt(a->n, 63);
        a->v[a->n++] = s;
    }
    a->v[a->n] = NULL;
    va_end(ap);
}

void tu_add_list(tu_arglist *a, const char *const *list) {
    for (int i = 0; list != NULL && list[i] != NULL; i++)
        tu_add(a, list[i], NULL);
}

int tu_run_args(const tu_arglist *a, char **out, char **err) {
    tu_arglist copy = *a;
    copy.v[copy.n] = NULL;
    return tu_run_cli(out, err, copy.v);
}

void tu_expect_file_equals(const char *path, const char *bytes, size_t len) {
    size_t got_len;
    char *got = tu_read_file(path, &got_len);
    cr_assert_not_null(got, "%s is gone", path);
    cr_assert(got_len == len && memcmp(got, bytes, len) == 0, "%s changed", path);
    free(got);
}
