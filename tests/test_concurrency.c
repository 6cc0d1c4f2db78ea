/*
 * "All functions may be called from several threads at once": 6 pthreads
 * call tileattn_forward at the same moment on different problems, each
 * alternating num_threads 1 and 2 from round to round (so OpenMP teams nest
 * inside the pthreads); the results must be bitwise equal to the same calls
 * made one after another with the same num_threads. The first calls of the
 * process race too (ISA selection, topology).
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "attn_case.h"

enum { NUM_THREADS = 6, ROUNDS = 4 };

typedef struct job {
    th_problem p;
    pthread_barrier_t *start;
    tileattn_status status;
} job;

static void *worker(void *arg) {
    job *j = arg;
    pthread_barrier_wait(j->start);
    j->status = th_problem_forward(&j->p);
    return NULL;
}

static th_case job_case(int i) {
    th_case c = th_case_default();
    c.num_threads = 1 + i % 2;
    c.dtype = (tileattn_dtype)(i % 3);
    c.batch = 1 + i % 2;
    c.sq = 100 + 37 * i;
    c.sk = 250 - 23 * i;
    c.h = i % 2 ? 6 : 4;
    c.hk = 2;
    c.d = i % 3 == 0 ? 64 : i % 3 == 1 ? 59 : 128;
    switch (i) {
    case 0: c.causal = TILEATTN_CAUSAL_BOTTOM_RIGHT; break;
    case 1: c.wl = 16, c.wr = 8, c.sinks = 1; break;
    case 2: c.bias = TH_BIAS_ADD, c.bias_dtype = TILEATTN_F16, c.bias_flags = TH_BIAS_NEGINF; break;
    case 3: c.alibi = TH_ALIBI_BH, c.softcap = 5.0f, c.causal = TILEATTN_CAUSAL_TOP_LEFT; break;
    case 4:
        c.nseq = 3, c.lens_q[0] = 50, c.lens_q[1] = 0, c.lens_q[2] = 70;
        c.lens_k[0] = 90, c.lens_k[1] = 10, c.lens_k[2] = 33;
        c.causal = TILEATTN_CAUSAL_BOTTOM_RIGHT;
        break;
    default: c.bias = TH_BIAS_BOOL, c.bias_flags = TH_BIAS_DEAD_ROWS, c.o_pad = 3; break;
    }
    return c;
}

static void run_all_concurrently(job *jobs, int round) {
    pthread_t tid[NUM_THREADS];
    for (int i = 0; i < NUM_THREADS; i++) {
        jobs[i].p.args.num_threads = 1 + (i + round) % 2;
        cr_assert_eq(pthread_create(&tid[i], NULL, worker, &jobs[i]), 0);
    }
    for (int i = 0; i < NUM_THREADS; i++)
        pthread_join(tid[i], NULL);
    for (int i = 0; i < NUM_THREADS; i++)
        cr_assert_eq(jobs[i].status, TILEATTN_OK, "job %d round %d: %s", i, round,
                     tileattn_status_string(jobs[i].status));
}

static size_t lse_bytes(const th_problem *p) {
    return (p->lse_elems + 16) * sizeof(float);
}

Test(api, concurrent_forward_is_bitwise_sequential) {
    job jobs[NUM_THREADS];
    pthread_barrier_t start;
    cr_assert_eq(pthread_barrier_init(&start, NULL, NUM_THREADS), 0);
    for (int i = 0; i < NUM_THREADS; i++) {
        th_case c = job_case(i);
        th_problem_make(&jobs[i].p, &c, 700 + (uint64_t)i);
        jobs[i].start = &start;
    }

    /* Round 0 runs before anything else has touched the library: the
     * first-use initialisation (ISA selection, topology) races too. Keep
     * its results, then compute the sequential answers for num_threads 1
     * and 2, one call at a time. */
    run_all_concurrently(jobs, 0);
    unsigned char *first_o[NUM_THREADS], *want_o[NUM_THREADS][2];
    unsigned char *first_lse[NUM_THREADS], *want_lse[NUM_THREADS][2];
    for (int i = 0; i < NUM_THREADS; i++) {
        th_problem *p = &jobs[i].p;
        first_o[i] = malloc(p->o_bytes);
        first_lse[i] = malloc(lse_bytes(p));
        memcpy(first_o[i], p->obuf, p->o_bytes);
        memcpy(first_lse[i], p->lse, lse_bytes(p));
    }
    for (int i = 0; i < NUM_THREADS; i++)
        for (int nt = 0; nt < 2; nt++) {
            th_problem *p = &jobs[i].p;
            p->args.num_threads = 1 + nt;
            cr_assert_eq(th_problem_forward(p), TILEATTN_OK);
            want_o[i][nt] = malloc(p->o_bytes);
            want_lse[i][nt] = malloc(lse_bytes(p));
            memcpy(want_o[i][nt], p->obuf, p->o_bytes);
            memcpy(want_lse[i][nt], p->lse, lse_bytes(p));
        }
    for (int i = 0; i < NUM_THREADS; i++) {
        th_problem *p = &jobs[i].p;
        int nt = i % 2;
        cr_expect_eq(memcmp(first_o[i], want_o[i][nt], p->o_bytes), 0,
                     "job %d: O of the first (concurrent) call differs from the sequential O", i);
        cr_expect_eq(memcmp(first_lse[i], want_lse[i][nt], lse_bytes(p)), 0,
                     "job %d: LSE of the first (concurrent) call differs", i);
        free(first_o[i]);
        free(first_lse[i]);
    }

    for (int round = 1; round <= ROUNDS; round++) {
        run_all_concurrently(jobs, round);
        for (int i = 0; i < NUM_THREADS; i++) {
            th_problem *p = &jobs[i].p;
            int nt = (i + round) % 2;
            cr_expect_eq(memcmp(p->obuf, want_o[i][nt], p->o_bytes), 0,
                         "job %d round %d (num_threads %d): concurrent O differs from the "
                         "sequential O",
                         i, round, nt + 1);
            cr_expect_eq(memcmp(p->lse, want_lse[i][nt], lse_bytes(p)), 0,
                         "job %d round %d (num_threads %d): concurrent LSE differs", i, round,
                         nt + 1);
        }
    }

    /* And the answers are right, not merely repeatable. */
    for (int i = 0; i < NUM_THREADS; i++) {
        double *o, *lse;
        cr_assert_eq(th_problem_reference(&jobs[i].p, NULL, &o, &lse), TILEATTN_OK);
        th_check chk;
        th_problem_check(&jobs[i].p, o, lse, &chk);
        cr_expect_eq(chk.bad, 0, "job %d: %s", i, chk.first);
        th_free(o);
        th_free(lse);
        for (int nt = 0; nt < 2; nt++) {
            free(want_o[i][nt]);
            free(want_lse[i][nt]);
        }
        th_problem_free(&jobs[i].p);
    }
    pthread_barrier_destroy(&start);
}
