/*
 * The mask helpers of src/mask.h (shared by the driver, the reference and
 * the CUDA backend) against a brute-force, per-element restatement of the
 * window rule, over many random windows, offsets and tiles:
 *   - ta_key_visible, ta_first_key, ta_last_key agree with the rule;
 *   - a HIDDEN tile has no visible element (skipping it loses nothing);
 *   - a FULL tile has every element visible (not masking it is safe);
 *   - the classification is also tight (a PARTIAL tile has both kinds),
 *     so no whole tile is masked element by element needlessly.
 */
#include <criterion/criterion.h>
#include <stdio.h>

#include "helpers.h"
#include "mask.h"

/* Query i sees key j iff i + off - left <= j <= i + off + right, 0 <= j < Sk,
 * with -1 an unbounded side (include/tileattn.h). */
static int brute_visible(const ta_window *w, int64_t i, int64_t j) {
    if (j < 0 || j >= w->seqlen_k) return 0;
    if (w->left >= 0 && j < i + w->offset - w->left) return 0;
    if (w->right >= 0 && j > i + w->offset + w->right) return 0;
    return 1;
}

static ta_window random_window(th_rng *r) {
    ta_window w;
    w.seqlen_k = th_rng_int(r, 1, 70);
    int64_t seqlen_q = th_rng_int(r, 1, 70);
    w.offset = th_rng_int(r, 0, 3) == 0 ? 0 : w.seqlen_k - seqlen_q; /* top-left / bottom-right */
    if (th_rng_int(r, 0, 4) == 0) w.offset = th_rng_int(r, -80, 80);
    w.left = th_rng_int(r, 0, 2) == 0 ? -1 : th_rng_int(r, 0, 40);
    w.right = th_rng_int(r, 0, 2) == 0 ? -1 : th_rng_int(r, 0, 40);
    if (th_rng_int(r, 0, 5) == 0) w.right = 0; /* causal */
    return w;
}

Test(unit, mask_key_bounds) {
    th_rng r;
    th_rng_seed(&r, 1);
    int64_t bad = 0;
    for (int t = 0; t < 20000; t++) {
        ta_window w = random_window(&r);
        for (int64_t i = 0; i < 90; i++) {
            int64_t first = ta_first_key(&w, i), last = ta_last_key(&w, i);
            int64_t bf = -1, bl = -1;
            for (int64_t j = -2; j < w.seqlen_k + 2; j++) {
                int want = brute_visible(&w, i, j);
                if (j >= 0 && j < w.seqlen_k && ta_key_visible(&w, i, j) != want && bad++ < 5)
                    fprintf(stderr,
                            "visible(i=%lld, j=%lld) wrong: off=%lld left=%lld right=%lld "
                            "Sk=%lld\n",
                            (long long)i, (long long)j, (long long)w.offset, (long long)w.left,
                            (long long)w.right, (long long)w.seqlen_k);
                if (want) {
                    if (bf < 0) bf = j;
                    bl = j;
                }
            }
            int ok;
            if (bf < 0) /* nothing visible: the bounds must say so */
                ok = first > last || first >= w.seqlen_k || last < 0;
            else
                ok = first == bf && last == bl;
            ok = ok && first >= 0 && last <= w.seqlen_k - 1;
            if (!ok && bad++ < 5)
                fprintf(stderr,
                        "bounds of row %lld: got [%lld, %lld], visible [%lld, %lld] "
                        "(off=%lld left=%lld right=%lld Sk=%lld)\n",
                        (long long)i, (long long)first, (long long)last, (long long)bf,
                        (long long)bl, (long long)w.offset, (long long)w.left, (long long)w.right,
                        (long long)w.seqlen_k);
        }
    }
    cr_assert_eq(bad, 0, "%lld mismatches", (long long)bad);
}

/* A side wider than any sequence (up to INT64_MAX, which the API accepts)
 * is the unbounded side: the same bounds as -1, and no signed overflow on
 * the way (the sanitizer build halts on one). */
Test(unit, mask_huge_sides) {
    const int64_t huge[] = {INT64_MAX, INT64_MAX - 1, (int64_t)1 << 62, 1000};
    const int64_t offsets[] = {0, 37, -37, 200, -200};
    int64_t bad = 0;
    for (size_t o = 0; o < sizeof offsets / sizeof offsets[0]; o++)
        for (size_t h = 0; h < sizeof huge / sizeof huge[0]; h++)
            for (int side = 0; side < 3; side++) { /* left, right, both */
                ta_window w = {offsets[o], side != 1 ? huge[h] : 0, side != 0 ? huge[h] : 0, 64};
                ta_window open = {offsets[o], side != 1 ? -1 : 0, side != 0 ? -1 : 0, 64};
                for (int64_t i = 0; i < 100; i++)
                    if ((ta_first_key(&w, i) != ta_first_key(&open, i) ||
                         ta_last_key(&w, i) != ta_last_key(&open, i)) &&
                        bad++ < 5)
                        fprintf(stderr,
                                "row %lld, offset %lld, side %d = %lld: [%lld, %lld] "
                                "against [%lld, %lld] unbounded\n",
                                (long long)i, (long long)offsets[o], side, (long long)huge[h],
                                (long long)ta_first_key(&w, i), (long long)ta_last_key(&w, i),
                                (long long)ta_first_key(&open, i),
                                (long long)ta_last_key(&open, i));
            }
    cr_assert_eq(bad, 0, "%lld rows differ from the unbounded window", (long long)bad);
}

Test(unit, mask_classify_tile) {
    th_rng r;
    th_rng_seed(&r, 2);
    int64_t unsafe = 0, loose = 0, kinds[3] = {0, 0, 0};
    for (int t = 0; t < 200000; t++) {
        ta_window w = random_window(&r);
        int64_t i0 = th_rng_int(&r, 0, 80), m = th_rng_int(&r, 1, 20);
        int64_t j0 = th_rng_int(&r, 0, w.seqlen_k - 1);
        int64_t n = th_rng_int(&r, 1, w.seqlen_k - j0 < 20 ? w.seqlen_k - j0 : 20);
        ta_tile_kind kind = ta_classify_tile(&w, i0, m, j0, n);
        int64_t visible = 0;
        for (int64_t i = i0; i < i0 + m; i++)
            for (int64_t j = j0; j < j0 + n; j++)
                visible += brute_visible(&w, i, j);
        cr_assert(kind == TA_TILE_HIDDEN || kind == TA_TILE_FULL || kind == TA_TILE_PARTIAL);
        kinds[kind]++;
        int is_unsafe =
            (kind == TA_TILE_HIDDEN && visible != 0) || (kind == TA_TILE_FULL && visible != m * n);
        int is_loose = kind == TA_TILE_PARTIAL && (visible == 0 || visible == m * n);
        if ((is_unsafe && unsafe++ < 5) || (is_loose && loose++ < 5))
            fprintf(stderr,
                    "%s: tile rows [%lld, +%lld) keys [%lld, +%lld) off=%lld left=%lld "
                    "right=%lld Sk=%lld: kind %d, %lld of %lld visible\n",
                    is_unsafe ? "UNSAFE" : "loose", (long long)i0, (long long)m, (long long)j0,
                    (long long)n, (long long)w.offset, (long long)w.left, (long long)w.right,
                    (long long)w.seqlen_k, (int)kind, (long long)visible, (long long)(m * n));
    }
    cr_log_info("tiles: %lld hidden, %lld full, %lld partial", (long long)kinds[0],
                (long long)kinds[1], (long long)kinds[2]);
    /* Every kind must occur, or the test proves little. */
    cr_expect_gt(kinds[TA_TILE_HIDDEN], 1000);
    cr_expect_gt(kinds[TA_TILE_FULL], 1000);
    cr_expect_gt(kinds[TA_TILE_PARTIAL], 1000);
    cr_assert_eq(unsafe, 0, "%lld tiles misclassified (wrong results)", (long long)unsafe);
    cr_expect_eq(loose, 0, "%lld tiles classified PARTIAL that are all hidden or all visible",
                 (long long)loose);
}
