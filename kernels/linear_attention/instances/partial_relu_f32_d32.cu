// instances/partial_relu_f32_d32.cu: linear attention with φ = ReLU (sana), pass 1
// (partial sums), fp32 storage, head dims 1…32.
#include "linear_attention/partial.cuh"

LDT_LINEAR_ATTENTION_RELU_PARTIAL(f32, float, 32)
