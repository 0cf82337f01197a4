// small_linear.cu: a linear layer on a few fp32 rows, for the per-sample conditioning MLPs
// and the adaLN projections (the host concatenates every layer's adaLN weights, so
// out_features reaches ~100k while rows = B stays small, 1…256):
//
//   small_linear_T(x, W, bias, out, rows, in, out_features, silu_input, accumulate)
//     v = bias[o] + Σ_i a(x[r*in + i]) * W[o*in + i],   a = SiLU if silu_input else identity
//     out[r*out_features + o] = accumulate ? out[...] + v : v
//
// W is T [out_features, in], row-major as in PyTorch; bias (T, may be null); x and out fp32.
//
// The kernel is bound by reading W, so each W row is read from global memory once per
// SL_ROWS rows (once in all for B ≤ 8), with coalesced 128-bit loads:
// - a block is 8 warps, each warp owns SL_OUT_PER_WARP = 4 consecutive output features, so a
//   block covers SL_OUT_PER_BLOCK = 32 features;
// - rows are taken SL_ROWS = 8 at a time; a(x) for those rows is staged in shared memory in
//   tiles of SL_TILE_K = 512 inputs, shared by the 32 features of the block;
// - in a tile, lane l reads 16 bytes of each of its 4 W rows (8 bf16/fp16 or 4 fp32 values)
//   and the matching x values of the 8 rows from shared memory, keeping 8 × 4 fp32 partial
//   sums. The 16-bit path reads its 8 x values as two float4 in a lane-dependent order, which
//   makes the shared-memory reads conflict-free.
// - the 32 partial sums of the warp are reduced by a reduce-scatter butterfly (31 shuffles):
//   afterwards lane l holds the total of (row l / 4, feature l % 4).
// When in is not a multiple of the 16-byte vector or W is misaligned, lanes read W as
// scalars (i = lane, lane + 32, …). The sum for one row never depends on the other rows, so
// results are batch-invariant and deterministic.
//
// Launch: block LDT_THREADS (256), grid.x = ceil(out_features / 32), no dynamic shared memory
// (16 KB static).

#include "common.cuh"

#define SL_OUT_PER_WARP 4
#define SL_OUT_PER_BLOCK (SL_OUT_PER_WARP * LDT_THREADS / 32)
#define SL_ROWS 8
#define SL_TILE_K 512

// One butterfly step of the reduce-scatter: lanes with bit S set keep values S…2S−1, the
// others 0…S−1, and each adds its partner's copy of the values it keeps.
template <int S> LDT_DEVICE void reduce_scatter_step(float (&v)[32], int lane) {
    const bool upper = (lane & S) != 0;
#pragma unroll
    for (int i = 0; i < S; ++i) {
        const float send = upper ? v[i] : v[i + S];
        const float keep = upper ? v[i + S] : v[i];
        v[i] = keep + __shfl_xor_sync(LDT_FULL_MASK, send, S);
    }
}

// Lane l ends with the warp total of value l of its 32 values (index = row * 4 + feature).
LDT_DEVICE float reduce_scatter32(float (&v)[32], int lane) {
    reduce_scatter_step<16>(v, lane);
    reduce_scatter_step<8>(v, lane);
    reduce_scatter_step<4>(v, lane);
    reduce_scatter_step<2>(v, lane);
    reduce_scatter_step<1>(v, lane);
    return v[0];
}

template <typename T, bool VEC>
LDT_DEVICE void small_linear_rows(const float* x, const T* W, const T* bias, float* out, int rows,
                                  int in, int out_features, int silu_input, int accumulate,
                                  float* xs) {
    constexpr int N = VEC ? Vec16<T>::N : 1;  // W values per lane per step
    constexpr int STEP = 32 * N;              // inputs a warp covers per step
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int o0 = blockIdx.x * SL_OUT_PER_BLOCK + warp * SL_OUT_PER_WARP;
    // Features past the end read row 0 of W (never written back): no branch in the loop.
    const T* wrow[SL_OUT_PER_WARP];
#pragma unroll
    for (int o = 0; o < SL_OUT_PER_WARP; ++o) {
        wrow[o] = W + (long long)(o0 + o < out_features ? o0 + o : 0) * in;
    }
    // 16-bit W: lanes 4…7 of each quarter-warp swap the two float4 halves of their 8 x values.
    const int swap = (N == 8) ? (lane >> 2) & 1 : 0;

    for (int r0 = 0; r0 < rows; r0 += SL_ROWS) {
        const int nr = min(SL_ROWS, rows - r0);
        float acc[SL_ROWS * SL_OUT_PER_WARP];
#pragma unroll
        for (int i = 0; i < SL_ROWS * SL_OUT_PER_WARP; ++i) {
            acc[i] = 0.0f;
        }
        for (int k0 = 0; k0 < in; k0 += SL_TILE_K) {
            const int kt = min(SL_TILE_K, in - k0);
            __syncthreads();  // the previous tile is consumed
            // Only the nr rows in use are staged (the others are never read).
            for (int idx = threadIdx.x; idx < nr * SL_TILE_K; idx += LDT_THREADS) {
                const int r = idx / SL_TILE_K;
                const int k = idx % SL_TILE_K;
                float v = 0.0f;
                if (k < kt) {
                    v = x[(long long)(r0 + r) * in + k0 + k];
                    v = silu_input ? silu(v) : v;
                }
                xs[idx] = v;
            }
            __syncthreads();
            for (int k = lane * N; k < kt; k += STEP) {
                float w[SL_OUT_PER_WARP][N];
#pragma unroll
                for (int o = 0; o < SL_OUT_PER_WARP; ++o) {
                    load_vec<N>(wrow[o] + k0 + k, w[o]);
                }
#pragma unroll
                for (int r = 0; r < SL_ROWS; ++r) {
                    if (r < nr) {
                        float xv[N];
                        const float* xr = xs + r * SL_TILE_K + k;
                        if constexpr (N == 8) {
                            const float4 a = *reinterpret_cast<const float4*>(xr + 4 * swap);
                            const float4 c = *reinterpret_cast<const float4*>(xr + 4 - 4 * swap);
                            const float4 lo = swap ? c : a;
                            const float4 hi = swap ? a : c;
                            xv[0] = lo.x, xv[1] = lo.y, xv[2] = lo.z, xv[3] = lo.w;
                            xv[4] = hi.x, xv[5] = hi.y, xv[6] = hi.z, xv[7] = hi.w;
                        } else {
                            load_vec<N>(xr, xv);
                        }
#pragma unroll
                        for (int o = 0; o < SL_OUT_PER_WARP; ++o) {
#pragma unroll
                            for (int e = 0; e < N; ++e) {
                                acc[r * SL_OUT_PER_WARP + o] += xv[e] * w[o][e];
                            }
                        }
                    }
                }
            }
        }
        const float total = reduce_scatter32(acc, lane);
        const int r = lane / SL_OUT_PER_WARP;
        const int o = o0 + lane % SL_OUT_PER_WARP;
        if (r < nr && o < out_features) {
            float v = total;
            if (bias != nullptr) {
                v = to_float(bias[o]) + v;
            }
            float* dst = out + (long long)(r0 + r) * out_features + o;
            *dst = accumulate ? *dst + v : v;
        }
    }
}

template <typename T>
LDT_DEVICE void small_linear(const float* x, const T* W, const T* bias, float* out, int rows,
                             int in, int out_features, int silu_input, int accumulate) {
    __shared__ __align__(16) float xs[SL_ROWS * SL_TILE_K];
    static_assert(SL_ROWS * SL_OUT_PER_WARP == 32, "one reduced value per lane");
    if (in % Vec16<T>::N == 0 && is_aligned(W, 16)) {
        small_linear_rows<T, true>(x, W, bias, out, rows, in, out_features, silu_input,
                                   accumulate, xs);
    } else {
        small_linear_rows<T, false>(x, W, bias, out, rows, in, out_features, silu_input,
                                    accumulate, xs);
    }
}

#define LDT_SMALL_LINEAR(SUFFIX, T)                                                           \
    extern "C" __global__ void __launch_bounds__(LDT_THREADS)                                 \
        small_linear_##SUFFIX(const float* x, const T* W, const T* bias, float* out, int rows, \
                              int in, int out_features, int silu_input, int accumulate) {     \
        small_linear<T>(x, W, bias, out, rows, in, out_features, silu_input, accumulate);    \
    }

LDT_SMALL_LINEAR(f32, float)
LDT_SMALL_LINEAR(bf16, bf16_t)
LDT_SMALL_LINEAR(f16, half_t)
