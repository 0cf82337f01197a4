// instances/partial_relu_bf16_d32.cu: linear attention with φ = ReLU (sana), pass 1
// (partial sums), bf16 storage, head dims 1…32.
#include "linear_attention/partial.cuh"

LDT_LINEAR_ATTENTION_RELU_PARTIAL(bf16, bf16_t, 32)
