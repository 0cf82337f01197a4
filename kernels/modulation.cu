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
// Launch: block LDT_THREADS (256), grid.x = ceil(batch * h / 256), no dynamic shared memory.

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

#define LDT_MODULATION_AFFINE(SUFFIX, T)                                                      \
    extern "C" __global__ void __launch_bounds__(LDT_THREADS) modulation_affine_##SUFFIX(     \
        const float* mod, int mod_stride, int shift_col, int scale_col, const T* gamma,       \
        const T* beta, float* scale_out, float* shift_out, int batch, int h) {                \
        modulation_affine<T>(mod, mod_stride, shift_col, scale_col, gamma, beta, scale_out,  \
                             shift_out, batch, h);                                            \
    }

LDT_MODULATION_AFFINE(f32, float)
LDT_MODULATION_AFFINE(bf16, bf16_t)
LDT_MODULATION_AFFINE(f16, half_t)
