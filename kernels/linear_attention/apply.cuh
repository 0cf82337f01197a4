// linear_attention/apply.cuh: pass 3 of linear attention, O = φ(Q) S / (φ(Q)·z + ε).
//
// linear_attention_apply_<T>_d<DP>(qkv, state, out, batch, tokens, heads, head_dim)
//   φ = ELU + 1, ε = 1e-6
// linear_attention_relu_apply_<T>_d<DP>(…the same…)   φ = ReLU, ε = 1e-15
//   Block (tile, head, b) computes O for LINATTN_APPLY_TILE tokens from the state the reduce
//   pass wrote (S row-major, then z, per (b, head)).
//
// How. The state is loaded into dynamic shared memory, zero-padded to the instance's class
// DP ∈ {32, 64, 128} (rows of DP + 8 floats, so the MMA fragment loads are conflict-free, then
// z: LINATTN_APPLY_SMEM(d) bytes); φ(Q) is staged LINATTN_KC = 32 channels at a time (rows of
// KC + 4 floats), accumulating the denominators φ(Q)·z as it is staged, and multiplied with S
// by the policy (policies.cuh). Fast path: 128-bit loads (d % (16 / sizeof(T)) == 0, qkv
// 16-byte aligned); otherwise scalar loads, with the same DP.

#ifndef LINEAR_DIT_LINEAR_ATTENTION_APPLY_CUH
#define LINEAR_DIT_LINEAR_ATTENTION_APPLY_CUH

#include "common.cuh"
#include "linear_attention/params.cuh"
#include "linear_attention/policies.cuh"
#include "linear_attention/staging.cuh"

template <typename T, int DP, bool VEC, typename Acc, typename Phi>
LDT_DEVICE void apply_tile(const T* qkv, const float* state, T* out,
                           const AttentionProblem& problem, float* ss, float* qs, float* den) {
    constexpr int TILE = LINATTN_APPLY_TILE;
    constexpr int KC = LINATTN_KC;
    constexpr int SS = DP + 8;
    constexpr int NV = VEC ? Vec16<T>::N : 1;
    constexpr int CPK = KC / NV;  // loads per token per stage
    constexpr int TSTEP = LDT_THREADS / CPK;
    constexpr int LOADS = TILE / TSTEP;
    static_assert(LOADS * TSTEP == TILE && 32 % CPK == 0, "tile shape");
    using Raw = typename RawOf<T, VEC>::type;

    const int head = blockIdx.y;
    const int b = blockIdx.z;
    const int tokens = problem.tokens;
    const int heads = problem.heads;
    const int d = problem.d;
    const int h = problem.h;
    const long long ld = problem.ld;
    const int n0 = blockIdx.x * TILE;
    const T* qbase = qkv + (long long)b * tokens * ld + head * d;
    const int tid = threadIdx.x;

    // The state, zero-padded to DP×DP (row stride DP + 8) and DP.
    const float* st = state + ((long long)b * heads + head) * (d * d + d);
    float* zs = ss + DP * SS;
    for (int idx = tid; idx < DP * DP; idx += LDT_THREADS) {
        const int i = idx / DP;
        const int j = idx % DP;
        ss[i * SS + j] = (i < d && j < d) ? st[i * d + j] : 0.0f;
    }
    if (tid < DP) {
        zs[tid] = tid < d ? st[d * d + tid] : 0.0f;
    }
    if (tid < TILE) {
        den[tid] = 0.0f;
    }

    const int lc = tid % CPK;
    const int lt = tid / CPK;
    Raw qr[LOADS];
    auto load_stage = [&](int i0) {
        const int ch = i0 + lc * NV;
#pragma unroll
        for (int l = 0; l < LOADS; ++l) {
            const int n = n0 + lt + l * TSTEP;
            if (ch < d && n < tokens) {
                qr[l] = load_raw<T, VEC>(qbase + n * ld + ch);
            } else {
                qr[l] = Raw{};
            }
        }
    };

    Acc acc;
    load_stage(0);
    __syncthreads();  // the state and den are in place
#pragma unroll 1
    for (int i0 = 0; i0 < DP; i0 += KC) {
        const int ch = i0 + lc * NV;
#pragma unroll
        for (int l = 0; l < LOADS; ++l) {
            const int t = lt + l * TSTEP;
            const bool ok = ch < d && n0 + t < tokens;
            float f[NV];
            unpack_raw<T, VEC>(qr[l], f);
            float p = 0.0f;
#pragma unroll
            for (int e = 0; e < NV; ++e) {
                f[e] = ok ? Phi::map(f[e]) : 0.0f;
                p += f[e] * zs[ch + e];
            }
            store_shared<NV>(qs + t * LINATTN_QSTRIDE + lc * NV, f);
            p = group_sum<CPK>(p);
            if (lc == 0) {
                den[t] += p;  // one writer per token per stage, stages in order
            }
        }
        __syncthreads();
        if (i0 + KC < DP) {
            load_stage(i0 + KC);  // in flight during the arithmetic below
        }
        acc.chunk(qs, ss, i0);
        __syncthreads();  // qs and den are free again
    }

    if (tid < TILE) {
        den[tid] = 1.0f / (den[tid] + Phi::eps());
    }
    __syncthreads();
    // (j, j + 1) with j even: one store of two values when d is even (j < d ⇒ j + 1 < d).
    const bool pairs = d % 2 == 0 && is_aligned(out, 2 * sizeof(T));
    T* obase = out + (long long)b * tokens * h + head * d;
    acc.for_each_pair([&](int t, int j, float& v0, float& v1) {
        const int n = n0 + t;
        if (n < tokens && j < d) {
            T* dst = obase + (long long)n * h + j;
            const float inv = den[t];
            if (pairs) {
                const float o[2] = {v0 * inv, v1 * inv};
                store_vec<2>(dst, o);
            } else {
                dst[0] = from_float<T>(v0 * inv);
                if (j + 1 < d) {
                    dst[1] = from_float<T>(v1 * inv);
                }
            }
        }
    });
}

template <typename T, int DP, bool VEC, typename Phi>
LDT_DEVICE void apply_dispatch(const T* qkv, const float* state, T* out,
                               const AttentionProblem& problem, float* ss, float* qs, float* den) {
    using Acc = typename ApplyPolicy<T, DP>::type;
    apply_tile<T, DP, VEC, Acc, Phi>(qkv, state, out, problem, ss, qs, den);
}

// The body of the kernel instance of storage T, head-dim class DP and feature map Phi.
template <typename T, int DP, typename Phi>
LDT_DEVICE void linear_attention_apply(const T* qkv, const float* state, T* out, int tokens,
                                       int heads, int d) {
    extern __shared__ float4 linattn_dynamic_smem[];
    __shared__ __align__(16) float qs[LINATTN_APPLY_TILE * LINATTN_QSTRIDE];
    __shared__ float den[LINATTN_APPLY_TILE];
    float* ss = reinterpret_cast<float*>(linattn_dynamic_smem);
    const AttentionProblem problem(tokens, heads, d);
    if ((int)blockIdx.x * LINATTN_APPLY_TILE >= tokens || !problem.fits_class<DP>()) {
        return;  // a grid larger than asked for, or a head dim of another class (or too large)
    }
    // The dynamic shared memory is sized for LINATTN_PAD(d) = DP, whichever path.
    if (d % Vec16<T>::N != 0 || !is_aligned(qkv, 16)) {
        apply_dispatch<T, DP, false, Phi>(qkv, state, out, problem, ss, qs, den);
    } else {
        apply_dispatch<T, DP, true, Phi>(qkv, state, out, problem, ss, qs, den);
    }
}

// The kernel instances linear_attention_apply_<SUFFIX>_d<DP> (φ = ELU + 1) and
// linear_attention_relu_apply_<SUFFIX>_d<DP> (φ = ReLU) (instances/apply_*.cu: one
// translation unit each, so each compiles on its own core).
#define LDT_LINEAR_ATTENTION_APPLY_KERNEL(NAME, T, DP, PHI)                                   \
    extern "C" __global__ void __launch_bounds__(LDT_THREADS, 2)                              \
        NAME(const T* qkv, const float* state, T* out, int batch, int tokens, int heads,      \
             int head_dim) {                                                                  \
        (void)batch;                                                                          \
        linear_attention_apply<T, DP, PHI>(qkv, state, out, tokens, heads, head_dim);         \
    }
#define LDT_LINEAR_ATTENTION_APPLY(SUFFIX, T, DP)                                             \
    LDT_LINEAR_ATTENTION_APPLY_KERNEL(linear_attention_apply_##SUFFIX##_d##DP, T, DP,         \
                                      FeatureEluPlusOne)
#define LDT_LINEAR_ATTENTION_RELU_APPLY(SUFFIX, T, DP)                                        \
    LDT_LINEAR_ATTENTION_APPLY_KERNEL(linear_attention_relu_apply_##SUFFIX##_d##DP, T, DP,    \
                                      FeatureRelu)

#endif  // LINEAR_DIT_LINEAR_ATTENTION_APPLY_CUH
