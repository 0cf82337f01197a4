// linear_attention/reduce.cu: pass 2 of linear attention, the chunks' partial sums added in
// chunk order (one kernel for every storage type and head dim: it reads and writes fp32).
//
// linear_attention_reduce(partial, state, groups, num_chunks, d)
//   state[g·(d·d + d) + e] = Σ_c partial[(g·num_chunks + c)·(d·d + d) + e], c ascending.
//   Grid (ceil((d·d + d) / 256), groups = batch·heads), no dynamic shared memory.

#include "common.cuh"

extern "C" __global__ void __launch_bounds__(LDT_THREADS)
    linear_attention_reduce(const float* partial, float* state, int groups, int num_chunks, int d) {
    const int size = d * d + d;
    const int e = blockIdx.x * LDT_THREADS + threadIdx.x;
    const int g = blockIdx.y;
    if (e >= size || g >= groups) {
        return;
    }
    const float* p = partial + (long long)g * num_chunks * size + e;
    float s = 0.0f;
#pragma unroll 4
    for (int c = 0; c < num_chunks; ++c) {
        s += p[(long long)c * size];
    }
    state[(long long)g * size + e] = s;
}
