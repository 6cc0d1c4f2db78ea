/*
 * The flags shared by run, check, bench and info (see cli.h). Numbers are
 * parsed strictly: the whole value must be a number in range, so a typo
 * such as "--seqlen-q 1O24" is an error, never a silent 1.
 */
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "flags.h"

#define TA_CLI_STR_(x) #x
#define TA_CLI_STR(x)  TA_CLI_STR_(x)

void ta_cli_problem_init(ta_cli_problem *p) {
    memset(p, 0, sizeof *p);
    p->batch = 1;
    p->seqlen_q = 2048;
    p->seqlen_k = 2048;
    p->heads_q = 8;
    p->heads_kv = 8;
    p->head_dim = 128;
    p->head_dim_v = 128;
    p->dtype = TILEATTN_F32;
    p->window_left = -1;
    p->window_right = -1;
}

int ta_cli_parse_int64(const char *flag, const char *text, int64_t min, int64_t max,
                       int64_t *value) {
    /* strtoll would skip leading blanks and accept a '+': neither is a
     * number as written on a command line. */
    if (text[0] == '\0' || !(text[0] == '-' || (text[0] >= '0' && text[0] <= '9'))) {
        fprintf(stderr, "tileattn: %s: '%s' is not an integer\n", flag, text);
        return -1;
    }
    errno = 0;
    char *end;
    long long parsed = strtoll(text, &end, 10);
    if (end == text || *end != '\0') {
        fprintf(stderr, "tileattn: %s: '%s' is not an integer\n", flag, text);
        return -1;
    }
    if (errno == ERANGE || parsed < min || parsed > max) {
        fprintf(stderr, "tileattn: %s: %s is out of range [%lld, %lld]\n", flag, text,
                (long long)min, (long long)max);
        return -1;
    }
    *value = parsed;
    return 0;
}

int ta_cli_parse_float(const char *flag, const char *text, float min, float *value) {
    /* strtof would skip leading blanks. */
    if (text[0] == '\0' || isspace((unsigned char)text[0])) {
        fprintf(stderr, "tileattn: %s: '%s' is not a number\n", flag, text);
        return -1;
    }
    errno = 0;
    char *end;
    float parsed = strtof(text, &end);
    if (end == text || *end != '\0') {
        fprintf(stderr, "tileattn: %s: '%s' is not a number\n", flag, text);
        return -1;
    }
    if (!isfinite(parsed)) {
        fprintf(stderr, "tileattn: %s: '%s' is not a finite number\n", flag, text);
        return -1;
    }
    /* ERANGE with a finite result is an underflow: the value would silently
     * become 0 or lose precision. */
    if (errno == ERANGE) {
        fprintf(stderr, "tileattn: %s: %s is out of float32 range\n", flag, text);
        return -1;
    }
    if (!(parsed >= min)) {
        fprintf(stderr, "tileattn: %s: %s must be >= %g\n", flag, text, (double)min);
        return -1;
    }
    *value = parsed;
    return 0;
}

/* The value of a flag: "--flag=value" or "--flag value". */
static const char *flag_value(int argc, char **argv, int *i, const char *flag) {
    const char *arg = argv[*i];
    size_t n = strlen(flag);
    if (arg[n] == '=') return arg + n + 1;
    if (*i + 1 >= argc) {
        fprintf(stderr, "tileattn: %s needs a value\n", flag);
        return NULL;
    }
    (*i)++;
    return argv[*i];
}

/* A file-name value: "--alibi --causal" is a forgotten file name, not a
 * file called "--causal". */
static const char *path_value(int argc, char **argv, int *i, const char *flag) {
    const char *value = flag_value(argc, argv, i, flag);
    if (value == NULL) return NULL;
    if (value[0] == '\0' || (value[0] == '-' && value[1] == '-')) {
        fprintf(stderr, "tileattn: %s needs a file name, got '%s'\n", flag, value);
        return NULL;
    }
    return value;
}

/* Is arg the flag `flag`, alone or as "--flag=value"? */
static int is_flag(const char *arg, const char *flag) {
    size_t n = strlen(flag);
    return strncmp(arg, flag, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

int ta_cli_path_flag(int argc, char **argv, int *i, const char *flag, const char **path) {
    if (!is_flag(argv[*i], flag)) return 0;
    const char *value = path_value(argc, argv, i, flag);
    if (value == NULL) return -1;
    *path = value;
    (*i)++;
    return 1;
}

int ta_cli_text_flag(int argc, char **argv, int *i, const char *flag, const char **text) {
    if (!is_flag(argv[*i], flag)) return 0;
    const char *value = flag_value(argc, argv, i, flag);
    if (value == NULL) return -1;
    *text = value;
    (*i)++;
    return 1;
}

int ta_cli_float_flag(int argc, char **argv, int *i, const char *flag, float *value) {
    if (!is_flag(argv[*i], flag)) return 0;
    const char *text = flag_value(argc, argv, i, flag);
    if (text == NULL || ta_cli_parse_float(flag, text, 0.0f, value) != 0) return -1;
    (*i)++;
    return 1;
}

static int parse_window(const char *text, int64_t *left, int64_t *right) {
    const char *comma = strchr(text, ',');
    if (comma == NULL || comma == text || comma[1] == '\0' || strchr(comma + 1, ',') != NULL) {
        fprintf(stderr, "tileattn: --window: want L,R (two integers >= -1), got '%s'\n", text);
        return -1;
    }
    char left_text[32];
    size_t left_len = (size_t)(comma - text);
    if (left_len >= sizeof left_text) {
        fprintf(stderr, "tileattn: --window: '%s' is out of range\n", text);
        return -1;
    }
    memcpy(left_text, text, left_len);
    left_text[left_len] = '\0';
    if (ta_cli_parse_int64("--window", left_text, -1, INT64_MAX, left) != 0 ||
        ta_cli_parse_int64("--window", comma + 1, -1, INT64_MAX, right) != 0)
        return -1;
    return 0;
}

int ta_cli_int64_flag(int argc, char **argv, int *i, const char *flag, int64_t min, int64_t max,
                      int64_t *value) {
    if (!is_flag(argv[*i], flag)) return 0;
    const char *text = flag_value(argc, argv, i, flag);
    if (text == NULL || ta_cli_parse_int64(flag, text, min, max, value) != 0) return -1;
    (*i)++;
    return 1;
}

int ta_cli_window_flag(int argc, char **argv, int *i, int64_t *left, int64_t *right) {
    if (!is_flag(argv[*i], "--window")) return 0;
    const char *text = flag_value(argc, argv, i, "--window");
    if (text == NULL || parse_window(text, left, right) != 0) return -1;
    (*i)++;
    return 1;
}

int ta_cli_is_help(const char *arg) {
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

void ta_cli_print_problem_flags(FILE *out, int with_shapes) {
    if (with_shapes)
        fputs("Shape (defaults in brackets; --heads, --seqlen-q and --head-dim also set\n"
              "--heads-kv, --seqlen-k and --head-dim-v unless those were made to differ):\n"
              "  --batch N        batch size B [1]\n"
              "  --seqlen-q N     query length Sq [2048]\n"
              "  --seqlen-k N     key length Sk [Sq]\n"
              "  --heads N        query heads H [8]\n"
              "  --heads-kv N     key/value heads Hk, dividing H [H]\n"
              "  --head-dim N     D [128], at most " TA_CLI_STR(
                  TILEATTN_MAX_HEAD_DIM) "\n"
                                         "  --head-dim-v N   Dv [D]\n"
                                         "  --dtype T        f32, f16 or bf16 [f32]\n",
              out);
    fputs("Masking and scaling:\n"
          "  --causal             causal, diagonal aligned bottom right (FlashAttention)\n"
          "  --causal-top-left    causal, diagonal aligned top left (PyTorch is_causal)\n"
          "  --window L,R         local window: keys i-L .. i+R (-1 = unbounded side)\n"
          "  --softcap C          scores become C*tanh(s/C) (0 = off)\n"
          "  --scale S            score scale, > 0 [1/sqrt(D)]\n"
          "  --alibi F.npy        ALiBi slopes, float32 [H] or [B,H]\n"
          "  --bias F.npy         additive bias, float32/float16 [B|1,H|1,Sq,Sk]\n"
          "  --mask F.npy         boolean mask (bool/uint8, nonzero = seen), bias's shape\n"
          "  --sinks F.npy        attention-sink logits, float32 [H]\n"
          "  --cu-seqlens-q F.npy varlen: int32/int64 [B+1] offsets of the query tokens\n"
          "  --cu-seqlens-k F.npy varlen: the same for the keys (both or neither)\n"
          "  --threads N          worker threads (0 = OpenMP's default) [0]\n"
          "  --p-input-dtype      allow P rounded to the input dtype for P.V, as\n"
          "                       FlashAttention does (bf16 on amx/avx512bf16: faster;\n"
          "                       O within 2^-8 max|V| of float32 P) [P float32]\n",
          out);
}

/* Sizes on a command line: at least 1, and small enough that products of a
 * few of them are still checked comfortably by the library. */
#define TA_CLI_MAX_SIZE ((int64_t)1 << 31)

int ta_cli_is_shape_flag(const char *arg) {
    static const char *const shape_flags[] = {
        "--batch",    "--seqlen-q", "--seqlen-k",   "--heads",
        "--heads-kv", "--head-dim", "--head-dim-v", "--dtype",
    };
    for (size_t f = 0; f < sizeof shape_flags / sizeof shape_flags[0]; f++)
        if (is_flag(arg, shape_flags[f])) return 1;
    return 0;
}

int ta_cli_parse_problem_flag(int argc, char **argv, int *i, ta_cli_problem *p) {
    const char *arg = argv[*i];
    const char *value;

    /* Sizes. --heads, --head-dim and --seqlen-q carry their partner along
     * (Hk, Dv, Sk) while the partner still equals them, so that
     * "--head-dim 64" means D = Dv = 64; give the partner after them to
     * make it differ. */
    static const struct {
        const char *flag;
        size_t offset;
        size_t partner; /* offsetof the size that follows this one, or 0 */
        int64_t max;
    } sizes[] = {
        {"--batch", offsetof(ta_cli_problem, batch), 0, TA_CLI_MAX_SIZE},
        {"--seqlen-q", offsetof(ta_cli_problem, seqlen_q), offsetof(ta_cli_problem, seqlen_k),
         TA_CLI_MAX_SIZE},
        {"--seqlen-k", offsetof(ta_cli_problem, seqlen_k), 0, TA_CLI_MAX_SIZE},
        {"--heads", offsetof(ta_cli_problem, heads_q), offsetof(ta_cli_problem, heads_kv),
         TA_CLI_MAX_SIZE},
        {"--heads-kv", offsetof(ta_cli_problem, heads_kv), 0, TA_CLI_MAX_SIZE},
        {"--head-dim", offsetof(ta_cli_problem, head_dim), offsetof(ta_cli_problem, head_dim_v),
         TILEATTN_MAX_HEAD_DIM},
        {"--head-dim-v", offsetof(ta_cli_problem, head_dim_v), 0, TILEATTN_MAX_HEAD_DIM},
    };
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        if (!is_flag(arg, sizes[s].flag)) continue;
        if ((value = flag_value(argc, argv, i, sizes[s].flag)) == NULL) return -1;
        int64_t parsed;
        if (ta_cli_parse_int64(sizes[s].flag, value, 1, sizes[s].max, &parsed) != 0) return -1;
        int64_t *field = (int64_t *)((char *)p + sizes[s].offset);
        if (sizes[s].partner != 0) {
            int64_t *partner = (int64_t *)((char *)p + sizes[s].partner);
            if (*partner == *field) *partner = parsed;
        }
        *field = parsed;
        (*i)++;
        return 1;
    }

    if (is_flag(arg, "--dtype")) {
        if ((value = flag_value(argc, argv, i, "--dtype")) == NULL) return -1;
        if (strcmp(value, "f32") == 0 || strcmp(value, "float32") == 0) {
            p->dtype = TILEATTN_F32;
        } else if (strcmp(value, "f16") == 0 || strcmp(value, "float16") == 0) {
            p->dtype = TILEATTN_F16;
        } else if (strcmp(value, "bf16") == 0 || strcmp(value, "bfloat16") == 0) {
            p->dtype = TILEATTN_BF16;
        } else {
            fprintf(stderr, "tileattn: --dtype: want f32, f16 or bf16, got '%s'\n", value);
            return -1;
        }
        (*i)++;
        return 1;
    }

    if (strcmp(arg, "--causal") == 0 || strcmp(arg, "--causal-top-left") == 0) {
        int top_left = strcmp(arg, "--causal-top-left") == 0;
        if (top_left ? p->causal : p->causal_top_left) {
            fprintf(stderr, "tileattn: --causal and --causal-top-left exclude each other\n");
            return -1;
        }
        if (top_left)
            p->causal_top_left = 1;
        else
            p->causal = 1;
        (*i)++;
        return 1;
    }

    if (is_flag(arg, "--window")) {
        if ((value = flag_value(argc, argv, i, "--window")) == NULL) return -1;
        if (parse_window(value, &p->window_left, &p->window_right) != 0) return -1;
        (*i)++;
        return 1;
    }

    if (is_flag(arg, "--softcap")) {
        if ((value = flag_value(argc, argv, i, "--softcap")) == NULL ||
            ta_cli_parse_float("--softcap", value, 0.0f, &p->softcap) != 0)
            return -1;
        (*i)++;
        return 1;
    }

    if (is_flag(arg, "--scale")) {
        float scale;
        if ((value = flag_value(argc, argv, i, "--scale")) == NULL ||
            ta_cli_parse_float("--scale", value, -FLT_MAX, &scale) != 0)
            return -1;
        /* The library reads 0 as "1/sqrt(D)": an explicit 0 would be taken
         * for the default instead of zeroing every score. */
        if (!(scale > 0.0f)) { /* one message for 0 and below */
            fprintf(stderr, "tileattn: --scale: must be > 0 (leave it out for 1/sqrt(D))\n");
            return -1;
        }
        p->scale = scale;
        (*i)++;
        return 1;
    }

    static const struct {
        const char *flag;
        size_t offset;
    } paths[] = {
        {"--alibi", offsetof(ta_cli_problem, alibi_path)},
        {"--bias", offsetof(ta_cli_problem, bias_path)},
        {"--mask", offsetof(ta_cli_problem, mask_path)},
        {"--sinks", offsetof(ta_cli_problem, sinks_path)},
        {"--cu-seqlens-q", offsetof(ta_cli_problem, cu_seqlens_q_path)},
        {"--cu-seqlens-k", offsetof(ta_cli_problem, cu_seqlens_k_path)},
    };
    for (size_t f = 0; f < sizeof paths / sizeof paths[0]; f++) {
        if (!is_flag(arg, paths[f].flag)) continue;
        if ((value = path_value(argc, argv, i, paths[f].flag)) == NULL) return -1;
        if ((strcmp(paths[f].flag, "--bias") == 0 && p->mask_path != NULL) ||
            (strcmp(paths[f].flag, "--mask") == 0 && p->bias_path != NULL)) {
            fprintf(stderr, "tileattn: --bias and --mask exclude each other "
                            "(fold the mask into the bias as -inf)\n");
            return -1;
        }
        *(const char **)((char *)p + paths[f].offset) = value;
        (*i)++;
        return 1;
    }

    if (strcmp(arg, "--p-input-dtype") == 0) {
        p->p_input_dtype = 1;
        (*i)++;
        return 1;
    }

    if (is_flag(arg, "--threads")) {
        int64_t threads;
        if ((value = flag_value(argc, argv, i, "--threads")) == NULL ||
            ta_cli_parse_int64("--threads", value, 0, 1 << 16, &threads) != 0)
            return -1;
        p->threads = (int)threads;
        (*i)++;
        return 1;
    }
    return 0;
}
