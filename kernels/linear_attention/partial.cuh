// linear_attention/partial.cuh: pass 1 of linear attention, the partial sums of φ(K)ᵀV and
// φ(K) over one chunk of tokens.
//
// linear_attention_partial_<T>_d<DP>(qkv, partial, batch, tokens, heads, head_dim, chunk)
// linear_attention_relu_partial_<T>_d<DP>(…the same…)   φ = ReLU instead of ELU + 1
//   Block (c, head, b) sums its tokens [c·chunk, min((c+1)·chunk, tokens)) into S_c
//   (row-major, i·d + j) and z_c, written to
//   partial + ((b·heads + head)·num_chunks + c)·(d·d + d)   (S_c first, then z_c),
//   num_chunks = ceil(tokens / chunk).
//
// How. The head dim is padded to the instance's class DP ∈ {32, 64, 128} with zeros. Tiles of
// TT tokens of φ(K) and V are staged in shared memory as fp32 (the next tile's global loads are
// in flight in registers meanwhile); z is summed from the staged tile, S by the policy
// (policies.cuh). Shared-memory rows are padded (stride DP + 8) so that the MMA fragment loads
// are conflict-free. Fast path: 128-bit loads (d % (16 / sizeof(T)) == 0, qkv 16-byte
// aligned); otherwise scalar loads compute the same, padding d to 128 whatever the class.

#ifndef LINEAR_DIT_LINEAR_ATTENTION_PARTIAL_CUH
#define LINEAR_DIT_LINEAR_ATTENTION_PARTIAL_CUH

#include "common.cuh"
#include "linear_attention/params.cuh"
#include "linear_attention/policies.cuh"
#include "linear_attention/staging.cuh"

// Shapes of a pass-1 tile for storage T and padded head dim DP.
template <typename T, int DP> struct PartialShape {
    static constexpr int TT = (sizeof(T) == 4 ? 2048 : 4096) / DP;  // tokens per tile
    static constexpr int STRIDE = DP + 8;                           // floats per staged row
    static constexpr int FLOATS = 2 * TT * STRIDE;                  // φ(K) and V
};
// The static tile of an instance of class DP holds the larger of its two paths' tiles (the
// 128-bit path pads to DP, the scalar path to 128).
template <typename T, int DP> struct PartialTileFloats {
    static constexpr int VEC = PartialShape<T, DP>::FLOATS;
    static constexpr int SCALAR = PartialShape<T, 128>::FLOATS;
    static constexpr int N = VEC > SCALAR ? VEC : SCALAR;
};

template <typename T, int DP, bool VEC, typename Acc, typename Phi>
LDT_DEVICE void partial_chunk(const T* qkv, float* partial, const AttentionProblem& problem,
                              int chunk, int num_chunks, float* tile, float* zred) {
    using Shape = PartialShape<T, DP>;
    constexpr int TT = Shape::TT;
    constexpr int STRIDE = Shape::STRIDE;
    constexpr int NV = VEC ? Vec16<T>::N : 1;  // elements per load
    constexpr int CPR = DP / NV;               // loads per padded token row
    constexpr int TSTEP = LDT_THREADS / CPR;   // token rows per load step
    constexpr int LOADS = TT / TSTEP;          // loads per thread per matrix
    constexpr int NS = LDT_THREADS / DP;       // partial z sums per channel
    static_assert(LOADS * TSTEP == TT && TT % NS == 0, "tile shape");
    static_assert(Acc::NG == 1 || DP * DP <= Shape::FLOATS, "the group sum reuses the tile");
    using Raw = typename RawOf<T, VEC>::type;

    float* ks = tile;                // φ(K) [TT][STRIDE]
    float* vs = tile + TT * STRIDE;  // V    [TT][STRIDE]
    const int c = blockIdx.x;
    const int head = blockIdx.y;
    const int b = blockIdx.z;
    const int tokens = problem.tokens;
    const int heads = problem.heads;
    const int d = problem.d;
    const int h = problem.h;
    const long long ld = problem.ld;
    const int n0 = c * chunk;
    const int n1 = min(n0 + chunk, tokens);
    const T* kbase = qkv + (long long)b * tokens * ld + h + head * d;
    const T* vbase = kbase + h;

    const int tid = threadIdx.x;
    const int lc = tid % CPR;  // load column (fixed per thread)
    const int lt = tid / CPR;  // first load row
    const bool col_ok = lc * NV < d;

    Raw kr[LOADS], vr[LOADS];
    auto load_tile = [&](int t0) {
#pragma unroll
        for (int l = 0; l < LOADS; ++l) {
            const int n = t0 + lt + l * TSTEP;
            if (col_ok && n < n1) {
                kr[l] = load_raw<T, VEC>(kbase + n * ld + lc * NV);
                vr[l] = load_raw<T, VEC>(vbase + n * ld + lc * NV);
            } else {
                kr[l] = Raw{};
                vr[l] = Raw{};
            }
        }
    };

    Acc acc;
    const int zi = tid % DP;
    const int zs = tid / DP;
    float zacc = 0.0f;

    load_tile(n0);
    for (int t0 = n0; t0 < n1; t0 += TT) {
        __syncthreads();  // the previous tile is consumed
#pragma unroll
        for (int l = 0; l < LOADS; ++l) {
            const int t = lt + l * TSTEP;
            const bool ok = col_ok && t0 + t < n1;
            float kf[NV], vf[NV];
            unpack_raw<T, VEC>(kr[l], kf);
            unpack_raw<T, VEC>(vr[l], vf);
#pragma unroll
            for (int e = 0; e < NV; ++e) {
                kf[e] = ok ? Phi::map(kf[e]) : 0.0f;
                vf[e] = ok ? vf[e] : 0.0f;
            }
            store_shared<NV>(ks + t * STRIDE + lc * NV, kf);
            store_shared<NV>(vs + t * STRIDE + lc * NV, vf);
        }
        __syncthreads();
        if (t0 + TT < n1) {
            load_tile(t0 + TT);  // in flight during the arithmetic below
        }
        for (int t = zs; t < TT; t += NS) {
            zacc += ks[t * STRIDE + zi];
        }
        acc.tile(ks, vs);
    }

    // Add the groups into group 0, in group order, through the (now free) tile.
    const int g = acc.group();
#pragma unroll 1
    for (int src = 1; src < Acc::NG; ++src) {
        __syncthreads();
        if (g == src) {
            acc.for_each_pair([&](int i, int j, float& v0, float& v1) {
                *reinterpret_cast<float2*>(tile + i * DP + j) = make_float2(v0, v1);
            });
        }
        __syncthreads();
        if (g == 0) {
            acc.for_each_pair([&](int i, int j, float& v0, float& v1) {
                const float2 o = *reinterpret_cast<const float2*>(tile + i * DP + j);
                v0 += o.x;
                v1 += o.y;
            });
        }
    }

    float* dst = partial + (((long long)b * heads + head) * num_chunks + c) * (d * d + d);
    if (g == 0) {
        // (j, j + 1) with j even: one float2 store when d is even, as then j < d ⇒ j + 1 < d.
        const bool pairs = d % 2 == 0 && is_aligned(partial, 8);
        acc.for_each_pair([&](int i, int j, float& v0, float& v1) {
            if (i < d && j < d) {
                if (pairs) {
                    *reinterpret_cast<float2*>(dst + i * d + j) = make_float2(v0, v1);
                } else {
                    dst[i * d + j] = v0;
                    if (j + 1 < d) {
                        dst[i * d + j + 1] = v1;
                    }
                }
            }
        });
    }
    zred[tid] = zacc;  // zred[zs·DP + zi]
    __syncthreads();
    if (tid < d) {
        float z = 0.0f;
#pragma unroll
        for (int s = 0; s < NS; ++s) {
            z += zred[s * DP + tid];
        }
        dst[d * d + tid] = z;
    }
}

template <typename T, int DP, bool VEC, typename Phi>
LDT_DEVICE void partial_dispatch(const T* qkv, float* partial,
                                 const AttentionProblem& problem, int chunk, int num_chunks,
                                 float* tile, float* zred) {
    using Shape = PartialShape<T, DP>;
    using Acc = typename PartialPolicy<T, DP, Shape::TT, Shape::STRIDE>::type;
    partial_chunk<T, DP, VEC, Acc, Phi>(qkv, partial, problem, chunk, num_chunks, tile, zred);
}

// The body of the kernel instance of storage T, head-dim class DP and feature map Phi.
template <typename T, int DP, typename Phi>
LDT_DEVICE void linear_attention_partial(const T* qkv, float* partial, int tokens, int heads,
                                         int d, int chunk) {
    __shared__ __align__(16) float tile[PartialTileFloats<T, DP>::N];
    __shared__ float zred[LDT_THREADS];
    const AttentionProblem problem(tokens, heads, d);
    const int num_chunks = (tokens + chunk - 1) / chunk;
    if ((int)blockIdx.x >= num_chunks || !problem.fits_class<DP>()) {
        return;  // a grid larger than asked for, or a head dim of another class (or too large)
    }
    if (d % Vec16<T>::N != 0 || !is_aligned(qkv, 16)) {  // the rare scalar path: DP = 128
        partial_dispatch<T, 128, false, Phi>(qkv, partial, problem, chunk, num_chunks, tile, zred);
    } else {
        partial_dispatch<T, DP, true, Phi>(qkv, partial, problem, chunk, num_chunks, tile, zred);
    }
}

// The kernel instances linear_attention_partial_<SUFFIX>_d<DP> (φ = ELU + 1) and
// linear_attention_relu_partial_<SUFFIX>_d<DP> (φ = ReLU) (instances/partial_*.cu: one
// translation unit each, so each compiles on its own core).
#define LDT_LINEAR_ATTENTION_PARTIAL_KERNEL(NAME, T, DP, PHI)                                 \
    extern "C" __global__ void __launch_bounds__(LDT_THREADS, 2)                              \
        NAME(const T* qkv, float* partial, int batch, int tokens, int heads, int head_dim,    \
             int chunk) {                                                                     \
        (void)batch;                                                                          \
        linear_attention_partial<T, DP, PHI>(qkv, partial, tokens, heads, head_dim, chunk);  \
    }
#define LDT_LINEAR_ATTENTION_PARTIAL(SUFFIX, T, DP)                                           \
    LDT_LINEAR_ATTENTION_PARTIAL_KERNEL(linear_attention_partial_##SUFFIX##_d##DP, T, DP,     \
                                        FeatureEluPlusOne)
#define LDT_LINEAR_ATTENTION_RELU_PARTIAL(SUFFIX, T, DP)                                      \
    LDT_LINEAR_ATTENTION_PARTIAL_KERNEL(linear_attention_relu_partial_##SUFFIX##_d##DP, T,    \
                                        DP, FeatureRelu)

#endif  // LINEAR_DIT_LINEAR_ATTENTION_PARTIAL_CUH
