/*
 * Threads: the default team size, the binding of a team one thread per
 * core for the length of a call (and the caller's affinity put back after
 * it), the one-placed-team-at-a-time claim, and TILEATTN_BIND_THREADS,
 * including bad values refused by every entry point before anything is
 * written. Criterion runs each test in its own process, so setenv stays
 * inside the test.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "attn_case.h"
#include "helpers.h"
#include "threads.h"
#include "tileattn.h"
#include "tileattn_config.h"
#include "topology.h"

#if TILEATTN_HAVE_HWLOC
#include <hwloc.h>
#endif

static cpu_set_t affinity(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    cr_assert_eq(sched_getaffinity(0, sizeof set, &set), 0);
    return set;
}

/* Writes value into dir/cpuN/topology/name, creating the directories. */
static void write_fake_topology(const char *dir, int cpu, const char *name, int value) {
    char path[512];
    snprintf(path, sizeof path, "%s/cpu%d", dir, cpu);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/cpu%d/topology", dir, cpu);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/cpu%d/topology/%s", dir, cpu, name);
    FILE *f = fopen(path, "w");
    cr_assert(f != NULL, "%s", path);
    fprintf(f, "%d\n", value);
    fclose(f);
}

/* The sysfs fallback counts cores, not hardware threads: two threads of a
 * core share (package, core id), and the same core id in two packages is
 * two cores. */
Test(threads, sysfs_fallback_counts_cores) {
    char dir[] = "/tmp/tileattn-sysfs-XXXXXX";
    cr_assert(mkdtemp(dir) != NULL);
    int package[5] = {0, 0, 1, 1, 1}, core[5] = {0, 0, 0, 1, 1};
    for (int cpu = 0; cpu < 5; cpu++) {
        write_fake_topology(dir, cpu, "physical_package_id", package[cpu]);
        write_fake_topology(dir, cpu, "core_id", core[cpu]);
    }
    int all[5] = {0, 1, 2, 3, 4}, one_each[2] = {1, 3}, smt_pair[2] = {0, 1};
    cr_expect_eq(ta_sysfs_count_cores(dir, all, 5), 3);
    cr_expect_eq(ta_sysfs_count_cores(dir, one_each, 2), 2);
    cr_expect_eq(ta_sysfs_count_cores(dir, smt_pair, 2), 1);
    int missing[2] = {0, 7}; /* no cpu7: unknown, not a guess */
    cr_expect_eq(ta_sysfs_count_cores(dir, missing, 2), 0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

#if TILEATTN_HAVE_HWLOC
/* On this machine, the fallback agrees with hwloc about the cores this
 * process may run on (where sysfs has topology files). */
Test(threads, sysfs_cores_match_hwloc) {
    cpu_set_t set = affinity();
    int cpus[CPU_SETSIZE], n = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET(cpu, &set)) cpus[n++] = cpu;
    int cores = ta_sysfs_count_cores("/sys/devices/system/cpu", cpus, n);
    if (cores == 0) cr_skip_test("no sysfs topology files here");
    cr_expect_eq(ta_topology_get()->cores, cores, "hwloc %d cores, sysfs %d",
                 ta_topology_get()->cores, cores);
}
#endif

Test(threads, default_count_rule) {
    /* OMP_NUM_THREADS set: OpenMP's count, whatever the cores. */
    cr_expect_eq(ta_choose_default_threads(16, 1, 8), 16);
    cr_expect_eq(ta_choose_default_threads(3, 1, 8), 3);
    /* Unset: one per physical core, never more than OpenMP would run. */
    cr_expect_eq(ta_choose_default_threads(16, 0, 8), 8);
    cr_expect_eq(ta_choose_default_threads(4, 0, 8), 4);
    cr_expect_eq(ta_choose_default_threads(8, 0, 8), 8);
    /* Nonsense in, at least one thread out. */
    cr_expect_eq(ta_choose_default_threads(0, 0, 8), 1);
    cr_expect_eq(ta_choose_default_threads(16, 0, 0), 16);
}

Test(threads, default_count_is_at_most_the_cores) {
    unsetenv("OMP_NUM_THREADS");
    int n = ta_default_threads();
    cr_expect(n >= 1 && n <= ta_topology_get()->cores, "%d threads, %d cores", n,
              ta_topology_get()->cores);
}

Test(threads, one_placed_team_at_a_time) {
    cr_expect_eq(ta_team_claim(0), 0, "claimed without a plan to place");
    cr_assert_eq(ta_team_claim(1), 1);
    cr_expect_eq(ta_team_claim(1), 0, "a second team placed while the first runs");
    ta_team_release(1);
    cr_expect_eq(ta_team_claim(1), 1, "the release did not free the placement");
    ta_team_release(1);
    ta_team_release(0); /* not claimed: no effect */
    cr_expect_eq(ta_team_claim(1), 1);
    ta_team_release(1);
}

Test(threads, bind_then_unbind_restores_the_affinity) {
    cpu_set_t before = affinity();
    ta_thread_binding b;
    ta_thread_bind(0, 0, &b); /* not placed: nothing happens */
    cr_expect_null(b.saved);
    cpu_set_t now = affinity();
    cr_expect(CPU_EQUAL(&before, &now));
    ta_thread_unbind(&b);

#if TILEATTN_HAVE_HWLOC
    hwloc_topology_t topo = ta_topology_hwloc();
    if (!topo) cr_skip_test("hwloc could not read this machine");
    for (int core = 0; core < ta_topology_get()->cores; core++) {
        hwloc_obj_t obj = hwloc_get_obj_by_type(topo, HWLOC_OBJ_CORE, (unsigned)core);
        cr_assert_not_null(obj);
        ta_thread_bind(1, core, &b);
        cr_assert_not_null(b.saved, "core %d: not bound", core);
        now = affinity();
        cr_expect_eq(CPU_COUNT(&now), hwloc_bitmap_weight(obj->cpuset), "core %d", core);
        for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
            if (CPU_ISSET(cpu, &now))
                cr_expect(hwloc_bitmap_isset(obj->cpuset, (unsigned)cpu),
                          "core %d: bound to CPU %d outside it", core, cpu);
        ta_thread_unbind(&b);
        cr_expect_null(b.saved);
        now = affinity();
        cr_expect(CPU_EQUAL(&before, &now), "core %d: the affinity was not put back", core);
    }
#else
    cr_skip_test("built without hwloc");
#endif
}

Test(threads, placement_rule) {
    int cores = ta_topology_get()->cores, place;
    const char *why;
    unsetenv("TILEATTN_BIND_THREADS");
#if TILEATTN_HAVE_HWLOC && TILEATTN_HAVE_OPENMP
    cr_assert_eq(ta_choose_placement(1, &place, &why), TILEATTN_OK);
    cr_expect(!place && strstr(why, "one thread"), "%s", why);
    cr_assert_eq(ta_choose_placement(cores + 1, &place, &why), TILEATTN_OK);
    cr_expect(!place && strstr(why, "more threads than cores"), "%s", why);
#else
    cr_assert_eq(ta_choose_placement(cores, &place, &why), TILEATTN_OK);
    cr_expect(!place && strstr(why, "built without"), "%s", why);
#endif
    setenv("TILEATTN_BIND_THREADS", "0", 1);
    cr_assert_eq(ta_choose_placement(cores, &place, &why), TILEATTN_OK);
    cr_expect(!place && strstr(why, "TILEATTN_BIND_THREADS=0"), "%s", why);
    static const char *bad[] = {"2", "yes", "on", "01", " 1", "-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("TILEATTN_BIND_THREADS", bad[i], 1);
        cr_expect_eq(ta_choose_placement(cores, &place, &why), TILEATTN_ERR_BAD_ENV, "'%s'",
                     bad[i]);
    }
#if TILEATTN_HAVE_HWLOC && TILEATTN_HAVE_OPENMP
    if (cores < 2) cr_skip_test("one core");
    unsetenv("OMP_PROC_BIND"), unsetenv("OMP_PLACES");
    unsetenv("GOMP_CPU_AFFINITY"), unsetenv("KMP_AFFINITY");
    unsetenv("TILEATTN_BIND_THREADS");
    cr_assert_eq(ta_choose_placement(cores, &place, &why), TILEATTN_OK);
    cr_expect(place, "a team of one thread per core is not bound: %s", why);
    if (cores >= 3) {
        cr_assert_eq(ta_choose_placement(2, &place, &why), TILEATTN_OK);
        cr_expect(!place && strstr(why, "fewer threads"), "%s", why);
        setenv("TILEATTN_BIND_THREADS", "1", 1);
        cr_assert_eq(ta_choose_placement(2, &place, &why), TILEATTN_OK);
        cr_expect(place, "TILEATTN_BIND_THREADS=1 did not bind 2 threads: %s", why);
    }
    setenv("TILEATTN_BIND_THREADS", "1", 1);
    setenv("OMP_PLACES", "cores", 1);
    cr_assert_eq(ta_choose_placement(cores, &place, &why), TILEATTN_OK);
    cr_expect(!place && strstr(why, "OpenMP"), "OMP_PLACES set: %s", why);
#endif
}

/* A small forward problem: B = 1, Sq = Sk = 96, H = 4, D = 32, float32. */
typedef struct fproblem {
    float *q, *k, *v;
    tileattn_forward_args a;
} fproblem;

enum { S = 96, H = 4, D = 32 };

static fproblem make_forward(float *o, int threads) {
    fproblem p;
    size_t n = (size_t)S * H * D;
    p.q = th_alloc(n * 4), p.k = th_alloc(n * 4), p.v = th_alloc(n * 4);
    th_rng r;
    th_rng_seed(&r, 7);
    for (size_t i = 0; i < n; i++)
        p.q[i] = (float)th_rng_normal(&r), p.k[i] = (float)th_rng_normal(&r),
        p.v[i] = (float)th_rng_normal(&r);
    tileattn_forward_args_init(&p.a);
    p.a.batch = 1, p.a.seqlen_q = p.a.seqlen_k = S;
    p.a.heads_q = p.a.heads_kv = H, p.a.head_dim = D;
    p.a.dtype = TILEATTN_F32;
    p.a.q = tileattn_tensor_contiguous(p.q, S, H, D);
    p.a.k = tileattn_tensor_contiguous(p.k, S, H, D);
    p.a.v = tileattn_tensor_contiguous(p.v, S, H, D);
    p.a.o = tileattn_tensor_out_contiguous(o, S, H, D);
    p.a.num_threads = threads;
    return p;
}

static void free_forward(fproblem *p) {
    th_free(p->q), th_free(p->k), th_free(p->v);
}

/* A team larger than TA_MAX_THREADS is capped, not started: libgomp ends
 * the process (exit 1) when it cannot create the threads, as it could not
 * 40000 on a 2-core machine with 24 GiB. 40000 heads of one query row make
 * 40000 work items, so nothing else caps the team here. */
Test(threads, huge_num_threads_is_capped) {
    cr_expect_eq(ta_team_size(5), 5);
    cr_expect_eq(ta_team_size(INT_MAX), TA_MAX_THREADS);
    cr_expect_eq(ta_team_size(0), ta_default_threads());
    th_case c = th_case_default();
    c.h = c.hk = 40000, c.sq = 1, c.sk = 3, c.d = 8;
    c.num_threads = INT_MAX;
    cr_assert_eq(th_run_case(&c, 7, NULL, NULL), 0);
}

/* Bound, not bound, forced: the same bits, and the caller's affinity as it was. */
Test(threads, forward_bound_or_not_gives_the_same_bits) {
    unsetenv("OMP_PROC_BIND"), unsetenv("OMP_PLACES");
    unsetenv("GOMP_CPU_AFFINITY"), unsetenv("KMP_AFFINITY");
    int cores = ta_topology_get()->cores;
    size_t bytes = (size_t)S * H * D * 4;
    static const char *modes[] = {NULL, "0", "1"};
    float *o[3];
    cpu_set_t before = affinity();
    char buf[4096];
    for (int m = 0; m < 3; m++) {
        if (modes[m])
            setenv("TILEATTN_BIND_THREADS", modes[m], 1);
        else
            unsetenv("TILEATTN_BIND_THREADS");
        o[m] = th_alloc(bytes);
        fproblem p = make_forward(o[m], cores);
        cr_assert_eq(tileattn_describe_plan(&p.a, buf, sizeof buf), TILEATTN_OK);
        cr_expect(strstr(buf, "threads: ") != NULL, "%s", buf);
        cr_assert_eq(tileattn_forward(&p.a), TILEATTN_OK);
        cpu_set_t after = affinity();
        cr_expect(CPU_EQUAL(&before, &after), "mode %s: the caller's affinity changed",
                  modes[m] ? modes[m] : "default");
        free_forward(&p);
    }
    cr_expect(memcmp(o[0], o[1], bytes) == 0 && memcmp(o[0], o[2], bytes) == 0,
              "O depends on the binding");
    for (int m = 0; m < 3; m++)
        th_free(o[m]);
}

/* A bad value: forward and backward refuse it, writing nothing. */
Test(threads, bad_env_refused_before_writing) {
    size_t bytes = (size_t)S * H * D * 4;
    unsigned char *o = th_alloc(bytes);
    setenv("TILEATTN_BIND_THREADS", "yes", 1);
    fproblem p = make_forward((float *)o, 0);
    memset(o, 0xab, bytes);
    char buf[4096];
    cr_expect_eq(tileattn_forward(&p.a), TILEATTN_ERR_BAD_ENV);
    cr_expect_eq(tileattn_describe_plan(&p.a, buf, sizeof buf), TILEATTN_ERR_BAD_ENV);
    for (size_t i = 0; i < bytes; i++)
        cr_assert_eq(o[i], 0xab, "forward wrote O");

    /* The backward, from a forward computed without the variable. */
    unsetenv("TILEATTN_BIND_THREADS");
    float *lse = th_alloc((size_t)H * S * 4);
    p.a.lse = lse;
    cr_assert_eq(tileattn_forward(&p.a), TILEATTN_OK);
    setenv("TILEATTN_BIND_THREADS", "2", 1);
    unsigned char *grads[3];
    tileattn_backward_args b;
    tileattn_backward_args_init(&b);
    b.fwd = p.a;
    b.o = tileattn_tensor_contiguous(o, S, H, D);
    b.d_o = tileattn_tensor_contiguous(p.v, S, H, D); /* any values */
    b.lse = lse;
    tileattn_tensor_out *outs[3] = {&b.dq, &b.dk, &b.dv};
    for (int g = 0; g < 3; g++) {
        grads[g] = th_alloc(bytes);
        memset(grads[g], 0xcd, bytes);
        *outs[g] = tileattn_tensor_out_contiguous(grads[g], S, H, D);
    }
    cr_expect_eq(tileattn_backward(&b), TILEATTN_ERR_BAD_ENV);
    for (int g = 0; g < 3; g++) {
        for (size_t i = 0; i < bytes; i++)
            cr_assert_eq(grads[g][i], 0xcd, "backward wrote gradient %d", g);
        th_free(grads[g]);
    }
    th_free(lse), th_free(o);
    free_forward(&p);
}
