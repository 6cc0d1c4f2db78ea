/*
 * Cache sizes from hwloc, with a Linux sysfs fallback, and conservative
 * defaults when neither answers. The tiles are sized from these numbers,
 * so L1/L2 play the role of a GPU's shared memory.
 */
#define _GNU_SOURCE /* sched_getaffinity */
#include "topology.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tileattn_config.h"

#if TILEATTN_HAVE_HWLOC
#include <hwloc.h>
#endif

static ta_topology topology;
static pthread_once_t topology_once = PTHREAD_ONCE_INIT;

#if TILEATTN_HAVE_HWLOC
/* Kept loaded for the life of the process: threads.c binds threads with it. */
static hwloc_topology_t hwloc_topo;

/* The caches above the first core, and the core and PU counts (of the
 * cores this process may run on: hwloc leaves out the others). */
static int read_hwloc(ta_topology *t) {
    hwloc_topology_t topo;
    if (hwloc_topology_init(&topo) != 0) return 0;
    if (hwloc_topology_load(topo) != 0) {
        hwloc_topology_destroy(topo);
        return 0;
    }
    hwloc_obj_t pu = hwloc_get_obj_by_type(topo, HWLOC_OBJ_PU, 0);
    for (hwloc_obj_t o = pu ? pu->parent : NULL; o; o = o->parent) {
        if (!hwloc_obj_type_is_dcache(o->type) || !o->attr) continue;
        size_t size = (size_t)o->attr->cache.size;
        int sharing = hwloc_get_nbobjs_inside_cpuset_by_type(topo, o->cpuset, HWLOC_OBJ_CORE);
        if (sharing < 1) sharing = 1;
        switch (o->attr->cache.depth) {
        case 1: t->l1d_bytes = size; break;
        case 2: t->l2_bytes = size / (size_t)sharing; break;
        case 3: t->l3_bytes = size; break;
        default: break;
        }
    }
    t->cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
    t->pus = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
    hwloc_topo = topo;
    return t->l1d_bytes && t->l2_bytes;
}
#endif

static size_t read_sysfs_size(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char buf[64] = {0};
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    if (got == 0) return 0;
    char *end;
    unsigned long long v = strtoull(buf, &end, 10);
    if (*end == 'K')
        v *= 1024ull;
    else if (*end == 'M')
        v *= 1024ull * 1024ull;
    return (size_t)v;
}

/* /sys/devices/system/cpu/cpu0/cache/indexN/{level,type,size,shared_cpu_list}. */
static int read_sysfs(ta_topology *t) {
    for (int idx = 0; idx < 8; idx++) {
        char path[128], type[32] = {0};
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", idx);
        FILE *f = fopen(path, "r");
        if (!f) break;
        size_t got = fread(type, 1, sizeof type - 1, f);
        fclose(f);
        if (got == 0 || strncmp(type, "Instruction", 11) == 0) continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", idx);
        size_t level = read_sysfs_size(path);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", idx);
        size_t size = read_sysfs_size(path);
        if (level == 1)
            t->l1d_bytes = size;
        else if (level == 2)
            t->l2_bytes = size;
        else if (level == 3)
            t->l3_bytes = size;
    }
    /* The CPUs this process may run on, as hwloc counts them. */
    int cpus[CPU_SETSIZE];
    int n = 0;
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) == 0) {
        for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
            if (CPU_ISSET(cpu, &allowed)) cpus[n++] = cpu;
    }
    if (n == 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        t->pus = online > 0 ? (int)online : 1;
        t->cores = t->pus;
    } else {
        int cores = ta_sysfs_count_cores("/sys/devices/system/cpu", cpus, n);
        t->pus = n;
        t->cores = cores > 0 ? cores : n; /* unknown: a core per hardware thread */
    }
    return t->l1d_bytes && t->l2_bytes;
}

/* Reads one non-negative integer from dir/cpuN/topology/name, or -1. */
static long read_cpu_topology(const char *dir, int cpu, const char *name) {
    char path[256];
    snprintf(path, sizeof path, "%s/cpu%d/topology/%s", dir, cpu, name);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long v = -1;
    if (fscanf(f, "%ld", &v) != 1) v = -1;
    fclose(f);
    return v;
}

int ta_sysfs_count_cores(const char *cpu_dir, const int *cpus, int n) {
    /* The hardware threads of a core share its (package, core id). */
    long(*seen)[2] = malloc((size_t)(n > 0 ? n : 1) * sizeof *seen);
    if (!seen) return 0;
    int cores = 0;
    for (int i = 0; i < n; i++) {
        long package = read_cpu_topology(cpu_dir, cpus[i], "physical_package_id");
        long core = read_cpu_topology(cpu_dir, cpus[i], "core_id");
        if (package < 0 || core < 0) {
            cores = 0;
            break;
        }
        int known = 0;
        for (int k = 0; k < cores && !known; k++)
            known = seen[k][0] == package && seen[k][1] == core;
        if (!known) seen[cores][0] = package, seen[cores][1] = core, cores++;
    }
    free(seen);
    return cores;
}

static void read_topology(void) {
    ta_topology t = {0};
    t.source = "defaults";
#if TILEATTN_HAVE_HWLOC
    if (read_hwloc(&t))
        t.source = "hwloc";
    else
#endif
        if (read_sysfs(&t))
        t.source = "sysfs";
    /* Conservative defaults (a 2015-era core) for whatever is still unknown. */
    if (!t.l1d_bytes) t.l1d_bytes = 32 * 1024;
    if (!t.l2_bytes) t.l2_bytes = 256 * 1024;
    if (!t.l3_bytes) t.l3_bytes = 8 * 1024 * 1024;
    if (t.cores < 1) t.cores = 1;
    if (t.pus < t.cores) t.pus = t.cores;
    topology = t;
}

const ta_topology *ta_topology_get(void) {
    pthread_once(&topology_once, read_topology);
    return &topology;
}

void *ta_topology_hwloc(void) {
    pthread_once(&topology_once, read_topology);
#if TILEATTN_HAVE_HWLOC
    return hwloc_topo;
#else
    return NULL;
#endif
}
