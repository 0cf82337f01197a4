// rms_norm.cu: RMSNorm with a learned weight over rows of width h (sana: the caption norm
// after the caption projection, and qk_norm "rms_norm_across_heads" on q and k):
//
//   rms_norm_T(x, x_stride, out, out_stride, weight, rows, h, eps)
//     out[r·out_stride + j] = x[r·x_stride + j] · rsqrt(Σ_j x[r·x_stride + j]² / h + eps) · w[j]
//
// x, out and weight are T; the sum of squares, the scaling and the product are fp32 and the
// result is rounded once into T (the CPU twin, src/backends/cpu/sana/attention.rs
// rms_norm_rows; diffusers' RMSNorm also rounds to the weight's dtype before the weight
// multiply in bf16/fp16, a second rounding we do not copy). The strides let q and k be
// normalised in place inside a fused qkv row (x = out = qkv + part·h, stride 3h): every value
// is read before the same thread writes it, so x == out is allowed (partial overlap is not).
//
// How the rows are spread, chosen inside the kernel (as layer_norm_modulate.cu). When
// h % 8 == 0, both strides are multiples of 8 and x, out and weight are 16-byte aligned, each
// thread holds up to 32 values of its row in registers, moved 8 at a time with 128-bit
// accesses: h ≤ 1024 one warp per row (8 rows per block, shuffles only), h ≤ 8192 one block
// per row. Otherwise (odd h, misaligned, or h > 8192) one block per row strides over the row
// and reads it twice (the second time from L2).
//
// Launch: block LDT_THREADS (256), grid.x = h <= 1024 ? ceil(rows / 8) : rows (the kernel
// strides over rows: any grid.x ≥ 1 is correct), no dynamic shared memory.

#include "common.cuh"

// h up to this: one warp per row (the same bound as LN_WARP_MAX_H).
#define RMS_WARP_MAX_H 1024
// h up to this: the row fits in the registers of one block.
#define RMS_BLOCK_MAX_H 8192
// Values held per thread on the register paths.
#define RMS_PER_THREAD 32

template <typename T> struct RmsArgs {
    const T* x;
    int x_stride;
    T* out;
    int out_stride;
    const T* weight;
    int rows;
    int h;
    float eps;
};

// One row by a team of TEAM threads (a warp or the whole block); t is the thread's index in
// it. Thread t holds values 8(t + s·TEAM) … +7, s < RMS_PER_THREAD / 8.
template <typename T, int TEAM>
LDT_DEVICE void rms_row_registers(const RmsArgs<T>& a, int row, int t, float* red) {
    constexpr int W = 8;
    constexpr int STEPS = RMS_PER_THREAD / W;
    const T* x = a.x + (long long)row * a.x_stride;
    T* out = a.out + (long long)row * a.out_stride;
    float v[RMS_PER_THREAD];
    float sq = 0.0f;
#pragma unroll
    for (int s = 0; s < STEPS; ++s) {
        const int j = (t + s * TEAM) * W;
        float xv[W];
        if (j < a.h) {
            load_vec<W>(x + j, xv);
        } else {
#pragma unroll
            for (int e = 0; e < W; ++e) {
                xv[e] = 0.0f;
            }
        }
#pragma unroll
        for (int e = 0; e < W; ++e) {
            v[s * W + e] = xv[e];
            sq += xv[e] * xv[e];
        }
    }
    float total;
    if constexpr (TEAM == 32) {
        total = warp_sum(sq);
    } else {
        total = block_sum(sq, red);
    }
    const float inv = rsqrtf(total / (float)a.h + a.eps);
#pragma unroll
    for (int s = 0; s < STEPS; ++s) {
        const int j = (t + s * TEAM) * W;
        if (j < a.h) {
            float wv[W], ov[W];
            load_vec<W>(a.weight + j, wv);
#pragma unroll
            for (int e = 0; e < W; ++e) {
                ov[e] = v[s * W + e] * inv * wv[e];
            }
            store_vec<W>(out + j, ov);
        }
    }
}

// Any h, stride and alignment: the block strides over the row twice.
template <typename T> LDT_DEVICE void rms_row_streamed(const RmsArgs<T>& a, int row, float* red) {
    const T* x = a.x + (long long)row * a.x_stride;
    T* out = a.out + (long long)row * a.out_stride;
    float sq = 0.0f;
    for (int j = threadIdx.x; j < a.h; j += LDT_THREADS) {
        const float v = to_float(x[j]);
        sq += v * v;
    }
    const float inv = rsqrtf(block_sum(sq, red) / (float)a.h + a.eps);
    for (int j = threadIdx.x; j < a.h; j += LDT_THREADS) {
        out[j] = from_float<T>(to_float(x[j]) * inv * to_float(a.weight[j]));
    }
}

template <typename T> LDT_DEVICE void rms_norm(const RmsArgs<T>& a) {
    __shared__ float red[LDT_THREADS / 32];
    const bool vec = a.h % 8 == 0 && a.x_stride % 8 == 0 && a.out_stride % 8 == 0 &&
                     is_aligned(a.x, 16) && is_aligned(a.out, 16) && is_aligned(a.weight, 16);
    if (vec && a.h <= RMS_WARP_MAX_H) {
        constexpr int ROWS_PER_BLOCK = LDT_THREADS / 32;
        const int warp = threadIdx.x >> 5;
        for (int row = blockIdx.x * ROWS_PER_BLOCK + warp; row < a.rows;
             row += gridDim.x * ROWS_PER_BLOCK) {
            rms_row_registers<T, 32>(a, row, threadIdx.x & 31, red);
        }
    } else if (vec && a.h <= RMS_BLOCK_MAX_H) {
        for (int row = blockIdx.x; row < a.rows; row += gridDim.x) {
            rms_row_registers<T, LDT_THREADS>(a, row, threadIdx.x, red);
        }
    } else {
        for (int row = blockIdx.x; row < a.rows; row += gridDim.x) {
            rms_row_streamed<T>(a, row, red);
        }
    }
}

#define LDT_RMS_NORM(SUFFIX, T)                                                               \
    extern "C" __global__ void __launch_bounds__(LDT_THREADS)                                 \
        rms_norm_##SUFFIX(const T* x, int x_stride, T* out, int out_stride, const T* weight,  \
                          int rows, int h, float eps) {                                       \
        const RmsArgs<T> a = {x, x_stride, out, out_stride, weight, rows, h, eps};            \
        rms_norm<T>(a);                                                                       \
    }

LDT_RMS_NORM(f32, float)
LDT_RMS_NORM(bf16, bf16_t)
LDT_RMS_NORM(f16, half_t)
