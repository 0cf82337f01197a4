// layer_norm_modulate.cu: LayerNorm fused with what surrounds it in the block, the AdaLN
// modulation after and the gated residual before. Every normalisation point of the model is
// `LN(x) * scale + shift` with per-sample scale and shift (modulation.cu folds 1 + s, γ and β
// into them), so two kernels serve them all:
//
//   norm_modulate_T(x, out, scale, shift, rows, h, tokens, eps)
//       out[r,j] = (x[r,j] - mean_r) * rstd_r * scale[b,j] + shift[b,j],   b = r / tokens
//   residual_norm_modulate_T(x, y, bias, gate, gate_stride, out, scale, shift, rows, h, tokens, eps)
//       x[r,j] += gate[b*gate_stride + j] * (y[r,j] + bias[j])   (written back, fp32)
//       then, when out != nullptr, out = the same LayerNorm + modulation of the updated row.
//
// LayerNorm without affine: biased variance, rstd = rsqrtf(var + eps), computed in fp32 with
// two passes over the row held in registers, so each row is read once from global memory
// (x and y once, x and out written once). x, scale, shift and gate are fp32; y, bias and out
// are T.
//
// How the rows are spread, chosen inside the kernel. When h % 8 == 0 and every pointer is
// 16-byte aligned (gate_stride % 4 == 0 too), each thread holds up to 32 values of the row in
// registers and moves them 8 at a time with 128-bit accesses:
// - h ≤ 1024: one warp per row, 8 rows per block; no barriers, reductions by shuffles.
// - 1024 < h ≤ 8192: one block per row; reductions through shared memory.
// Otherwise (h % 8 != 0, a misaligned pointer, or h > 8192) one block per row takes values
// j = thread, thread + 256, … and re-reads the row from global memory (L2) for each pass.
//
// Launch: block LDT_THREADS (256), grid.x = h <= 1024 ? ceil(rows / 8) : rows (the kernel
// strides over rows, so any grid.x ≥ 1 is correct), no dynamic shared memory.

#include "common.cuh"

// h up to this: one warp per row.
#define LN_WARP_MAX_H 1024
// h up to this: the row fits in the registers of one block (32 values per thread).
#define LN_BLOCK_MAX_H 8192
// Values held per thread.
#define LN_PER_THREAD 32

struct NormArgs {
    float* x;
    const void* y;  // T*
    const void* bias;  // T*
    const float* gate;
    int gate_stride;
    void* out;  // T*, may be null when residual
    const float* scale;
    const float* shift;
    int rows;
    int h;
    int tokens;
    float eps;
};

// Sum over a team: a warp (TEAM = 32) or the whole block (TEAM = LDT_THREADS).
template <int TEAM> LDT_DEVICE float team_sum(float v, float* red) {
    if constexpr (TEAM == 32) {
        return warp_sum(v);
    } else {
        return block_sum(v, red);
    }
}

// One row by a team of TEAM threads; `t` is the thread's index in the team. Thread t holds
// values 8(t + s·TEAM) … 8(t + s·TEAM) + 7, s < 4 (h % 8 == 0, aligned pointers).
template <typename T, int TEAM, bool RESIDUAL>
LDT_DEVICE void norm_row(const NormArgs& a, int row, int t, float* red) {
    const int h = a.h;
    const int b = row / a.tokens;
    float* x = a.x + (long long)row * h;
    const T* y = RESIDUAL ? static_cast<const T*>(a.y) + (long long)row * h : nullptr;
    const T* bias = static_cast<const T*>(a.bias);
    const float* gate = RESIDUAL ? a.gate + (long long)b * a.gate_stride : nullptr;
    T* out = static_cast<T*>(a.out);

    constexpr int W = 8;
    constexpr int STEPS = LN_PER_THREAD / W;
    float v[LN_PER_THREAD];
    float sum = 0.0f;
#pragma unroll
    for (int s = 0; s < STEPS; ++s) {
        const int j = (t + s * TEAM) * W;
        float* vs = v + s * W;
        if (j < h) {
            float xv[W];
            load_vec<W>(x + j, xv);
            if constexpr (RESIDUAL) {
                float yv[W], bv[W], gv[W];
                load_vec<W>(y + j, yv);
                load_vec<W>(bias + j, bv);
                load_vec<W>(gate + j, gv);
#pragma unroll
                for (int e = 0; e < W; ++e) {
                    xv[e] += gv[e] * (yv[e] + bv[e]);
                }
                store_vec<W>(x + j, xv);
            }
#pragma unroll
            for (int e = 0; e < W; ++e) {
                vs[e] = xv[e];
                sum += xv[e];
            }
        } else {
#pragma unroll
            for (int e = 0; e < W; ++e) {
                vs[e] = 0.0f;
            }
        }
    }
    if (out == nullptr) {
        return;  // residual only (uniform over the team: `out` is a kernel argument)
    }
    const float mean = team_sum<TEAM>(sum, red) / (float)h;
    float sq = 0.0f;
#pragma unroll
    for (int s = 0; s < STEPS; ++s) {
        const int j = (t + s * TEAM) * W;
        if (j < h) {
#pragma unroll
            for (int e = 0; e < W; ++e) {
                const float c = v[s * W + e] - mean;
                sq += c * c;
            }
        }
    }
    const float rstd = rsqrtf(team_sum<TEAM>(sq, red) / (float)h + a.eps);
    const float* scale = a.scale + (long long)b * h;
    const float* shift = a.shift + (long long)b * h;
    T* o = out + (long long)row * h;
#pragma unroll
    for (int s = 0; s < STEPS; ++s) {
        const int j = (t + s * TEAM) * W;
        if (j < h) {
            float sc[W], sh[W], ov[W];
            load_vec<W>(scale + j, sc);
            load_vec<W>(shift + j, sh);
#pragma unroll
            for (int e = 0; e < W; ++e) {
                ov[e] = (v[s * W + e] - mean) * rstd * sc[e] + sh[e];
            }
            store_vec<W>(o + j, ov);
        }
    }
}

// Any h and alignment, one block per row: one pass per step, re-reading x (its own writes,
// by the same thread) from global memory.
template <typename T, bool RESIDUAL>
LDT_DEVICE void norm_row_streamed(const NormArgs& a, int row, float* red) {
    const int h = a.h;
    const int b = row / a.tokens;
    float* x = a.x + (long long)row * h;
    const T* y = RESIDUAL ? static_cast<const T*>(a.y) + (long long)row * h : nullptr;
    const T* bias = static_cast<const T*>(a.bias);
    T* out = static_cast<T*>(a.out);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < h; j += LDT_THREADS) {
        float xv = x[j];
        if constexpr (RESIDUAL) {
            xv += a.gate[(long long)b * a.gate_stride + j] * (to_float(y[j]) + to_float(bias[j]));
            x[j] = xv;
        }
        sum += xv;
    }
    if (out == nullptr) {
        return;
    }
    const float mean = block_sum(sum, red) / (float)h;
    float sq = 0.0f;
    for (int j = threadIdx.x; j < h; j += LDT_THREADS) {
        const float c = x[j] - mean;
        sq += c * c;
    }
    const float rstd = rsqrtf(block_sum(sq, red) / (float)h + a.eps);
    const float* scale = a.scale + (long long)b * h;
    const float* shift = a.shift + (long long)b * h;
    T* o = out + (long long)row * h;
    for (int j = threadIdx.x; j < h; j += LDT_THREADS) {
        o[j] = from_float<T>((x[j] - mean) * rstd * scale[j] + shift[j]);
    }
}

template <typename T, bool RESIDUAL> LDT_DEVICE void norm_kernel(const NormArgs& a) {
    __shared__ float red[LDT_THREADS / 32];
    bool vec = a.h % 8 == 0 && is_aligned(a.x, 16) && is_aligned(a.out, 16) &&
               is_aligned(a.scale, 16) && is_aligned(a.shift, 16);
    if (RESIDUAL) {
        vec = vec && is_aligned(a.y, 16) && is_aligned(a.bias, 16) && is_aligned(a.gate, 16) &&
              a.gate_stride % 4 == 0;
    }
    if (vec && a.h <= LN_WARP_MAX_H) {
        constexpr int ROWS_PER_BLOCK = LDT_THREADS / 32;
        const int warp = threadIdx.x >> 5;
        for (int row = blockIdx.x * ROWS_PER_BLOCK + warp; row < a.rows;
             row += gridDim.x * ROWS_PER_BLOCK) {
            norm_row<T, 32, RESIDUAL>(a, row, threadIdx.x & 31, red);
        }
    } else if (vec && a.h <= LN_BLOCK_MAX_H) {
        for (int row = blockIdx.x; row < a.rows; row += gridDim.x) {
            norm_row<T, LDT_THREADS, RESIDUAL>(a, row, threadIdx.x, red);
        }
    } else {
        for (int row = blockIdx.x; row < a.rows; row += gridDim.x) {
            norm_row_streamed<T, RESIDUAL>(a, row, red);
        }
    }
}

template <typename T>
LDT_DEVICE void norm_modulate(const float* x, T* out, const float* scale, const float* shift,
                              int rows, int h, int tokens, float eps) {
    const NormArgs a = {const_cast<float*>(x), nullptr, nullptr, nullptr, 0, out, scale, shift,
                        rows, h, tokens, eps};
    norm_kernel<T, false>(a);
}

template <typename T>
LDT_DEVICE void residual_norm_modulate(float* x, const T* y, const T* bias, const float* gate,
                                       int gate_stride, T* out, const float* scale,
                                       const float* shift, int rows, int h, int tokens,
                                       float eps) {
    const NormArgs a = {x, y, bias, gate, gate_stride, out, scale, shift, rows, h, tokens, eps};
    norm_kernel<T, true>(a);
}

#define LDT_NORM_MODULATE(SUFFIX, T)                                                          \
    extern "C" __global__ void __launch_bounds__(LDT_THREADS)                                 \
        norm_modulate_##SUFFIX(const float* x, T* out, const float* scale,                    \
                               const float* shift, int rows, int h, int tokens, float eps) {  \
        norm_modulate<T>(x, out, scale, shift, rows, h, tokens, eps);                         \
    }                                                                                         \
    extern "C" __global__ void __launch_bounds__(LDT_THREADS) residual_norm_modulate_##SUFFIX( \
        float* x, const T* y, const T* bias, const float* gate, int gate_stride, T* out,      \
        const float* scale, const float* shift, int rows, int h, int tokens, float eps) {     \
        residual_norm_modulate<T>(x, y, bias, gate, gate_stride, out, scale, shift, rows, h,  \
                                  tokens, eps);                                               \
    }

LDT_NORM_MODULATE(f32, float)
LDT_NORM_MODULATE(bf16, bf16_t)
LDT_NORM_MODULATE(f16, half_t)
