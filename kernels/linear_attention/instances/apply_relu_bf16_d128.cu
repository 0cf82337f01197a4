// instances/apply_relu_bf16_d128.cu: linear attention with φ = ReLU (sana), pass 3
// (apply), bf16 storage, head dims 65…128.
#include "linear_attention/apply.cuh"

LDT_LINEAR_ATTENTION_RELU_APPLY(bf16, bf16_t, 128)
