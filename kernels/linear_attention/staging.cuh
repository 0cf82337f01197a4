// linear_attention/staging.cuh: moving tiles of Q, K, V from global to shared memory, for the
// partial and apply passes. A thread holds its raw loads in registers (the next tile's loads
// are in flight while the current tile is worked on) and unpacks them to fp32 when it stores
// them to shared memory. VEC: 128-bit loads (d % (16 / sizeof(T)) == 0 and qkv 16-byte
// aligned, checked by the kernels), else one element per load.

#ifndef LINEAR_DIT_LINEAR_ATTENTION_STAGING_CUH
#define LINEAR_DIT_LINEAR_ATTENTION_STAGING_CUH

#include "common.cuh"

// What one thread holds of a raw tile load: 16 bytes (VEC) or one element.
template <typename T, bool VEC> struct RawOf {
    using type = T;
};
template <typename T> struct RawOf<T, true> {
    using type = uint4;
};

template <typename T, bool VEC>
LDT_DEVICE typename RawOf<T, VEC>::type load_raw(const T* p) {
    if constexpr (VEC) {
        return *reinterpret_cast<const uint4*>(p);
    } else {
        return *p;
    }
}

template <typename T, bool VEC, int NV>
LDT_DEVICE void unpack_raw(typename RawOf<T, VEC>::type r, float (&f)[NV]) {
    if constexpr (VEC) {
        unpack16<T>(r, f);
    } else {
        f[0] = to_float(r);
    }
}

// Stores NV (1, 4 or 8) floats to shared memory (16-byte aligned when NV ≥ 4).
template <int NV> LDT_DEVICE void store_shared(float* p, const float (&f)[NV]) {
    if constexpr (NV == 1) {
        p[0] = f[0];
    } else {
#pragma unroll
        for (int i = 0; i < NV; i += 4) {
            *reinterpret_cast<float4*>(p + i) = make_float4(f[i], f[i + 1], f[i + 2], f[i + 3]);
        }
    }
}

LDT_DEVICE void float4_to(float4 v, float* f) {
    f[0] = v.x;
    f[1] = v.y;
    f[2] = v.z;
    f[3] = v.w;
}

#endif  // LINEAR_DIT_LINEAR_ATTENTION_STAGING_CUH
