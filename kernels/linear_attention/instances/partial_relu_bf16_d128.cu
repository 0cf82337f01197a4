// instances/partial_relu_bf16_d128.cu: linear attention with φ = ReLU (sana), pass 1
// (partial sums), bf16 storage, head dims 65…128.
#include "linear_attention/partial.cuh"

LDT_LINEAR_ATTENTION_RELU_PARTIAL(bf16, bf16_t, 128)
