// gelu.cu: bias + GELU in place on the fc1 output of the MLP (T [rows, m]):
//
//   bias_gelu_tanh_T(x, bias, rows, m):  x[r,j] = GELU_tanh(x[r,j] + bias[j])   (dit)
//   bias_gelu_erf_T(x, bias, rows, m):   x[r,j] = GELU_erf(x[r,j] + bias[j])    (edifice)
//
//   GELU_tanh(v) = 0.5v(1 + tanh(√(2/π)(v + 0.044715v³))), evaluated as v / (1 + e^(−2u)),
//                  u = √(2/π)(v + 0.044715v³): the same value, one exp, no cancellation for
//                  negative v (as the CPU reference computes it);
//   GELU_erf(v)  = 0.5v(1 + erf(v/√2)).
//
// bias may be null (no bias). fp32 math, fp16 stores clamped. Memory-bound: a thread moves 8
// consecutive values with 128-bit accesses (16-bit T; two for fp32) when m % 8 == 0 and the
// pointers are aligned, otherwise single values; (row, column) kept as a 2-D index.
//
// Launch: block LDT_THREADS (256), grid.x = max(1, ceil(rows * m / 2048)) (any grid.x ≥ 1 is
// correct), no dynamic shared memory.

#include "common.cuh"

LDT_DEVICE float gelu_tanh(float v) {
    const float u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
    return v / (1.0f + expf(-2.0f * u));
}

LDT_DEVICE float gelu_erf(float v) { return 0.5f * v * (1.0f + erff(v * 0.7071067811865476f)); }

template <typename T, int W, bool ERF>
LDT_DEVICE void bias_gelu_rows(T* x, const T* bias, long long rows, int m) {
    const int per_row = m / W;
    const long long total = rows * per_row;
    for (long long v = global_thread(); v < total; v += grid_threads()) {
        const long long r = v / per_row;
        const int j = (int)(v - r * per_row) * W;
        T* xr = x + r * m + j;
        float xv[W], bv[W];
        load_vec<W>(xr, xv);
        if (bias != nullptr) {
            load_vec<W>(bias + j, bv);
        } else {
#pragma unroll
            for (int e = 0; e < W; ++e) {
                bv[e] = 0.0f;
            }
        }
#pragma unroll
        for (int e = 0; e < W; ++e) {
            const float s = xv[e] + bv[e];
            xv[e] = ERF ? gelu_erf(s) : gelu_tanh(s);
        }
        store_vec<W>(xr, xv);
    }
}

template <typename T, bool ERF>
LDT_DEVICE void bias_gelu(T* x, const T* bias, long long rows, int m) {
    if (m % 8 == 0 && is_aligned(x, 16) && is_aligned(bias, 16)) {
        bias_gelu_rows<T, 8, ERF>(x, bias, rows, m);
    } else {
        bias_gelu_rows<T, 1, ERF>(x, bias, rows, m);
    }
}

#define LDT_BIAS_GELU(SUFFIX, T)                                                              \
    extern "C" __global__ void __launch_bounds__(LDT_THREADS)                                 \
        bias_gelu_tanh_##SUFFIX(T* x, const T* bias, long long rows, int m) {                 \
        bias_gelu<T, false>(x, bias, rows, m);                                                \
    }                                                                                         \
    extern "C" __global__ void __launch_bounds__(LDT_THREADS)                                 \
        bias_gelu_erf_##SUFFIX(T* x, const T* bias, long long rows, int m) {                  \
        bias_gelu<T, true>(x, bias, rows, m);                                                 \
    }

LDT_BIAS_GELU(f32, float)
LDT_BIAS_GELU(bf16, bf16_t)
LDT_BIAS_GELU(f16, half_t)
