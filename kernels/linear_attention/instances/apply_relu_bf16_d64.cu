// instances/apply_relu_bf16_d64.cu: linear attention with φ = ReLU (sana), pass 3
// (apply), bf16 storage, head dims 33…64.
#include "linear_attention/apply.cuh"

LDT_LINEAR_ATTENTION_RELU_APPLY(bf16, bf16_t, 64)
