/*
 * Which keys a query sees, and which tiles a mask hides: shared by the
 * driver, the reference and (compiled for the device too) the CUDA backend,
 * so that every backend skips exactly the same tiles.
 *
 * Query i (0-based inside its sequence) sees key j iff
 *   i + off - left <= j <= i + off + right,
 * with off = Sk - Sq (bottom-right alignment) or 0 (top-left), and a side
 * of -1 unbounded. Both bounds grow with i, which is what makes whole-tile
 * decisions cheap.
 */
#ifndef TILEATTN_MASK_H
#define TILEATTN_MASK_H

#include <stdint.h>

#ifdef __CUDACC__
#define TA_HOST_DEVICE __host__ __device__
#else
#define TA_HOST_DEVICE
#endif

typedef struct ta_window {
    int64_t offset; /* Sk - Sq, or 0 when aligned top-left */
    int64_t left;   /* -1 = unbounded */
    int64_t right;  /* -1 = unbounded */
    int64_t seqlen_k;
} ta_window;

/* First key query i may see (may be >= seqlen_k: none). A side may be any
 * int64 up to INT64_MAX: it is compared before it is added, so a window
 * wider than the sequence is the unbounded one, not an overflow. */
static inline TA_HOST_DEVICE int64_t ta_first_key(const ta_window *w, int64_t i) {
    int64_t centre = i + w->offset; /* |i|, |offset| are token counts */
    if (w->left < 0 || w->left >= centre) return 0;
    return centre - w->left;
}

/* Last key query i may see (may be < 0: none). */
static inline TA_HOST_DEVICE int64_t ta_last_key(const ta_window *w, int64_t i) {
    int64_t centre = i + w->offset;
    if (w->right < 0 || w->right >= w->seqlen_k - 1 - centre) return w->seqlen_k - 1;
    return centre + w->right;
}

static inline TA_HOST_DEVICE int ta_key_visible(const ta_window *w, int64_t i, int64_t j) {
    return j >= ta_first_key(w, i) && j <= ta_last_key(w, i);
}

typedef enum ta_tile_kind {
    TA_TILE_HIDDEN = 0,  /* no query of the tile sees any of its keys: skip */
    TA_TILE_FULL = 1,    /* every query sees every key: no per-element mask */
    TA_TILE_PARTIAL = 2, /* a boundary tile: evaluate the mask per element */
} ta_tile_kind;

/* Classifies queries [i0, i0+m) against keys [j0, j0+n). */
static inline TA_HOST_DEVICE ta_tile_kind ta_classify_tile(const ta_window *w, int64_t i0,
                                                           int64_t m, int64_t j0, int64_t n) {
    int64_t i1 = i0 + m - 1, j1 = j0 + n - 1;
    if (ta_last_key(w, i1) < j0 || ta_first_key(w, i0) > j1) return TA_TILE_HIDDEN;
    if (ta_first_key(w, i1) <= j0 && ta_last_key(w, i0) >= j1) return TA_TILE_FULL;
    return TA_TILE_PARTIAL;
}

#endif /* TILEATTN_MASK_H */
