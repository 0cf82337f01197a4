// instances/partial_f16_d64.cu: linear attention, pass 1 (partial sums),
// fp16 storage, head dims 33…64.
#include "linear_attention/partial.cuh"

LDT_LINEAR_ATTENTION_PARTIAL(f16, half_t, 64)
