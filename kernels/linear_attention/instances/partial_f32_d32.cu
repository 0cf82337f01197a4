// instances/partial_f32_d32.cu: linear attention, pass 1 (partial sums),
// fp32 storage, head dims 1…32.
#include "linear_attention/partial.cuh"

LDT_LINEAR_ATTENTION_PARTIAL(f32, float, 32)
