// instances/partial_f32_d128.cu: linear attention, pass 1 (partial sums),
// fp32 storage, head dims 65…128.
#include "linear_attention/partial.cuh"

LDT_LINEAR_ATTENTION_PARTIAL(f32, float, 128)
