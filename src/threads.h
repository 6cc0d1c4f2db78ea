/*
 * How many threads a call runs on, and where they run (threads.c).
 *
 * Every parallel entry point does the same:
 *
 *     int placed = ta_team_claim(plan->place_threads);
 *     #pragma omp parallel num_threads(plan->num_threads)
 *     {
 *         ta_thread_binding b;
 *         ta_thread_bind(placed, omp_get_thread_num(), &b);
 *         ... the work ...
 *         ta_thread_unbind(&b);
 *     }
 *     ta_team_release(placed);
 */
#ifndef TILEATTN_THREADS_H
#define TILEATTN_THREADS_H

#include "tileattn.h"

/* The team size when the caller leaves it (num_threads = 0):
 * OMP_NUM_THREADS where it is set, else one per physical core. */
int ta_default_threads(void);

/* The most threads a call starts: a larger team cannot help (the work is
 * compute-bound, and the planner never makes more work items than it can
 * use) and may fail to start, which libgomp answers with exit(1). */
#define TA_MAX_THREADS 1024

/* The team size of a call asking for num_threads: the default for 0, else
 * num_threads up to TA_MAX_THREADS. */
int ta_team_size(int num_threads);

/* The rule behind ta_default_threads, apart from the machine it asks:
 * omp_max is OpenMP's team size, omp_env_set whether OMP_NUM_THREADS is
 * set, cores the physical cores this process may run on. */
int ta_choose_default_threads(int omp_max, int omp_env_set, int cores);

/* Whether a team of num_threads should be bound one thread per core, and
 * why (a static string): by default a team of one thread per core;
 * TILEATTN_BIND_THREADS=1 any team of at most that many, =0 none; another
 * value is TILEATTN_ERR_BAD_ENV. */
tileattn_status ta_choose_placement(int num_threads, int *place, const char **reason);

/* Run time: a placed team must be the only one placed at that moment
 * (two concurrent calls would pile both teams onto the same cores), so a
 * call claims the placement before its parallel region and releases it
 * after; the claim returns 1 where placement was planned and is free. */
int ta_team_claim(int planned);
void ta_team_release(int claimed);

/* Binds the calling thread to core `thread` (all of its hardware threads)
 * when placed, saving its binding; unbind puts the saved one back. */
typedef struct ta_thread_binding {
    void *saved; /* an hwloc_bitmap_t, or NULL: nothing to put back */
} ta_thread_binding;
void ta_thread_bind(int placed, int thread, ta_thread_binding *b);
void ta_thread_unbind(ta_thread_binding *b);

#endif /* TILEATTN_THREADS_H */
