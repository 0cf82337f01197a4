// instances/partial_f16_d32.cu: linear attention, pass 1 (partial sums),
// fp16 storage, head dims 1…32.
#include "linear_attention/partial.cuh"

LDT_LINEAR_ATTENTION_PARTIAL(f16, half_t, 32)
