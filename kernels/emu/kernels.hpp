// kernels.hpp: the extern "C" kernels of kernels/ (every .cu), declared for the harness, which is
// compiled apart from them. The generated kernel translation unit includes this file before
// the kernels, so a declaration that no longer matches its definition is a compile error
// ("conflicting declaration of C function"), never a call with the wrong arguments.
//
// Needs cuda_emu.hpp and common.cuh (bf16_t, half_t) first.

#ifndef LDT_EMU_KERNELS_HPP
#define LDT_EMU_KERNELS_HPP

#define LDT_EMU_PER_TYPE(DECL) DECL(f32, float) DECL(bf16, bf16_t) DECL(f16, half_t)

extern "C" {

// cast.cu
void cast_f32_to_f32(const float* in, float* out, long long n);
void cast_f32_to_bf16(const float* in, bf16_t* out, long long n);
void cast_f32_to_f16(const float* in, half_t* out, long long n);
void cast_bf16_to_f32(const bf16_t* in, float* out, long long n);
void cast_f16_to_f32(const half_t* in, float* out, long long n);

// conditioning.cu
void timestep_features_dit(const float* t, float* out, int batch);
void timestep_features_edifice(const float* t, float* out, int batch, int half, float num_steps);
void class_onehot(const long long* y, float* out, int batch, int classes);
#define LDT_EMU_DECL(S, T)                                                                   \
    void add_class_embedding_##S(float* c, const T* table, const long long* y, int batch,   \
                                 int h);
LDT_EMU_PER_TYPE(LDT_EMU_DECL)
#undef LDT_EMU_DECL

// small_linear.cu
#define LDT_EMU_DECL(S, T)                                                                   \
    void small_linear_##S(const float* x, const T* W, const T* bias, float* out, int rows,  \
                          int in, int out_features, int silu_input, int accumulate);
LDT_EMU_PER_TYPE(LDT_EMU_DECL)
#undef LDT_EMU_DECL

// modulation.cu
#define LDT_EMU_DECL(S, T)                                                                   \
    void modulation_affine_##S(const float* mod, int mod_stride, int shift_col,              \
                               int scale_col, const T* gamma, const T* beta,                 \
                               float* scale_out, float* shift_out, int batch, int h);    \
    void modulation_table_##S(const float* mod, int mod_stride, int row_stride,             \
                              const T* table, float* out, int batch, int table_rows, int h);
LDT_EMU_PER_TYPE(LDT_EMU_DECL)
#undef LDT_EMU_DECL

// embedding.cu
#define LDT_EMU_DECL(S, T)                                                                   \
    void embed_add_##S(float* x, const T* bias, const float* table, int rows, int h,        \
                       int table_rows);
LDT_EMU_PER_TYPE(LDT_EMU_DECL)
#undef LDT_EMU_DECL

// layer_norm_modulate.cu
#define LDT_EMU_DECL(S, T)                                                                   \
    void norm_modulate_##S(const float* x, T* out, const float* scale, const float* shift,  \
                           int rows, int h, int tokens, float eps);                          \
    void residual_norm_modulate_##S(float* x, const T* y, const T* bias, const float* gate, \
                                    int gate_stride, T* out, const float* scale,             \
                                    const float* shift, int rows, int h, int tokens,         \
                                    float eps);
LDT_EMU_PER_TYPE(LDT_EMU_DECL)
#undef LDT_EMU_DECL

// gelu.cu
#define LDT_EMU_DECL(S, T)                                                                   \
    void bias_gelu_tanh_##S(T* x, const T* bias, long long rows, int m);                     \
    void bias_gelu_erf_##S(T* x, const T* bias, long long rows, int m);
LDT_EMU_PER_TYPE(LDT_EMU_DECL)
#undef LDT_EMU_DECL

// rms_norm.cu, depthwise_conv_glu.cu, masked_softmax.cu (sana)
#define LDT_EMU_DECL(S, T)                                                                   \
    void rms_norm_##S(const T* x, int x_stride, T* out, int out_stride, const T* weight,    \
                      int rows, int h, float eps);                                           \
    void depthwise_conv_glu_##S(const T* in, const T* in_bias, const T* weight,             \
                                const T* bias, T* out, int batch, int rows, int cols,        \
                                int m);                                                      \
    void masked_softmax_##S(const float* scores, T* probs, const float* mask,               \
                            int rows_per_sample, int texts, int batch, float scale);
LDT_EMU_PER_TYPE(LDT_EMU_DECL)
#undef LDT_EMU_DECL

// linear_attention/: pass 2 (reduce.cu), and passes 1 and 3 per head-dim class
// (instances/partial_*.cu, instances/apply_*.cu).
void linear_attention_reduce(const float* partial, float* state, int groups, int num_chunks,
                             int d);
#define LDT_EMU_DECL_CLASS(S, T, DP)                                                         \
    void linear_attention_partial_##S##_d##DP(const T* qkv, float* partial, int batch,      \
                                              int tokens, int heads, int head_dim,           \
                                              int chunk);                                    \
    void linear_attention_apply_##S##_d##DP(const T* qkv, const float* state, T* out,       \
                                            int batch, int tokens, int heads, int head_dim);  \
    void linear_attention_relu_partial_##S##_d##DP(const T* qkv, float* partial, int batch, \
                                                   int tokens, int heads, int head_dim,      \
                                                   int chunk);                               \
    void linear_attention_relu_apply_##S##_d##DP(const T* qkv, const float* state, T* out,  \
                                                 int batch, int tokens, int heads,           \
                                                 int head_dim);
#define LDT_EMU_DECL(S, T)                                                                   \
    LDT_EMU_DECL_CLASS(S, T, 32) LDT_EMU_DECL_CLASS(S, T, 64) LDT_EMU_DECL_CLASS(S, T, 128)
LDT_EMU_PER_TYPE(LDT_EMU_DECL)
#undef LDT_EMU_DECL
#undef LDT_EMU_DECL_CLASS

}  // extern "C"

#undef LDT_EMU_PER_TYPE

#endif  // LDT_EMU_KERNELS_HPP
