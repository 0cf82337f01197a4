// instances/apply_f16_d128.cu: linear attention, pass 3 (apply),
// fp16 storage, head dims 65…128.
#include "linear_attention/apply.cuh"

LDT_LINEAR_ATTENTION_APPLY(f16, half_t, 128)
