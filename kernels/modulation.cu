// modulation.cu: folds the AdaLN modulation and a LayerNorm's own affine into the per-sample
// `scale` and `shift` that layer_norm_modulate.cu applies after normalising:
//
//   modulation_affine_T(mod, mod_stride, shift_col, scale_col, gamma, beta,
//                       scale_out, shift_out, batch, h)
//     s = mod[b*mod_stride + scale_col + j], t = mod[b*mod_stride + shift_col + j]
//     g = gamma ? gamma[j] : 1,  be = beta ? beta[j] : 0
//     scale_out[b*h + j] = g * (1 + s),  shift_out[b*h + j] = be * (1 + s) + t
//   and, when mod == nullptr (a plain affine LayerNorm): scale_out = g, shift_out = be.
//
// So LN(x)·γ + β, modulated by (1 + s) and t, is LN(x)·scale + shift. dit passes no gamma and
// beta; edifice passes its norm1/norm2 (or, with mod == nullptr, the final norm). `mod` is the
// fp32 [B, mod_stride] output of the adaLN projection; the columns pick shift and scale.
// Tiny (B·h values): one thread per value.
//
// sana's adaLN-single adds a learned table to the modulation first (diffusers'
// `scale_shift_table[None] + …`), for which this file has a second kernel:
//
//   modulation_table_T(mod, mod_stride, row_stride, table, out, batch, table_rows, h)
//     out[b*table_rows*h + r*h + j] = table[r*h + j] + mod[b*mod_stride + r*row_stride + j]
//
// - a block: mod = T [B, 6h] (the h → 6h projection), mod_stride 6h, row_stride h, the
//   block's table [6, h]: out [B, 6h] = (shift1, scale1, gate1, shift2, scale2, gate2) rows;
//   out may be mod itself (in place: each value is read, then written, by one thread).
// - the final layer: mod = the embedded timestep e [B, h], mod_stride h, row_stride 0 (e is
//   added to both rows), the final table [2, h]: out [B, 2h] = (shift, scale).
// The rest is reuse: modulation_affine_T on out (mod_stride 6h or 2h, the shift and scale
// columns, with γ, β for an affine norm) gives the scale and shift that norm_modulate_T and
// residual_norm_modulate_T apply (LN(x)(1 + scale) + shift, eps 1e-6 for the final layer),
// and the gates are read from out directly (gate = out + 2h or + 5h, gate_stride 6h).
// table is T (a weight), mod and out fp32; one add per value. Grid-stride.
//
// Launch: block LDT_THREADS (256); modulation_affine_T: grid.x = ceil(batch * h / 256);
// modulation_table_T: grid.x = ceil(batch * table_rows * h / 256) (any grid.x ≥ 1 is
// correct). No dynamic shared memory.

#include "common.cuh"

template <typename T>
LDT_DEVICE void modulation_affine(const float* mod, int mod_stride, int shift_col, int scale_col,
                                  const T* gamma, const T* beta, float* scale_out,
                                  float* shift_out, int batch, int h) {
    const long long i = global_thread();
    if (i >= (long long)batch * h) {
        return;
    }
    const int b = (int)(i / h);
    const int j = (int)(i - (long long)b * h);
    const float g = gamma != nullptr ? to_float(gamma[j]) : 1.0f;
    const float be = beta != nullptr ? to_float(beta[j]) : 0.0f;
    if (mod == nullptr) {
        scale_out[i] = g;
        shift_out[i] = be;
        return;
    }
    const float* m = mod + (long long)b * mod_stride;
    const float s = m[scale_col + j];
    const float t = m[shift_col + j];
    scale_out[i] = g * (1.0f + s);
    shift_out[i] = be * (1.0f + s) + t;
}

template <typename T>
LDT_DEVICE void modulation_table(const float* mod, int mod_stride, int row_stride,
                                 const T* table, float* out, int batch, int table_rows, int h) {
    const long long per_sample = (long long)table_rows * h;
    const long long n = (long long)batch * per_sample;
    for (long long i = global_thread(); i < n; i += grid_threads()) {
        const int b = (int)(i / per_sample);
        const int e = (int)(i - b * per_sample);  // r·h + j
        const int r = e / h;
        const int j = e - r * h;
        const float m = mod[(long long)b * mod_stride + (long long)r * row_stride + j];
        out[i] = to_float(table[e]) + m;
    }
}

#define LDT_MODULATION_AFFINE(SUFFIX, T)                                                      \
    extern "C" __global__ void __launch_bounds__(LDT_THREADS) modulation_affine_##SUFFIX(     \
        const float* mod, int mod_stride, int shift_col, int scale_col, const T* gamma,       \
        const T* beta, float* scale_out, float* shift_out, int batch, int h) {                \
        modulation_affine<T>(mod, mod_stride, shift_col, scale_col, gamma, beta, scale_out,  \
                             shift_out, batch, h);                                            \
    }                                                                                         \
    extern "C" __global__ void __launch_bounds__(LDT_THREADS) modulation_table_##SUFFIX(      \
        const float* mod, int mod_stride, int row_stride, const T* table, float* out,         \
        int batch, int table_rows, int h) {                                                   \
        modulation_table<T>(mod, mod_stride, row_stride, table, out, batch, table_rows, h);   \
    }

LDT_MODULATION_AFFINE(f32, float)
LDT_MODULATION_AFFINE(bf16, bf16_t)
LDT_MODULATION_AFFINE(f16, half_t)
