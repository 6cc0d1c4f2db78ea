/*
 * O += P.V with P and V in bfloat16 on AMX (TDPBF16PS), 32 x 32 blocks of
 * four 16 x 16 float32 tiles: the P.V of the amx table's twin that rounds
 * P (ukernel.h, with_p_bf16).
 *
 * The reduction axis is the keys, 32 per tile step: an A tile is 16 rows
 * of P x 32 keys (64 bytes of each row, as softmax wrote it), a B tile 16
 * key pairs x 16 columns of V, which is exactly one (chunk, strip) of the
 * panel from ta_pack_v_bf16_pairs_x16. Products of two bfloat16 values are
 * exact in float32 and summed in float32 (subnormals flushed, below
 * 1.2e-38).
 *
 * Edges: a tile is loaded straight from P or the panel when all of it is
 * valid; otherwise (fewer than 16 rows left, or the last chunk of keys)
 * from a zero-padded copy of the valid part, so rows past m and keys past
 * n are zeros: neither stale P nor a hidden key's value (which may be
 * inf) reaches O. The tiles accumulate from zero and are added to O
 * through a buffer, so O is read and written only in its m x dv block.
 * Tiles: 0-3 accumulate, 4-5 hold P's two 16-row halves, 6-7 V's two
 * 16-column strips. The configuration (tiles_amx.h) is loaded per call.
 */
#include <immintrin.h>
#include <string.h>

#include "../ukernels_x86.h"
#include "tiles_amx.h"

enum { MR = 32, KC = 32 /* keys per tile step */, STRIP = 16 };

/* The A tile of rows [0, 16) from p16 (valid rows `rows`, valid keys
 * `keys`, row stride ld16 elements): P itself or a zero-padded copy. */
static const uint16_t *p_tile(const uint16_t *p16, int64_t ld16, int64_t rows, int64_t keys,
                              uint16_t *stage, int64_t *stride_bytes) {
    if (rows >= 16 && keys >= KC) {
        *stride_bytes = ld16 * 2;
        return p16;
    }
    memset(stage, 0, 16 * KC * sizeof(uint16_t));
    for (int64_t r = 0; r < rows && r < 16; r++)
        memcpy(stage + r * KC, p16 + r * ld16, (size_t)(keys < KC ? keys : KC) * sizeof(uint16_t));
    *stride_bytes = KC * 2;
    return stage;
}

/* The B tile of one (chunk, strip) with `keys` valid keys: the panel's
 * 16 x 64 bytes, or a copy without the keys past `keys`. */
static const uint16_t *v_tile(const uint16_t *tile, int64_t keys, uint16_t *stage) {
    if (keys >= KC) return tile;
    memset(stage, 0, 16 * 32 * sizeof(uint16_t));
    memcpy(stage, tile, (size_t)(keys / 2) * 64);
    if (keys & 1) /* the pair's first key only: even elements */
        for (int c = 0; c < 32; c += 2)
            stage[(keys / 2) * 32 + c] = tile[(keys / 2) * 32 + c];
    return stage;
}

void ta_pv_bf16_32x32_amx(int64_t m, int64_t n, int64_t dv, const float *p, int64_t ldp,
                          const float *v_panel, float *o, int64_t ldo) {
    int64_t strips = (dv + STRIP - 1) / STRIP, ld_chunk = strips * 512; /* bf16 per chunk */
    int64_t ld16 = 2 * ldp; /* P's row stride in bfloat16 elements */
    const uint16_t *p16 = (const uint16_t *)p, *panel = (const uint16_t *)v_panel;
    uint16_t pstage[2][16 * KC] __attribute__((aligned(64)));
    uint16_t vstage[2][16 * 32] __attribute__((aligned(64)));
    float cbuf[MR * 32] __attribute__((aligned(64)));
    ta_amx_configure_16x16_tiles();
    for (int64_t i = 0; i < m; i += MR) {
        int64_t rows = m - i < MR ? m - i : MR;
        int upper = rows > 16; /* rows 16..31 exist */
        for (int64_t s = 0; s < strips; s += 2) {
            int right = s + 1 < strips; /* columns 16..31 of this block exist */
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (int64_t k = 0; k < n; k += KC) {
                int64_t keys = n - k;
                int64_t st0, st1 = 0;
                const uint16_t *a0 = p_tile(p16 + i * ld16 + k, ld16, rows, keys, pstage[0], &st0);
                _tile_loadd(4, a0, st0);
                if (upper) {
                    const uint16_t *a1 =
                        p_tile(p16 + (i + 16) * ld16 + k, ld16, rows - 16, keys, pstage[1], &st1);
                    _tile_loadd(5, a1, st1);
                }
                const uint16_t *chunk = panel + (k / KC) * ld_chunk + s * 512;
                _tile_loadd(6, v_tile(chunk, keys, vstage[0]), 64);
                _tile_dpbf16ps(0, 4, 6);
                if (upper) _tile_dpbf16ps(2, 5, 6);
                if (right) {
                    _tile_loadd(7, v_tile(chunk + 512, keys, vstage[1]), 64);
                    _tile_dpbf16ps(1, 4, 7);
                    if (upper) _tile_dpbf16ps(3, 5, 7);
                }
            }
            _tile_stored(0, cbuf, 32 * 4);
            _tile_stored(1, cbuf + 16, 32 * 4);
            _tile_stored(2, cbuf + 16 * 32, 32 * 4);
            _tile_stored(3, cbuf + 16 * 32 + 16, 32 * 4);
            int64_t c0 = s * STRIP, cols = dv - c0 < 32 ? dv - c0 : 32;
            __mmask16 lo = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1u);
            __mmask16 hi = cols >= 32  ? 0xffff
                           : cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1u)
                                       : 0;
            for (int64_t r = 0; r < rows; r++) {
                float *out = o + (i + r) * ldo + c0;
                _mm512_mask_storeu_ps(
                    out, lo,
                    _mm512_add_ps(_mm512_maskz_loadu_ps(lo, out), _mm512_load_ps(cbuf + r * 32)));
                if (hi)
                    _mm512_mask_storeu_ps(out + 16, hi,
                                          _mm512_add_ps(_mm512_maskz_loadu_ps(hi, out + 16),
                                                        _mm512_load_ps(cbuf + r * 32 + 16)));
            }
        }
    }
}
