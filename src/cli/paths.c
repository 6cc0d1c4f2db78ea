/* Which paths name one file: see paths.h. */
#define _POSIX_C_SOURCE 200809L

#include "paths.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io.h"
#include "npy.h"

static const char *name_of(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash != NULL ? slash + 1 : path;
}

static int same_inode(const struct stat *a, const struct stat *b) {
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

int ta_cli_same_file(const char *a, const char *b) {
    if (strcmp(a, b) == 0) return 1;
    struct stat sa, sb;
    int a_exists = stat(a, &sa) == 0, b_exists = stat(b, &sb) == 0;
    if (a_exists && b_exists) return same_inode(&sa, &sb);
    if (a_exists || b_exists) return 0;
    /* Neither exists yet: one file once written if the last components
     * match in the same directory. */
    if (strcmp(name_of(a), name_of(b)) != 0) return 0;
    char *da = ta_npy_parent_dir(a), *db = ta_npy_parent_dir(b);
    int same = da != NULL && db != NULL && stat(da, &sa) == 0 && stat(db, &sb) == 0 &&
               same_inode(&sa, &sb);
    free(da);
    free(db);
    return same;
}

int ta_cli_problem_inputs(const ta_cli_problem *p, ta_cli_path *list) {
    const ta_cli_path extras[6] = {
        {"--alibi", p->alibi_path},
        {"--bias", p->bias_path},
        {"--mask", p->mask_path},
        {"--sinks", p->sinks_path},
        {"--cu-seqlens-q", p->cu_seqlens_q_path},
        {"--cu-seqlens-k", p->cu_seqlens_k_path},
    };
    memcpy(list, extras, sizeof extras);
    return 6;
}

static int is_stream(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode));
}

int ta_cli_check_paths(const char *cmd, const ta_cli_path *outputs, int n_outputs,
                       const ta_cli_path *inputs, int n_inputs) {
    for (int x = 0; x < n_outputs; x++) {
        const ta_cli_path *o = &outputs[x];
        if (o->path == NULL) continue;
        for (int y = x + 1; y < n_outputs; y++) {
            const ta_cli_path *p = &outputs[y];
            if (p->path == NULL || !ta_cli_same_file(o->path, p->path) || is_stream(o->path))
                continue;
            ta_cli_error(cmd,
                         "%s and %s name the same file (%s, %s): one would overwrite the other",
                         o->flag, p->flag, o->path, p->path);
            return -1;
        }
        for (int y = 0; y < n_inputs; y++) {
            const ta_cli_path *in = &inputs[y];
            if (in->path == NULL || !ta_cli_same_file(o->path, in->path) || is_stream(o->path))
                continue;
            ta_cli_error(cmd, "%s names the input file of %s (%s): outputs never replace inputs",
                         o->flag, in->flag, o->path);
            return -1;
        }
    }
    return 0;
}
