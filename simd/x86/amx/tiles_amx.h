/*
 * The AMX tile configuration both amx kernels use: palette 1, tiles 0-7
 * each 16 rows of 64 bytes (16 float32 or 32 bfloat16 per row).
 *
 * ldtilecfg's 64-byte operand is laid out by the ISA: palette, start row,
 * 14 reserved bytes, then the bytes per row of the 16 tiles and their rows.
 * A kernel loads it on every call: AMX state is per thread, and the cost is
 * small next to a block's work.
 */
#ifndef TILEATTN_SIMD_X86_AMX_TILES_AMX_H
#define TILEATTN_SIMD_X86_AMX_TILES_AMX_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

typedef struct ta_amx_tile_config {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} ta_amx_tile_config;

static inline void ta_amx_configure_16x16_tiles(void) {
    ta_amx_tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette_id = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    _tile_loadconfig(&cfg);
}

#endif
