// cast.cu: dtype conversion between the fp32 host-facing tensors and the storage type T.
//
//   cast_f32_to_T(in, out, n):  out[i] = T(in[i])      (fp16: clamped to ±65504, RNE)
//   cast_T_to_f32(in, out, n):  out[i] = float(in[i])
//
// Purely memory-bound: 8 elements per thread per step, moved with 128-bit accesses when both
// pointers are 16-byte aligned (a scalar loop takes the tail and any misaligned call).
//
// Launch: block LDT_THREADS (256), grid.x = max(1, ceil(n / 2048)), no dynamic shared memory.

#include "common.cuh"

template <typename Src, typename Dst>
__device__ void cast_kernel(const Src* in, Dst* out, long long n) {
    const long long stride = grid_threads();
    long long first_scalar = 0;
    if (is_aligned(in, 16) && is_aligned(out, 16)) {
        const long long vectors = n / 8;
        for (long long v = global_thread(); v < vectors; v += stride) {
            float f[8];
            load_vec<8>(in + 8 * v, f);
            store_vec<8>(out + 8 * v, f);
        }
        first_scalar = vectors * 8;
    }
    for (long long i = first_scalar + global_thread(); i < n; i += stride) {
        out[i] = from_float<Dst>(to_float(in[i]));
    }
}

extern "C" __global__ void cast_f32_to_f32(const float* in, float* out, long long n) {
    cast_kernel(in, out, n);
}
extern "C" __global__ void cast_f32_to_bf16(const float* in, bf16_t* out, long long n) {
    cast_kernel(in, out, n);
}
extern "C" __global__ void cast_f32_to_f16(const float* in, half_t* out, long long n) {
    cast_kernel(in, out, n);
}
extern "C" __global__ void cast_bf16_to_f32(const bf16_t* in, float* out, long long n) {
    cast_kernel(in, out, n);
}
extern "C" __global__ void cast_f16_to_f32(const half_t* in, float* out, long long n) {
    cast_kernel(in, out, n);
}
