// instances/partial_relu_f16_d32.cu: linear attention with φ = ReLU (sana), pass 1
// (partial sums), f16 storage, head dims 1…32.
#include "linear_attention/partial.cuh"

LDT_LINEAR_ATTENTION_RELU_PARTIAL(f16, half_t, 32)
