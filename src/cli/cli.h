/*
 * The tileattn command: one file per subcommand, sharing the flag parser
 * for shapes and masks declared here.
 *
 * Exit codes: 0 success; 1 `check` found an error above tolerance;
 * 2 bad usage or bad input (a one-line message on stderr).
 */
#ifndef TILEATTN_CLI_H
#define TILEATTN_CLI_H

#include <stdint.h>

#include "tileattn.h"

enum { TA_EXIT_OK = 0, TA_EXIT_MISMATCH = 1, TA_EXIT_USAGE = 2 };

/* The flags that describe a problem, shared by run, check, bench and info.
 * Shape flags (bench, info): --batch N --seqlen-q N --seqlen-k N --heads N
 *   --heads-kv N --head-dim N --head-dim-v N --dtype f32|f16|bf16
 * Mask flags (all): --causal --causal-top-left --window L,R --softcap C
 *   --scale S --alibi F.npy --bias F.npy --mask F.npy --sinks F.npy
 *   --cu-seqlens-q F.npy --cu-seqlens-k F.npy --threads N --p-input-dtype */
typedef struct ta_cli_problem {
    int64_t batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim, head_dim_v;
    tileattn_dtype dtype;
    int causal;                        /* --causal */
    int causal_top_left;               /* --causal-top-left */
    int64_t window_left, window_right; /* -1 unbounded */
    float softcap, scale;
    const char *alibi_path, *bias_path, *mask_path, *sinks_path;
    const char *cu_seqlens_q_path, *cu_seqlens_k_path;
    int threads;
    int p_input_dtype; /* --p-input-dtype: TILEATTN_P_INPUT_DTYPE */
} ta_cli_problem;

/* Defaults: B=1, H=Hk=8, Sq=Sk=2048, D=Dv=128, f32, no mask, -1 windows. */
void ta_cli_problem_init(ta_cli_problem *p);

/* Parses the flag at argv[*i] if it is one of the shared flags, consuming
 * its value and advancing *i past it. Returns 1 if consumed, 0 if argv[*i]
 * is not a shared flag, -1 on a bad value (a message is printed). */
int ta_cli_parse_problem_flag(int argc, char **argv, int *i, ta_cli_problem *p);

int ta_cmd_run(int argc, char **argv);
int ta_cmd_check(int argc, char **argv);
int ta_cmd_bench(int argc, char **argv);
int ta_cmd_info(int argc, char **argv);
int ta_cmd_demo(int argc, char **argv);

#endif /* TILEATTN_CLI_H */
