// instances/partial_f16_d128.cu: linear attention, pass 1 (partial sums),
// fp16 storage, head dims 65…128.
#include "linear_attention/partial.cuh"

LDT_LINEAR_ATTENTION_PARTIAL(f16, half_t, 128)
