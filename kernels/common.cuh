// common.cuh: what every kernel of linear-dit shares. Storage types, conversions, vector
// loads and stores, warp and block reductions.
//
// The kernels are translation units, every .cu file under kernels/, compiled two ways: by
// nvcc into one fatbin each, and by NVRTC at run time (each unit with its headers inlined by
// build.rs). NVRTC on the target may have no include path, so nothing here includes a system
// or toolkit header: bf16 and fp16 are our own 16-bit storage types, converted with bit
// operations (bf16) and inline PTX (fp16).
//
// Every inline-PTX instruction sits in one helper here, behind #ifdef LDT_EMULATE: the CPU
// executor (kernels/emu, scripts/kernel-check.sh) defines LDT_EMULATE and swaps in its model
// of the instruction; nvcc and NVRTC never define it and compile the asm.
//
// Conventions of every kernel:
// - Storage type T is float, bf16_t or half_t; each templated kernel has one extern "C"
//   instance per type, suffixed _f32, _bf16, _f16 (the attention passes one per type and
//   head-dim class, _f32_d64, ...). All arithmetic is fp32.
// - Sizes are int; element counts and offsets that can exceed 2^31 (R·h, R·3h) are long long.
// - Rows are row-major; R = B·N rows, sample b owns rows b·N … b·N+N−1.
// - 128-bit loads and stores are used when the row length and the pointers allow it, checked
//   at run time inside the kernel; otherwise a scalar path computes the same values.
//
// fp16 overflow policy: every store of a computed value into fp16 storage clamps it to
// ±65504 (the largest finite fp16) before rounding, so an overflow saturates instead of
// becoming inf and poisoning everything downstream. NaN stays NaN. bf16 has the range of fp32
// and is not clamped. The linear-attention state (S, z) and the residual stream are fp32
// whatever T is.

#ifndef LINEAR_DIT_COMMON_CUH
#define LINEAR_DIT_COMMON_CUH

#define LDT_DEVICE __device__ __forceinline__

// Threads per block of every kernel (the launch contract in kernels/README.md).
#define LDT_THREADS 256

// Elementwise kernels stride over their elements with 8 per thread per step: the host
// launches grid.x = max(1, ceil(n / LDT_ELEMS_PER_BLOCK)) blocks (any grid.x ≥ 1 is correct).
#define LDT_ELEMS_PER_BLOCK (LDT_THREADS * 8)

// The largest finite fp16 value: the clamp of the fp16 overflow policy.
#define LDT_FP16_MAX 65504.0f

// bf16 storage: the high 16 bits of an fp32.
struct __align__(2) bf16_t {
    unsigned short bits;
};

// fp16 (IEEE binary16) storage.
struct __align__(2) half_t {
    unsigned short bits;
};

// ---------------------------------------------------------------------------------------------
// Scalar conversions.

LDT_DEVICE float bf16_bits_to_float(unsigned int bits) { return __uint_as_float(bits << 16); }

// Round to nearest even; NaN stays a (quiet) NaN.
LDT_DEVICE unsigned int float_to_bf16_bits(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (u >> 16) | 0x0040u;
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    return u >> 16;
}

LDT_DEVICE float half_bits_to_float(unsigned int bits) {
    float f;
    unsigned short h = (unsigned short)bits;
#ifdef LDT_EMULATE
    f = ldt_emu::ptx_cvt_f32_f16(h);
#else
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
#endif
    return f;
}

// The fp16 overflow policy: clamp to ±65504, then round to nearest even. NaN passes through
// (both comparisons are false).
LDT_DEVICE unsigned int float_to_half_bits(float f) {
    f = f > LDT_FP16_MAX ? LDT_FP16_MAX : (f < -LDT_FP16_MAX ? -LDT_FP16_MAX : f);
    unsigned short h;
#ifdef LDT_EMULATE
    h = ldt_emu::ptx_cvt_rn_f16_f32(f);
#else
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
#endif
    return h;
}

LDT_DEVICE float to_float(float v) { return v; }
LDT_DEVICE float to_float(bf16_t v) { return bf16_bits_to_float(v.bits); }
LDT_DEVICE float to_float(half_t v) { return half_bits_to_float(v.bits); }

template <typename T> LDT_DEVICE T from_float(float v);
template <> LDT_DEVICE float from_float<float>(float v) { return v; }
template <> LDT_DEVICE bf16_t from_float<bf16_t>(float v) {
    bf16_t r;
    r.bits = (unsigned short)float_to_bf16_bits(v);
    return r;
}
template <> LDT_DEVICE half_t from_float<half_t>(float v) {
    half_t r;
    r.bits = (unsigned short)float_to_half_bits(v);
    return r;
}

// Two 16-bit values packed in one 32-bit word (element 0 in the low half, as in memory).
template <typename T> LDT_DEVICE void unpack2(unsigned int w, float& lo, float& hi);
template <> LDT_DEVICE void unpack2<bf16_t>(unsigned int w, float& lo, float& hi) {
    lo = __uint_as_float(w << 16);
    hi = __uint_as_float(w & 0xffff0000u);
}
template <> LDT_DEVICE void unpack2<half_t>(unsigned int w, float& lo, float& hi) {
    lo = half_bits_to_float(w & 0xffffu);
    hi = half_bits_to_float(w >> 16);
}
template <typename T> LDT_DEVICE unsigned int pack2(float lo, float hi);
template <> LDT_DEVICE unsigned int pack2<bf16_t>(float lo, float hi) {
    return float_to_bf16_bits(lo) | (float_to_bf16_bits(hi) << 16);
}
template <> LDT_DEVICE unsigned int pack2<half_t>(float lo, float hi) {
    return float_to_half_bits(lo) | (float_to_half_bits(hi) << 16);
}

// ---------------------------------------------------------------------------------------------
// Vector loads and stores of N consecutive elements as fp32. The pointer must be aligned to
// N * sizeof(T) bytes (16-byte accesses whenever N * sizeof(T) >= 16).

LDT_DEVICE bool is_aligned(const void* p, int bytes) {
    return ((unsigned long long)p & (unsigned long long)(bytes - 1)) == 0;
}

template <int N> LDT_DEVICE void load_vec(const float* p, float (&f)[N]) {
    if constexpr (N % 4 == 0) {
#pragma unroll
        for (int i = 0; i < N; i += 4) {
            float4 v = *reinterpret_cast<const float4*>(p + i);
            f[i] = v.x;
            f[i + 1] = v.y;
            f[i + 2] = v.z;
            f[i + 3] = v.w;
        }
    } else if constexpr (N == 2) {
        float2 v = *reinterpret_cast<const float2*>(p);
        f[0] = v.x;
        f[1] = v.y;
    } else {
        static_assert(N == 1, "load_vec<float>: N must be 1, 2 or a multiple of 4");
        f[0] = p[0];
    }
}

// The 16 bytes of a uint4 as Vec16<T>::N values of T.
template <typename T> LDT_DEVICE void unpack16(uint4 v, float (&f)[16 / sizeof(T)]) {
    if constexpr (sizeof(T) == 4) {
        f[0] = __uint_as_float(v.x);
        f[1] = __uint_as_float(v.y);
        f[2] = __uint_as_float(v.z);
        f[3] = __uint_as_float(v.w);
    } else {
        unpack2<T>(v.x, f[0], f[1]);
        unpack2<T>(v.y, f[2], f[3]);
        unpack2<T>(v.z, f[4], f[5]);
        unpack2<T>(v.w, f[6], f[7]);
    }
}

template <int N, typename T> LDT_DEVICE void load_vec(const T* p, float (&f)[N]) {
    if constexpr (N % 8 == 0) {
#pragma unroll
        for (int i = 0; i < N; i += 8) {
            float g[8];
            unpack16<T>(*reinterpret_cast<const uint4*>(p + i), g);
#pragma unroll
            for (int e = 0; e < 8; ++e) {
                f[i + e] = g[e];
            }
        }
    } else if constexpr (N == 4) {
        uint2 v = *reinterpret_cast<const uint2*>(p);
        unpack2<T>(v.x, f[0], f[1]);
        unpack2<T>(v.y, f[2], f[3]);
    } else if constexpr (N == 2) {
        unpack2<T>(*reinterpret_cast<const unsigned int*>(p), f[0], f[1]);
    } else {
        static_assert(N == 1, "load_vec<16-bit>: N must be 1, 2, 4 or a multiple of 8");
        f[0] = to_float(p[0]);
    }
}

template <int N> LDT_DEVICE void store_vec(float* p, const float (&f)[N]) {
    if constexpr (N % 4 == 0) {
#pragma unroll
        for (int i = 0; i < N; i += 4) {
            *reinterpret_cast<float4*>(p + i) = make_float4(f[i], f[i + 1], f[i + 2], f[i + 3]);
        }
    } else if constexpr (N == 2) {
        *reinterpret_cast<float2*>(p) = make_float2(f[0], f[1]);
    } else {
        static_assert(N == 1, "store_vec<float>: N must be 1, 2 or a multiple of 4");
        p[0] = f[0];
    }
}

template <int N, typename T> LDT_DEVICE void store_vec(T* p, const float (&f)[N]) {
    if constexpr (N % 8 == 0) {
#pragma unroll
        for (int i = 0; i < N; i += 8) {
            *reinterpret_cast<uint4*>(p + i) =
                make_uint4(pack2<T>(f[i], f[i + 1]), pack2<T>(f[i + 2], f[i + 3]),
                           pack2<T>(f[i + 4], f[i + 5]), pack2<T>(f[i + 6], f[i + 7]));
        }
    } else if constexpr (N == 4) {
        *reinterpret_cast<uint2*>(p) = make_uint2(pack2<T>(f[0], f[1]), pack2<T>(f[2], f[3]));
    } else if constexpr (N == 2) {
        *reinterpret_cast<unsigned int*>(p) = pack2<T>(f[0], f[1]);
    } else {
        static_assert(N == 1, "store_vec<16-bit>: N must be 1, 2, 4 or a multiple of 8");
        p[0] = from_float<T>(f[0]);
    }
}

// Grid-stride loop helpers of the elementwise kernels.
LDT_DEVICE long long global_thread() {
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}
LDT_DEVICE long long grid_threads() { return (long long)gridDim.x * blockDim.x; }

// Type selection (no <type_traits> here): Conditional<C, A, B>::type is A if C, else B.
template <bool C, typename A, typename B> struct Conditional {
    using type = A;
};
template <typename A, typename B> struct Conditional<false, A, B> {
    using type = B;
};

// Elements of T in one 16-byte access.
template <typename T> struct Vec16 {
    static constexpr int N = 16 / (int)sizeof(T);
};

// ---------------------------------------------------------------------------------------------
// Activations, as the CPU reference defines them (src/backends/cpu/activation.rs).

// φ(z) = ELU(z) + 1: z + 1 for z > 0, e^z otherwise (the linear-attention feature map).
LDT_DEVICE float phi(float z) { return z > 0.0f ? z + 1.0f : expf(z); }

LDT_DEVICE float silu(float x) { return x / (1.0f + expf(-x)); }

// ---------------------------------------------------------------------------------------------
// Tensor cores: TF32 mma.sync (sm_80+) with fp32 accumulation, and the hi/lo split that makes
// it as accurate as fp32 FMA: x = hi + lo with hi = tf32(x), lo = tf32(x − hi), so
// a·b ≈ a_hi·b_hi + a_hi·b_lo + a_lo·b_hi to ~2^−21 relative (a value that is already exact in
// tf32, such as any bf16 or fp16 number, needs no lo part).

// Round to tf32 (nearest, ties away): the bits of an fp32 whose low 13 mantissa bits are zero.
LDT_DEVICE unsigned int to_tf32(float x) {
    unsigned int r;
#ifdef LDT_EMULATE
    r = ldt_emu::ptx_cvt_rna_tf32_f32(x);
#else
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
#endif
    return r;
}

struct Tf32Split {
    unsigned int hi, lo;
};

LDT_DEVICE Tf32Split split_tf32(float x) {
    Tf32Split s;
    s.hi = to_tf32(x);
    s.lo = to_tf32(x - __uint_as_float(s.hi));
    return s;
}

// d += A·B for one m16n8k8 tile. Fragments, with g = lane / 4 and t = lane % 4:
//   A (16×8, row-major): a[0] = A[g][t], a[1] = A[g+8][t], a[2] = A[g][t+4], a[3] = A[g+8][t+4]
//   B (8×8, col-major):  b[0] = B[t][g], b[1] = B[t+4][g]
//   C/D (16×8 fp32):     d[0] = C[g][2t], d[1] = C[g][2t+1], d[2] = C[g+8][2t], d[3] = C[g+8][2t+1]
LDT_DEVICE void mma_tf32(float (&d)[4], const unsigned int (&a)[4], const unsigned int (&b)[2]) {
#ifdef LDT_EMULATE
    ldt_emu::ptx_mma_m16n8k8_row_col_f32_tf32_tf32_f32(d, a, b);
#else
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// ---------------------------------------------------------------------------------------------
// Reductions. Fixed trees, so every result is deterministic.

#define LDT_FULL_MASK 0xffffffffu

LDT_DEVICE float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        v += __shfl_xor_sync(LDT_FULL_MASK, v, o);
    }
    return v;
}

// Sum over groups of WIDTH consecutive lanes (WIDTH a power of two ≤ 32); every lane of a
// group gets its group's sum. Every lane of the warp must call it.
template <int WIDTH> LDT_DEVICE float group_sum(float v) {
#pragma unroll
    for (int o = WIDTH >> 1; o > 0; o >>= 1) {
        v += __shfl_xor_sync(LDT_FULL_MASK, v, o);
    }
    return v;
}

// Sum over the whole block (blockDim.x = LDT_THREADS); every thread gets the sum. `red` is a
// __shared__ float[LDT_THREADS / 32]. Contains barriers: call it from every thread of the
// block. The leading barrier lets consecutive calls reuse `red`.
LDT_DEVICE float block_sum(float v, float* red) {
    v = warp_sum(v);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) {
        red[threadIdx.x >> 5] = v;
    }
    __syncthreads();
    float total = 0.0f;
#pragma unroll
    for (int w = 0; w < LDT_THREADS / 32; ++w) {
        total += red[w];
    }
    return total;
}

#endif  // LINEAR_DIT_COMMON_CUH
