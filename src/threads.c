/*
 * How many threads a call runs on, and where they run.
 *
 * The count: the caller's num_threads, else OMP_NUM_THREADS, else one
 * thread per physical core this process may run on. OpenMP's own default
 * is one per hardware thread; where a core has two (SMT), two threads
 * would share the one L1 and L2 the planner sized its tiles for, and one
 * set of FMA units, which the kernels already keep busy. PyTorch's CPU
 * default is the physical cores too.
 *
 * The place: a team of one thread per core is bound that way (thread t on
 * core t, in hwloc's order, so neighbours share a cache level where the
 * machine has one), for the length of the call only: each thread's
 * binding is saved and put back after, so the caller's threads leave as
 * they came, and no two of the team share a core, which with SMT the
 * system may otherwise do. A smaller team is left to the system, which
 * knows which cores are busy; TILEATTN_BIND_THREADS=1 binds it to the
 * first cores anyway, =0 never binds. Nothing is bound where OpenMP
 * places threads itself (OMP_PROC_BIND, OMP_PLACES, GOMP_CPU_AFFINITY,
 * KMP_AFFINITY), inside an enclosing parallel region, for one thread, for
 * more threads than cores, or while another call's team is bound (both
 * would take the same cores).
 */
#include "threads.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "plan_util.h"
#include "tileattn_config.h"
#include "topology.h"

#if TILEATTN_HAVE_OPENMP
#include <omp.h>
#endif
#if TILEATTN_HAVE_HWLOC
#include <hwloc.h>
#endif

int ta_choose_default_threads(int omp_max, int omp_env_set, int cores) {
    if (omp_max < 1) omp_max = 1;
    if (omp_env_set || cores < 1) return omp_max;
    return cores < omp_max ? cores : omp_max;
}

int ta_default_threads(void) {
#if TILEATTN_HAVE_OPENMP
    const char *env = getenv("OMP_NUM_THREADS");
    return ta_choose_default_threads(omp_get_max_threads(), env && *env, ta_topology_get()->cores);
#else
    return 1;
#endif
}

int ta_team_size(int num_threads) {
    if (num_threads <= 0) return ta_default_threads();
    return num_threads < TA_MAX_THREADS ? num_threads : TA_MAX_THREADS;
}

#if TILEATTN_HAVE_OPENMP && TILEATTN_HAVE_HWLOC
/* Whether OpenMP was told where to put its threads. */
static int openmp_places_threads(void) {
    static const char *const vars[] = {"OMP_PROC_BIND", "OMP_PLACES", "GOMP_CPU_AFFINITY",
                                       "KMP_AFFINITY"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) return 1;
    }
    return omp_get_proc_bind() != omp_proc_bind_false;
}
#endif

tileattn_status ta_choose_placement(int num_threads, int *place, const char **reason) {
    *place = 0;
    int asked; /* -1: the default */
    tileattn_status st = ta_env_switch("TILEATTN_BIND_THREADS", &asked);
    if (st) return st;
    if (asked == 0) {
        *reason = "not bound (TILEATTN_BIND_THREADS=0)";
        return TILEATTN_OK;
    }
#if !TILEATTN_HAVE_OPENMP || !TILEATTN_HAVE_HWLOC
    (void)num_threads, (void)asked;
    *reason = "not bound (built without OpenMP or hwloc)";
#else
    if (!ta_topology_hwloc())
        *reason = "not bound (hwloc could not read this machine)";
    else if (num_threads < 2)
        *reason = "not bound (one thread)";
    else if (num_threads > ta_topology_get()->cores)
        *reason = "not bound (more threads than cores)";
    else if (asked < 0 && num_threads < ta_topology_get()->cores)
        *reason = "not bound (fewer threads than cores: the system picks the cores)";
    else if (openmp_places_threads())
        *reason = "placed by OpenMP (its binding variables are set)";
    else if (omp_in_parallel())
        *reason = "not bound (called inside a parallel region)";
    else {
        *place = 1;
        *reason = "one per core, bound for the call (hwloc)";
    }
#endif
    return TILEATTN_OK;
}

static atomic_int team_placed;

int ta_team_claim(int planned) {
    int expected = 0;
    return planned && atomic_compare_exchange_strong(&team_placed, &expected, 1);
}

void ta_team_release(int claimed) {
    if (claimed) atomic_store(&team_placed, 0);
}

void ta_thread_bind(int placed, int thread, ta_thread_binding *b) {
    b->saved = NULL;
#if TILEATTN_HAVE_HWLOC
    hwloc_topology_t topo = ta_topology_hwloc();
    if (!placed || !topo) return;
    hwloc_obj_t core = hwloc_get_obj_by_type(topo, HWLOC_OBJ_CORE, (unsigned)thread);
    hwloc_bitmap_t saved = hwloc_bitmap_alloc();
    if (!core || !saved || hwloc_get_cpubind(topo, saved, HWLOC_CPUBIND_THREAD) != 0) {
        hwloc_bitmap_free(saved); /* accepts NULL */
        return;
    }
    if (hwloc_set_cpubind(topo, core->cpuset, HWLOC_CPUBIND_THREAD) != 0) {
        hwloc_bitmap_free(saved);
        return;
    }
    b->saved = saved;
#else
    (void)placed, (void)thread;
#endif
}

void ta_thread_unbind(ta_thread_binding *b) {
#if TILEATTN_HAVE_HWLOC
    if (!b->saved) return;
    hwloc_set_cpubind(ta_topology_hwloc(), b->saved, HWLOC_CPUBIND_THREAD);
    hwloc_bitmap_free(b->saved);
    b->saved = NULL;
#else
    (void)b;
#endif
}
