/*
 * CPU feature detection (x86: cpuid + xgetbv, so a feature the OS does not
 * save on context switch is treated as absent; AArch64: the kernel's HWCAP
 * and HWCAP2 words, which list only what it enables for user space) and the
 * choice of microkernels.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* syscall(), for the AMX permission request */
#include "dispatch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tileattn_config.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
/* The bits of linux/arch/arm64/include/uapi/asm/hwcap.h, in case the C
 * library's headers predate them. */
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1UL << 1)
#endif
#ifndef HWCAP_ASIMDHP
#define HWCAP_ASIMDHP (1UL << 10)
#endif
#ifndef HWCAP_ASIMDFHM
#define HWCAP_ASIMDFHM (1UL << 23)
#endif
#ifndef HWCAP2_BF16
#define HWCAP2_BF16 (1UL << 14)
#endif
#endif

static ta_cpu_features features;
static pthread_once_t features_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) || defined(__i386__)
static unsigned long long read_xcr0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

static void detect_features(void) {
    unsigned int eax, ebx, ecx, edx;
    ta_cpu_features f = {0};
    if (__get_cpuid(0, &eax, &ebx, &ecx, &edx)) /* vendor: ebx, edx, ecx */
        f.intel = ebx == 0x756e6547u && edx == 0x49656e69u && ecx == 0x6c65746eu;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) goto done;
    int osxsave = (ecx >> 27) & 1;
    f.fma = (ecx >> 12) & 1;
    f.f16c = (ecx >> 29) & 1;
    int avx = (ecx >> 28) & 1;
    unsigned long long xcr0 = osxsave ? read_xcr0() : 0;
    int os_ymm = (xcr0 & 0x6) == 0x6;         /* SSE and AVX state */
    int os_zmm = (xcr0 & 0xe6) == 0xe6;       /* plus opmask and ZMM state */
    int os_amx = (xcr0 & 0x60000) == 0x60000; /* XTILECFG and XTILEDATA */
    if (!avx || !os_ymm) {
        f.fma = f.f16c = 0;
        goto done;
    }
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) goto done;
    f.avx2 = (ebx >> 5) & 1;
    if (os_zmm) {
        f.avx512f = (ebx >> 16) & 1;
        f.avx512dq = (ebx >> 17) & 1;
        f.avx512bw = (ebx >> 30) & 1;
        f.avx512vl = (ebx >> 31) & 1;
    }
    if (os_amx) {
        f.amx_bf16 = (edx >> 22) & 1;
        f.amx_tile = (edx >> 24) & 1;
    }
    /* Linux hands out the AMX tile data state only to a process that asks
     * (arch_prctl ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA, since 5.16);
     * without the grant a tile instruction faults, so AMX counts as absent. */
    if (f.amx_tile) {
#if defined(__linux__) && defined(SYS_arch_prctl)
        enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
        f.amx_granted = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#endif
    }
    unsigned int eax1, ebx1, ecx1, edx1;
    if (os_zmm && __get_cpuid_count(7, 1, &eax1, &ebx1, &ecx1, &edx1))
        f.avx512_bf16 = (eax1 >> 5) & 1;
done:
    features = f;
}
#elif defined(__aarch64__) && defined(__linux__)
static void detect_features(void) {
    ta_cpu_features f = {0};
    unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    f.asimd = (hw & HWCAP_ASIMD) != 0;
    f.asimdhp = f.asimd && (hw & HWCAP_ASIMDHP) != 0;
    f.asimdfhm = f.asimdhp && (hw & HWCAP_ASIMDFHM) != 0;
    f.bf16 = f.asimd && (hw2 & HWCAP2_BF16) != 0;
    features = f;
}
#else
static void detect_features(void) {
    memset(&features, 0, sizeof features);
}
#endif

const ta_cpu_features *ta_cpu_features_get(void) {
    pthread_once(&features_once, detect_features);
    return &features;
}

/* Candidate tables, best first, each with what it needs from the CPU and,
 * for a table that is not faster on every CPU that runs it, where it is
 * (NULL: everywhere). A table that runs but does not pay is chosen only
 * when TILEATTN_ISA names it, and the tests still run it. */
typedef struct candidate {
    const ta_ukernels *table;
    const char *name;
    int (*runs_here)(const ta_cpu_features *f);
    int (*pays_here)(const ta_cpu_features *f);
    const char *why_not; /* when pays_here says no */
} candidate;

#if TILEATTN_HAVE_X86_SIMD
#if TILEATTN_HAVE_X86_AMX
/* AVX512_BF16 too: its P-rounding twin's softmax converts with it (every
 * AMX-BF16 CPU so far has it). */
static int runs_amx(const ta_cpu_features *f) {
    return f->amx_tile && f->amx_bf16 && f->amx_granted && f->avx512f && f->avx512bw &&
           f->avx512vl && f->avx512dq && f->avx512_bf16;
}
#endif
static int runs_avx512bf16(const ta_cpu_features *f) {
    return f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq && f->avx512_bf16;
}
/* VDPBF16PS ran at twice the FMA loop's FLOP/s on a Zen 4 and at half of
 * it on the AMX-capable Intel Xeon we measured, where the float32 kernels
 * on widened bfloat16 are the faster Q.K^T (there AMX comes first anyway;
 * this matters where AMX is not granted). Other Intel cores with
 * AVX512_BF16 were not measured and get the float32 path too. */
static int pays_avx512bf16(const ta_cpu_features *f) {
    return !f->intel;
}
static int runs_avx512(const ta_cpu_features *f) { /* its files also use FMA and F16C */
    return f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq && f->fma && f->f16c;
}
static int runs_avx2(const ta_cpu_features *f) {
    return f->avx2 && f->fma && f->f16c;
}
#endif
#if TILEATTN_HAVE_ARM_SIMD
static int runs_neonbf16(const ta_cpu_features *f) {
    return f->asimd && f->bf16;
}
static int runs_neonfhm(const ta_cpu_features *f) {
    return f->asimd && f->asimdhp && f->asimdfhm;
}
static int runs_neon(const ta_cpu_features *f) {
    return f->asimd;
}
#endif
static int runs_anywhere(const ta_cpu_features *f) {
    (void)f;
    return 1;
}

static const candidate candidates[] = {
#if TILEATTN_HAVE_X86_AMX
    {&ta_ukernels_amx, "amx", runs_amx, NULL, NULL},
#endif
#if TILEATTN_HAVE_X86_SIMD
    {&ta_ukernels_avx512bf16, "avx512bf16", runs_avx512bf16, pays_avx512bf16,
     "VDPBF16PS was measured slower than the float32 FMA kernels on Intel cores"},
    {&ta_ukernels_avx512, "avx512", runs_avx512, NULL, NULL},
    {&ta_ukernels_avx2, "avx2", runs_avx2, NULL, NULL},
#endif
#if TILEATTN_HAVE_ARM_SIMD
    {&ta_ukernels_neonbf16, "neonbf16", runs_neonbf16, NULL, NULL},
    {&ta_ukernels_neonfhm, "neonfhm", runs_neonfhm, NULL, NULL},
    {&ta_ukernels_neon, "neon", runs_neon, NULL, NULL},
#endif
    {&ta_ukernels_scalar, "scalar", runs_anywhere, NULL, NULL},
};
enum { NUM_CANDIDATES = sizeof candidates / sizeof candidates[0] };

int ta_cpu_runs_isa(const char *isa) {
    const ta_cpu_features *f = ta_cpu_features_get();
    for (int i = 0; i < NUM_CANDIDATES; i++)
        if (strcmp(candidates[i].name, isa) == 0) return candidates[i].runs_here(f);
    return 0;
}

/* The selection: the candidate of the best table in use (the best this
 * CPU runs, lowered by TILEATTN_ISA); per dtype, tables from there on. */
static int best_index = -1;
static int best_is_forced; /* TILEATTN_ISA named best_index's table */
static tileattn_status select_status;
static char reason[256];
static pthread_once_t select_once = PTHREAD_ONCE_INIT;

static void select_ukernels(void) {
    const ta_cpu_features *f = ta_cpu_features_get();
    const char *forced = getenv("TILEATTN_ISA");
    int best = -1, forced_index = -1, skipped = -1;
    for (int i = 0; i < NUM_CANDIDATES; i++) {
        if (best < 0 && candidates[i].runs_here(f)) {
            if (!candidates[i].pays_here || candidates[i].pays_here(f))
                best = i;
            else if (skipped < 0)
                skipped = i;
        }
        if (forced && *forced && strcmp(forced, candidates[i].name) == 0) forced_index = i;
    }
    if (forced && *forced && forced_index < 0) {
        /* A known ISA name that this build has no table for (e.g. avx512 on
         * ARM) falls back like a CPU that lacks it; only nonsense is an error. */
        static const char *known[] = {"scalar", "avx2", "avx512",  "avx512bf16",
                                      "amx",    "neon", "neonfhm", "neonbf16"};
        int is_known = 0;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            if (strcmp(forced, known[i]) == 0) is_known = 1;
        if (!is_known) {
            select_status = TILEATTN_ERR_BAD_ISA;
            snprintf(reason, sizeof reason, "TILEATTN_ISA=%s is not a known instruction set",
                     forced);
            return;
        }
        best_index = best;
        snprintf(reason, sizeof reason,
                 "TILEATTN_ISA=%s has no kernels in this build; using %s, the best this CPU runs",
                 forced, candidates[best].name);
        return;
    }
    if (forced_index >= 0) {
        /* Forcing may only lower the ISA: never pick what the CPU cannot run
         * (but a table that runs and does not pay may be asked for). */
        int top = skipped >= 0 && skipped < best ? skipped : best;
        best_index = forced_index < top ? best : forced_index;
        best_is_forced = best_index == forced_index;
        snprintf(reason, sizeof reason, "TILEATTN_ISA=%s%s", forced,
                 best_index != forced_index ? " is beyond this CPU; using the best it runs" : "");
        return;
    }
    best_index = best;
    if (skipped >= 0)
        snprintf(reason, sizeof reason,
                 "the best instruction set this CPU and OS support (%s skipped: %s)",
                 candidates[skipped].name, candidates[skipped].why_not);
    else
        snprintf(reason, sizeof reason, "the best instruction set this CPU and OS support");
}

const ta_ukernels *ta_ukernels_select(tileattn_status *status) {
    pthread_once(&select_once, select_ukernels);
    if (status) *status = select_status;
    return select_status ? NULL : candidates[best_index].table;
}

const ta_ukernels *ta_ukernels_for_dtype(tileattn_dtype dtype, tileattn_status *status) {
    pthread_once(&select_once, select_ukernels);
    if (status) *status = select_status;
    if (select_status) return NULL;
    const ta_cpu_features *f = ta_cpu_features_get();
    unsigned bit = (unsigned)dtype < 32 ? TA_DTYPE_BIT(dtype) : 0;
    for (int i = best_index; i < NUM_CANDIDATES; i++) {
        const candidate *c = &candidates[i];
        int pays = !c->pays_here || c->pays_here(f) || (best_is_forced && i == best_index);
        if ((c->table->dtypes & bit) && c->runs_here(f) && pays) return c->table;
    }
    return &ta_ukernels_scalar;
}

const ta_ukernels *ta_ukernels_selected(void) {
    const ta_ukernels *uk = ta_ukernels_select(NULL);
    return uk ? uk : &ta_ukernels_scalar;
}

int ta_ukernels_all(const ta_ukernels **list, int max) {
    const ta_cpu_features *f = ta_cpu_features_get();
    int count = 0;
    for (int i = NUM_CANDIDATES - 1; i >= 0 && count < max; i--)
        if (candidates[i].runs_here(f)) list[count++] = candidates[i].table;
    return count;
}

const char *ta_dispatch_reason(void) {
    ta_ukernels_select(NULL);
    return reason;
}

const char *tileattn_isa_name_for_dtype(tileattn_dtype dtype) {
    if (dtype != TILEATTN_F32 && dtype != TILEATTN_F16 && dtype != TILEATTN_BF16)
        return "none (the forward pass takes float32, float16 or bfloat16)";
    const ta_ukernels *uk = ta_ukernels_for_dtype(dtype, NULL);
    return uk ? uk->isa : "none (TILEATTN_ISA is invalid)";
}

const char *tileattn_isa_name(void) {
    const ta_ukernels *uk = ta_ukernels_select(NULL);
    return uk ? uk->isa : "none (TILEATTN_ISA is invalid)";
}
