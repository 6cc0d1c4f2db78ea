/*
 * Argument checks shared by every entry point. Everything is checked before
 * anything is written, so a failing call leaves its outputs untouched.
 */
#include <math.h>
#include <stdint.h>

#include "desc.h"

#define CHECK(cond, status)                                                                        \
    do {                                                                                           \
        if (!(cond)) return (status);                                                              \
    } while (0)

static int is_storage_dtype(tileattn_dtype d, int allow_f64) {
    return d == TILEATTN_F32 || d == TILEATTN_F16 || d == TILEATTN_BF16 ||
           (allow_f64 && d == TILEATTN_F64);
}

/* Checks that every element offset a [n0, n1, n2, dim] view reaches, and the
 * same offset in bytes, fits in ptrdiff_t; strides may be negative (a
 * reversed axis) or zero (a broadcast input). Extents of 1 ignore their
 * stride. */
tileattn_status ta_check_view(const int64_t n[3], const int64_t stride[3], int64_t dim,
                              size_t elem_size) {
    int64_t lo = 0, hi = dim - 1; /* the smallest and largest offsets */
    for (int a = 0; a < 3; a++) {
        int64_t step;
        CHECK(!__builtin_mul_overflow(n[a] - 1, stride[a], &step), TILEATTN_ERR_OVERFLOW);
        CHECK(!__builtin_add_overflow(step < 0 ? lo : hi, step, step < 0 ? &lo : &hi),
              TILEATTN_ERR_OVERFLOW);
    }
    int64_t bytes, end; /* one past the largest offset, in elements then bytes */
    CHECK(!__builtin_add_overflow(hi, 1, &end), TILEATTN_ERR_OVERFLOW);
    CHECK(!__builtin_mul_overflow(end, (int64_t)elem_size, &bytes), TILEATTN_ERR_OVERFLOW);
    CHECK(!__builtin_mul_overflow(lo, (int64_t)elem_size, &bytes), TILEATTN_ERR_OVERFLOW);
    return TILEATTN_OK;
}

/* O must not write one element twice: with its axes sorted by |stride|,
 * each stride must step over everything the smaller axes span. */
int ta_view_is_injective(const int64_t n[3], const int64_t stride[3], int64_t dim) {
    int64_t s[3], e[3];
    int count = 0;
    for (int a = 0; a < 3; a++)
        if (n[a] > 1) {
            s[count] = stride[a] < 0 ? -stride[a] : stride[a];
            e[count] = n[a];
            count++;
        }
    for (int i = 1; i < count; i++) /* insertion sort by stride */
        for (int j = i; j > 0 && s[j] < s[j - 1]; j--) {
            int64_t ts = s[j], te = e[j];
            s[j] = s[j - 1], e[j] = e[j - 1];
            s[j - 1] = ts, e[j - 1] = te;
        }
    int64_t span = dim;
    for (int i = 0; i < count; i++) {
        if (s[i] < span) return 0;
        span = s[i] * e[i]; /* cannot overflow: ta_check_view bounded it */
    }
    return 1;
}

int ta_no_buffer_passed_twice(const ta_buffer *bufs, int n) {
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (bufs[i].data && bufs[i].data == bufs[j].data &&
                (bufs[i].written || bufs[j].written))
                return 0;
    return 1;
}

tileattn_status ta_check_alibi_and_sinks(const float *slopes, int64_t stride_b, int64_t batch,
                                         int64_t heads, const float *sinks) {
    if (slopes) {
        int64_t last;
        CHECK(stride_b >= 0, TILEATTN_ERR_BAD_VALUE);
        CHECK(stride_b == 0 || stride_b >= heads, TILEATTN_ERR_SHAPE_MISMATCH);
        /* The last slope's index, and its byte offset. */
        CHECK(!__builtin_mul_overflow(batch - 1, stride_b, &last) &&
                  !__builtin_add_overflow(last, heads - 1, &last) && last <= PTRDIFF_MAX / 4,
              TILEATTN_ERR_OVERFLOW);
        for (int64_t b = 0; b < (stride_b > 0 ? batch : 1); b++)
            for (int64_t h = 0; h < heads; h++)
                CHECK(isfinite(slopes[b * stride_b + h]), TILEATTN_ERR_BAD_VALUE);
    }
    for (int64_t h = 0; sinks && h < heads; h++)
        CHECK(!isnan(sinks[h]) && sinks[h] != INFINITY, TILEATTN_ERR_BAD_VALUE);
    return TILEATTN_OK;
}

static tileattn_status check_cu_seqlens(const int32_t *cu, int64_t batch, int64_t *total,
                                        int64_t *longest) {
    CHECK(cu[0] >= 0, TILEATTN_ERR_SHAPE_MISMATCH);
    *longest = 0;
    for (int64_t b = 0; b < batch; b++) {
        CHECK(cu[b + 1] >= cu[b], TILEATTN_ERR_SHAPE_MISMATCH);
        int64_t len = (int64_t)cu[b + 1] - cu[b];
        if (len > *longest) *longest = len;
    }
    *total = cu[batch];
    return TILEATTN_OK;
}

tileattn_status ta_validate(const tileattn_forward_args *a, ta_validate_mode mode) {
    tileattn_status st;
    CHECK(a != NULL, TILEATTN_ERR_NULL_POINTER);
    CHECK(a->q.data && a->k.data && a->v.data, TILEATTN_ERR_NULL_POINTER);
    int reference = mode == TA_VALIDATE_REFERENCE;
    CHECK(is_storage_dtype(a->dtype, reference), TILEATTN_ERR_BAD_DTYPE);

    int varlen = a->cu_seqlens_q || a->cu_seqlens_k;
    CHECK(a->batch >= 1 && a->heads_q >= 1 && a->heads_kv >= 1, TILEATTN_ERR_BAD_SIZE);
    CHECK(a->head_dim >= 1 && a->head_dim <= TILEATTN_MAX_HEAD_DIM, TILEATTN_ERR_BAD_SIZE);
    CHECK(a->head_dim_v >= 0 && a->head_dim_v <= TILEATTN_MAX_HEAD_DIM, TILEATTN_ERR_BAD_SIZE);
    if (!varlen) CHECK(a->seqlen_q >= 1 && a->seqlen_k >= 1, TILEATTN_ERR_BAD_SIZE);
    CHECK(a->heads_q % a->heads_kv == 0, TILEATTN_ERR_SHAPE_MISMATCH);
    CHECK(a->batch <= INT32_MAX && a->heads_q <= INT32_MAX, TILEATTN_ERR_BAD_SIZE);

    CHECK(isfinite(a->scale) && a->scale >= 0.0f, TILEATTN_ERR_BAD_VALUE);
    CHECK(isfinite(a->softcap) && a->softcap >= 0.0f, TILEATTN_ERR_BAD_VALUE);
    CHECK(a->window_left >= -1 && a->window_right >= -1, TILEATTN_ERR_BAD_VALUE);
    CHECK(a->causal == TILEATTN_CAUSAL_NONE || a->causal == TILEATTN_CAUSAL_BOTTOM_RIGHT ||
              a->causal == TILEATTN_CAUSAL_TOP_LEFT,
          TILEATTN_ERR_BAD_VALUE);
    CHECK(a->num_threads >= 0, TILEATTN_ERR_BAD_VALUE);
    CHECK(a->p_precision == TILEATTN_P_FLOAT32 || a->p_precision == TILEATTN_P_INPUT_DTYPE,
          TILEATTN_ERR_BAD_VALUE);

    /* Sequence extents: from cu_seqlens for varlen (one token axis). */
    int64_t batch = a->batch, sq = a->seqlen_q, sk = a->seqlen_k;
    int64_t rows_q = sq, rows_k = sk; /* tokens along the S axis of one batch entry */
    if (varlen) {
        CHECK(a->cu_seqlens_q && a->cu_seqlens_k, TILEATTN_ERR_SHAPE_MISMATCH);
        CHECK(a->bias_kind == TILEATTN_BIAS_NONE, TILEATTN_ERR_UNSUPPORTED);
        if ((st = check_cu_seqlens(a->cu_seqlens_q, batch, &rows_q, &sq))) return st;
        if ((st = check_cu_seqlens(a->cu_seqlens_k, batch, &rows_k, &sk))) return st;
        batch = 1;                   /* one packed token axis */
        if (rows_q == 0) rows_q = 1; /* nothing is read, but keep extents positive */
        if (rows_k == 0) rows_k = 1;
    }

    int64_t dv = a->head_dim_v ? a->head_dim_v : a->head_dim;
    size_t es = tileattn_dtype_size(a->dtype);
    int64_t nq[3] = {batch, rows_q, a->heads_q}, nk[3] = {batch, rows_k, a->heads_kv};
    int64_t qs[3] = {varlen ? 0 : a->q.stride_b, a->q.stride_s, a->q.stride_h};
    int64_t ks[3] = {varlen ? 0 : a->k.stride_b, a->k.stride_s, a->k.stride_h};
    int64_t vs[3] = {varlen ? 0 : a->v.stride_b, a->v.stride_s, a->v.stride_h};
    int64_t os[3] = {varlen ? 0 : a->o.stride_b, a->o.stride_s, a->o.stride_h};
    if ((st = ta_check_view(nq, qs, a->head_dim, es))) return st;
    if ((st = ta_check_view(nk, ks, a->head_dim, es))) return st;
    if ((st = ta_check_view(nk, vs, dv, es))) return st;
    if (!reference) { /* the reference writes its own contiguous arrays, never args->o */
        if ((st = ta_check_view(nq, os, dv, es))) return st;
        if (a->o.data) CHECK(ta_view_is_injective(nq, os, dv), TILEATTN_ERR_SHAPE_MISMATCH);
        const ta_buffer bufs[5] = {
            {a->q.data, 0}, {a->k.data, 0}, {a->v.data, 0}, {a->o.data, 1}, {a->lse, 1}};
        CHECK(ta_no_buffer_passed_twice(bufs, 5), TILEATTN_ERR_SHAPE_MISMATCH);
    }

    /* Every product the kernels form: B*H*Sq rows (LSE), Sq*Sk per head. */
    int64_t rows, tmp;
    CHECK(!__builtin_mul_overflow(batch, rows_q, &rows), TILEATTN_ERR_OVERFLOW);
    CHECK(!__builtin_mul_overflow(rows, a->heads_q, &rows), TILEATTN_ERR_OVERFLOW);
    CHECK(!__builtin_mul_overflow(rows, (int64_t)sizeof(double) * TILEATTN_MAX_HEAD_DIM, &tmp),
          TILEATTN_ERR_OVERFLOW);
    CHECK(!__builtin_mul_overflow(sq, sk, &tmp), TILEATTN_ERR_OVERFLOW);
    CHECK(!__builtin_mul_overflow(tmp, a->head_dim + dv, &tmp), TILEATTN_ERR_OVERFLOW);

    if ((st = ta_check_alibi_and_sinks(a->alibi_slopes, a->alibi_stride_b, a->batch, a->heads_q,
                                       a->sinks)))
        return st;

    switch (a->bias_kind) {
    case TILEATTN_BIAS_NONE: break;
    case TILEATTN_BIAS_ADDITIVE:
        CHECK(a->bias_dtype == TILEATTN_F32 || a->bias_dtype == TILEATTN_F16 ||
                  a->bias_dtype == TILEATTN_BF16,
              TILEATTN_ERR_BAD_DTYPE);
        /* fall through */
    case TILEATTN_BIAS_BOOL_MASK: {
        CHECK(a->bias != NULL, TILEATTN_ERR_NULL_POINTER);
        int64_t nb[3] = {a->batch, a->heads_q, sq};
        int64_t bs[3] = {a->bias_stride_b, a->bias_stride_h, a->bias_stride_q};
        size_t bes =
            a->bias_kind == TILEATTN_BIAS_BOOL_MASK ? 1 : tileattn_dtype_size(a->bias_dtype);
        if ((st = ta_check_view(nb, bs, sk, bes))) return st;
        break;
    }
    default: return TILEATTN_ERR_BAD_VALUE;
    }
    return TILEATTN_OK;
}

tileattn_status tileattn_validate(const tileattn_forward_args *args) {
    tileattn_status st = ta_validate(args, TA_VALIDATE_KERNEL);
    if (st) return st;
    return args->o.data ? TILEATTN_OK : TILEATTN_ERR_NULL_POINTER;
}
