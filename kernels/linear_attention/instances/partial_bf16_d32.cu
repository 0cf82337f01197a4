// instances/partial_bf16_d32.cu: linear attention, pass 1 (partial sums),
// bf16 storage, head dims 1…32.
#include "linear_attention/partial.cuh"

LDT_LINEAR_ATTENTION_PARTIAL(bf16, bf16_t, 32)
