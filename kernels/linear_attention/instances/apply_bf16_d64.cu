// instances/apply_bf16_d64.cu: linear attention, pass 3 (apply),
// bf16 storage, head dims 33…64.
#include "linear_attention/apply.cuh"

LDT_LINEAR_ATTENTION_APPLY(bf16, bf16_t, 64)
