// instances/apply_relu_f32_d128.cu: linear attention with φ = ReLU (sana), pass 3
// (apply), fp32 storage, head dims 65…128.
#include "linear_attention/apply.cuh"

LDT_LINEAR_ATTENTION_RELU_APPLY(f32, float, 128)
