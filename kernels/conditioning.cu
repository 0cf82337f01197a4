// conditioning.cu: the per-sample condition vector c [B, h] before the small linears
// (small_linear.cu) turn it into modulation: timestep frequency features, class one-hot and
// class-table embedding (SiLU is applied by small_linear as it reads its input). All fp32,
// B·(≤ 2h) values: one thread per value.
//
//   timestep_features_dit(t, out, batch)
//     out[b*256 + i] = cos(t_b·ω_i), out[b*256 + 128 + i] = sin(t_b·ω_i),
//     ω_i = exp(−ln(10000)·i/128), i < 128
//   timestep_features_edifice(t, out, batch, half, num_steps)
//     τ = t_b/num_steps, ω_i = exp(−ln(10000)·i/max(half−1, 1)),
//     out[b*2half + i] = sin(τ·ω_i), out[b*2half + half + i] = cos(τ·ω_i), i < half
//   class_onehot(y, out, batch, classes)       one-hot of width C; all zeros when y ∉ [0, C)
//   add_class_embedding_T(c, table, y, batch, h)   c[b*h + j] += table[y_b*h + j]
//                                                  (labels validated by the host: y_b ∈ [0, C])
//
// The sin/cos arguments and values are computed in double precision and rounded once to
// float, as the CPU reference (src/model/embedding.rs) does, so every backend starts from the
// same features.
//
// Launch: block LDT_THREADS (256), no dynamic shared memory, grid.x =
//   timestep_features_dit:      ceil(batch * 128 / 256)
//   timestep_features_edifice:  ceil(batch * half / 256)
//   class_onehot:               ceil(batch * classes / 256)
//   add_class_embedding_T:      ceil(batch * h / 256)

#include "common.cuh"

// ln(10000), the f64 nearest (as Rust's 10000f64.ln()).
#define LDT_LN_10000 9.210340371976184
// Frequencies of the dit timestep features (half their width 256); the model's
// `DIT_TIMESTEP_FREQUENCIES` (a host test checks the two agree).
#define LDT_DIT_TIMESTEP_FREQUENCIES 128

extern "C" __global__ void __launch_bounds__(LDT_THREADS)
    timestep_features_dit(const float* t, float* out, int batch) {
    const int half = LDT_DIT_TIMESTEP_FREQUENCIES;
    const int idx = blockIdx.x * LDT_THREADS + threadIdx.x;
    if (idx >= batch * half) {
        return;
    }
    const int b = idx / half;
    const int i = idx % half;
    const double omega = exp(-LDT_LN_10000 * (double)i / (double)half);
    const double arg = (double)t[b] * omega;
    out[b * 2 * half + i] = (float)cos(arg);
    out[b * 2 * half + half + i] = (float)sin(arg);
}

extern "C" __global__ void __launch_bounds__(LDT_THREADS)
    timestep_features_edifice(const float* t, float* out, int batch, int half, float num_steps) {
    const long long idx = global_thread();
    if (idx >= (long long)batch * half) {
        return;
    }
    const int b = (int)(idx / half);
    const int i = (int)(idx - (long long)b * half);
    const double tau = (double)t[b] / (double)num_steps;
    const double denom = (double)(half - 1 > 1 ? half - 1 : 1);
    const double arg = tau * exp(-LDT_LN_10000 * (double)i / denom);
    float* o = out + (long long)b * 2 * half;
    o[i] = (float)sin(arg);
    o[half + i] = (float)cos(arg);
}

extern "C" __global__ void __launch_bounds__(LDT_THREADS)
    class_onehot(const long long* y, float* out, int batch, int classes) {
    const long long idx = global_thread();
    if (idx >= (long long)batch * classes) {
        return;
    }
    const int b = (int)(idx / classes);
    const long long i = idx - (long long)b * classes;
    out[idx] = y[b] == i ? 1.0f : 0.0f;
}

template <typename T>
LDT_DEVICE void add_class_embedding(float* c, const T* table, const long long* y, int batch,
                                    int h) {
    const long long idx = global_thread();
    if (idx >= (long long)batch * h) {
        return;
    }
    const int b = (int)(idx / h);
    const int j = (int)(idx - (long long)b * h);
    c[idx] += to_float(table[y[b] * h + j]);
}

#define LDT_ADD_CLASS_EMBEDDING(SUFFIX, T)                                                    \
    extern "C" __global__ void __launch_bounds__(LDT_THREADS) add_class_embedding_##SUFFIX(   \
        float* c, const T* table, const long long* y, int batch, int h) {                     \
        add_class_embedding<T>(c, table, y, batch, h);                                        \
    }

LDT_ADD_CLASS_EMBEDDING(f32, float)
LDT_ADD_CLASS_EMBEDDING(bf16, bf16_t)
LDT_ADD_CLASS_EMBEDDING(f16, half_t)
