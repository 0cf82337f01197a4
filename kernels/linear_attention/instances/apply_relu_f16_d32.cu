// instances/apply_relu_f16_d32.cu: linear attention with φ = ReLU (sana), pass 3
// (apply), f16 storage, head dims 1…32.
#include "linear_attention/apply.cuh"

LDT_LINEAR_ATTENTION_RELU_APPLY(f16, half_t, 32)
