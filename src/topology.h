/* What the planner needs to know about the machine: cache sizes and cores. */
#ifndef TILEATTN_TOPOLOGY_H
#define TILEATTN_TOPOLOGY_H

#include <stddef.h>

typedef struct ta_topology {
    size_t l1d_bytes;   /* per core */
    size_t l2_bytes;    /* per core (an L2 shared by a cluster is divided among its cores) */
    size_t l3_bytes;    /* whole last-level cache */
    int cores;          /* physical cores */
    int pus;            /* hardware threads */
    const char *source; /* "hwloc", "sysfs" or "defaults" */
} ta_topology;

/* Read once (thread-safe), then cached for the life of the process. */
const ta_topology *ta_topology_get(void);

/* The loaded hwloc topology (an hwloc_topology_t) the numbers above came
 * from, or NULL where hwloc is absent or did not answer. */
void *ta_topology_hwloc(void);

/* The sysfs fallback's core count: the distinct (physical_package_id,
 * core_id) pairs of cpu_dir/cpuN/topology for the n CPUs listed (the
 * hardware threads of one core share a pair). 0 when a CPU's files are
 * missing or unreadable. cpu_dir is /sys/devices/system/cpu but for tests. */
int ta_sysfs_count_cores(const char *cpu_dir, const int *cpus, int n);

#endif /* TILEATTN_TOPOLOGY_H */
