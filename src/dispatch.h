/*
 * The one place that picks the microkernels: from the CPU's and the OS's
 * features, once, at first use. Nothing else in the library names an ISA.
 */
#ifndef TILEATTN_DISPATCH_H
#define TILEATTN_DISPATCH_H

#include "tileattn.h"
#include "ukernel.h"

/* What the CPU (and the OS, through XCR0 on x86, HWCAP on AArch64) allows. */
typedef struct ta_cpu_features {
    int avx2, fma, f16c;
    int avx512f, avx512bw, avx512vl, avx512dq, avx512_bf16;
    int amx_bf16, amx_tile, amx_granted; /* granted: the kernel gave us the tile state */
    int intel;                           /* cpuid vendor GenuineIntel */
    /* AArch64: Advanced SIMD, its FP16 arithmetic (ASIMDHP), the FP16
     * widening multiply-add FMLAL (ASIMDFHM), BFDOT/BFMMLA/BFMLAL (BF16). */
    int asimd, asimdhp, asimdfhm, bf16;
} ta_cpu_features;

const ta_cpu_features *ta_cpu_features_get(void);

/* Whether this CPU runs the table of that name ("avx2", "avx512", "neon",
 * ...; 0 for a name this build has no table of): the one test of features,
 * shared with the backward's and the decoding's own kernel tables. */
int ta_cpu_runs_isa(const char *isa);

/* The best table in use: the best the CPU runs, or what TILEATTN_ISA
 * forces (never a higher one than the CPU has). It may serve only some
 * input dtypes (ukernel.h). NULL with *status set when TILEATTN_ISA is not
 * a known name. */
const ta_ukernels *ta_ukernels_select(tileattn_status *status);

/* The table for inputs of one dtype: the best at or below
 * ta_ukernels_select's that serves it. NULL as above. */
const ta_ukernels *ta_ukernels_for_dtype(tileattn_dtype dtype, tileattn_status *status);

/* Convenience for tests: the selected table, or scalar when selection failed. */
const ta_ukernels *ta_ukernels_selected(void);

/* Every table this CPU can run, portable first, best last. Returns how many
 * were written (at most max). */
int ta_ukernels_all(const ta_ukernels **list, int max);

/* Why the selected table was chosen, for `tileattn info`. */
const char *ta_dispatch_reason(void);

#endif /* TILEATTN_DISPATCH_H */
