// instances/apply_relu_f32_d64.cu: linear attention with φ = ReLU (sana), pass 3
// (apply), fp32 storage, head dims 33…64.
#include "linear_attention/apply.cuh"

LDT_LINEAR_ATTENTION_RELU_APPLY(f32, float, 64)
