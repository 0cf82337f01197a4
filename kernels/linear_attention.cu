// linear_attention.cu: non-causal linear attention (Katharopoulos et al. 2020), per sample b
// and head, φ(z) = ELU(z) + 1, no 1/√d (SPEC, "The block"):
//
//   S = Σ_n φ(K_n)ᵀ V_n   [d, d]      z = Σ_n φ(K_n)   [d]
//   O_n = φ(Q_n) S / (φ(Q_n) · z + 1e-6)
//
// Q, K and V are read in place from the qkv projection, T [R, 3h]: Q = columns 0…h−1,
// K = h…2h−1, V = 2h…3h−1, head j's channels j·d … j·d+d−1 of each. The output is T [R, h]
// (column head·d + j). S, z and every sum are fp32 whatever T is. Three passes, so the work
// spreads over the whole GPU even for one sample, and every sum has a fixed order (no atomics:
// bit-identical results from run to run, and per sample whatever else is in the batch):
//
// 1. linear_attention_partial_T(qkv, partial, batch, tokens, heads, head_dim, chunk)
//    Block (c, head, b) sums its tokens [c·chunk, min((c+1)·chunk, tokens)) into S_c
//    (row-major, i·d + j) and z_c, written to
//    partial + ((b·heads + head)·num_chunks + c)·(d·d + d)   (S_c first, then z_c).
// 2. linear_attention_reduce(partial, state, groups, num_chunks, d)
//    state[g·(d·d + d) + e] = Σ_c partial[(g·num_chunks + c)·(d·d + d) + e], c ascending.
// 3. linear_attention_apply_T(qkv, state, out, batch, tokens, heads, head_dim)
//    Block (tile, head, b) computes O for LINATTN_APPLY_TILE tokens.
//
// How. The head dim is padded to DP ∈ {32, 64, 128} with zeros. Pass 1 stages tiles of TT
// tokens of φ(K) and V in shared memory as fp32 (the next tile's global loads are in flight in
// registers meanwhile) and sums z from the staged tile; pass 3 loads the state into shared
// memory and stages φ(Q) KC = 32 channels at a time, accumulating the denominators φ(Q)·z as
// it stages. The d×d products are done two ways:
// - fp32 storage (the reference precision): fp32 FMA, register-tiled. Pass 1: a thread owns
//   an 8×8 block of S (rows 4ty…4ty+3 and DP/2+4ty…, columns likewise, so its float4 reads of
//   shared memory are conflict-free); 256/(DP/8)² groups of threads split a tile's tokens and
//   are added in a fixed order at the end. Pass 3: a thread owns TOK tokens × COLS columns.
// - bf16/fp16 storage: tensor cores, TF32 mma.sync m16n8k8 with fp32 accumulation and the
//   hi/lo split of common.cuh, so the result has fp32-level accuracy. At d/2 flops per byte the
//   fp32-FMA version would be compute-bound on an H100/H200; this one is memory-bound. Pass 1:
//   φ(K) is split (V, a bf16/fp16 value, is exact in tf32): 2 MMAs per tile; warps own 32×64
//   (DP = 128) or 32×32 blocks of S, groups of warps split the tokens. Pass 3: φ(Q) and S are
//   both split: 3 MMAs per tile; a warp owns 32 tokens × DP/2 columns.
// Shared-memory rows are padded (stride DP + 8 for the tiles and S, KC + 4 for φ(Q)) so that
// the MMA fragment loads are conflict-free.
//
// Any tokens ≥ 1 (ragged tails are masked), head_dim 1…128 (the host must reject d > 128:
// such blocks do nothing). Fast paths: d = 32, 64, 128 (no padding) with
// d % (16 / sizeof(T)) == 0 and a 16-byte-aligned qkv (128-bit loads). Otherwise scalar loads
// compute the same, pass 1 then padding d to 128.
//
// Launch (block LDT_THREADS = 256 for all three; the MMA path needs sm_80+):
//   partial: grid (num_chunks = ceil(tokens / chunk), heads, batch), no dynamic shared memory
//            (≤ 42 KB static); chunk = LINATTN_CHUNK recommended (any chunk ≥ 1 is correct;
//            multiples of 128 waste nothing). num_chunks is the same in the three passes.
//   reduce:  grid (ceil((d·d + d) / 256), batch·heads), no dynamic shared memory.
//   apply:   grid (ceil(tokens / LINATTN_APPLY_TILE), heads, batch), dynamic shared memory
//            LINATTN_APPLY_SMEM(d) = (DP·(DP + 8) + DP)·4 bytes, DP = LINATTN_PAD(d)
//            (d = 128: 70,144 bytes, so the host raises the kernel's max dynamic shared memory
//            attribute above 48 KB; d = 64: 18,688; d = 32: 5,248), plus 18.5 KB static.
// Buffers: partial batch·heads·num_chunks·(d·d + d) floats, state batch·heads·(d·d + d) floats.

#include "common.cuh"

// Tokens per partial block the host should use.
#define LINATTN_CHUNK 256
// Tokens per apply block.
#define LINATTN_APPLY_TILE 128
#define LINATTN_MAX_HEAD_DIM 128
// The padded head dim, and the apply kernel's dynamic shared memory in bytes.
#define LINATTN_PAD(d) ((d) <= 32 ? 32 : (d) <= 64 ? 64 : 128)
#define LINATTN_APPLY_SMEM(d) ((LINATTN_PAD(d) * (LINATTN_PAD(d) + 8) + LINATTN_PAD(d)) * 4)
// φ(Q) channels staged per step of the apply kernel, and the row stride they are staged with.
#define LINATTN_KC 32
#define LINATTN_QSTRIDE (LINATTN_KC + 4)
// The denominator's stabiliser (SPEC).
#define LINATTN_EPS 1e-6f

// Shapes of a pass-1 tile for storage T and padded head dim DP.
template <typename T, int DP> struct PartialShape {
    static constexpr int TT = (sizeof(T) == 4 ? 2048 : 4096) / DP;  // tokens per tile
    static constexpr int STRIDE = DP + 8;                           // floats per staged row
    static constexpr int FLOATS = 2 * TT * STRIDE;                  // φ(K) and V
};
// The static tile is sized for the largest DP.
template <typename T> struct PartialTileFloats {
    static constexpr int A = PartialShape<T, 32>::FLOATS;
    static constexpr int B = PartialShape<T, 64>::FLOATS;
    static constexpr int C = PartialShape<T, 128>::FLOATS;
    static constexpr int AB = A > B ? A : B;
    static constexpr int N = AB > C ? AB : C;
};

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

// ---------------------------------------------------------------------------------------------
// Pass 1, the d×d sum of one staged tile: S += φ(K)ᵀV over its TT tokens.
// ks, vs: [TT][STRIDE] fp32. Both policies expose NG token groups (group() of this thread),
// and visit their accumulators in pairs (row, col, value of col, value of col + 1), col even,
// with for_each_pair.

// fp32 FMA: a (DP/8)×(DP/8) group of threads, each owning an 8×8 block of S.
template <int DP, int TT, int STRIDE> struct PartialFma {
    static constexpr int G = DP / 8;
    static constexpr int GT = G * G;
    static constexpr int NG = LDT_THREADS / GT;
    static_assert(TT % NG == 0, "tile shape");
    float acc[8][8];
    int g, ty, tx;

    LDT_DEVICE PartialFma() {
        const int tid = threadIdx.x;
        g = tid / GT;
        ty = (tid % GT) / G;
        tx = tid % G;
#pragma unroll
        for (int a = 0; a < 8; ++a) {
#pragma unroll
            for (int e = 0; e < 8; ++e) {
                acc[a][e] = 0.0f;
            }
        }
    }
    LDT_DEVICE int group() const { return g; }
    // Row a of the thread's block is S row 4ty + a (a < 4) or DP/2 + 4ty + a − 4; columns alike.
    LDT_DEVICE int row_of(int a) const { return (a < 4 ? 0 : DP / 2 - 4) + 4 * ty + a; }
    LDT_DEVICE int col_of(int e) const { return (e < 4 ? 0 : DP / 2 - 4) + 4 * tx + e; }

    LDT_DEVICE void tile(const float* ks, const float* vs) {
        for (int t = g; t < TT; t += NG) {
            float k[8], v[8];
            float4_to(*reinterpret_cast<const float4*>(ks + t * STRIDE + 4 * ty), k);
            float4_to(*reinterpret_cast<const float4*>(ks + t * STRIDE + DP / 2 + 4 * ty), k + 4);
            float4_to(*reinterpret_cast<const float4*>(vs + t * STRIDE + 4 * tx), v);
            float4_to(*reinterpret_cast<const float4*>(vs + t * STRIDE + DP / 2 + 4 * tx), v + 4);
#pragma unroll
            for (int a = 0; a < 8; ++a) {
#pragma unroll
                for (int e = 0; e < 8; ++e) {
                    acc[a][e] += k[a] * v[e];
                }
            }
        }
    }

    template <typename F> LDT_DEVICE void for_each_pair(F f) {
#pragma unroll
        for (int a = 0; a < 8; ++a) {
#pragma unroll
            for (int e = 0; e < 8; e += 2) {
                f(row_of(a), col_of(e), acc[a][e], acc[a][e + 1]);
            }
        }
    }
};

// TF32 tensor cores: warps own 32 × (8·NT) blocks of S (2 × NT m16n8 tiles); a group of
// WM × WN warps covers S, NG groups split the tile's tokens in steps of 8.
template <int DP, int TT, int STRIDE> struct PartialMma {
    static constexpr int NT = DP == 128 ? 8 : 4;
    static constexpr int WM = DP / 32;
    static constexpr int WN = DP / (8 * NT);
    static constexpr int NG = (LDT_THREADS / 32) / (WM * WN);
    static_assert(WM * WN * NG == LDT_THREADS / 32 && (TT / 8) % NG == 0, "tile shape");
    float acc[2][NT][4];
    int g, m0, n0, lg, lt;

    LDT_DEVICE PartialMma() {
        const int warp = threadIdx.x >> 5;
        const int lane = threadIdx.x & 31;
        g = warp / (WM * WN);
        m0 = ((warp % (WM * WN)) / WN) * 32;
        n0 = (warp % WN) * 8 * NT;
        lg = lane >> 2;
        lt = lane & 3;
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                    acc[mt][nt][q] = 0.0f;
                }
            }
        }
    }
    LDT_DEVICE int group() const { return g; }

    // A = φ(K)ᵀ (A[m][k] = ks[k][m], split hi/lo), B = V (B[k][n] = vs[k][n], exact in tf32).
    LDT_DEVICE void tile(const float* ks, const float* vs) {
#pragma unroll 1
        for (int k0 = 8 * g; k0 < TT; k0 += 8 * NG) {
            const float* k_lo = ks + (k0 + lt) * STRIDE;      // token k0 + t
            const float* k_hi = ks + (k0 + lt + 4) * STRIDE;  // token k0 + t + 4
            unsigned int ahi[2][4], alo[2][4];
#pragma unroll
            for (int mt = 0; mt < 2; ++mt) {
                const int m = m0 + mt * 16 + lg;
                const float a[4] = {k_lo[m], k_lo[m + 8], k_hi[m], k_hi[m + 8]};
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                    const Tf32Split s = split_tf32(a[q]);
                    ahi[mt][q] = s.hi;
                    alo[mt][q] = s.lo;
                }
            }
            const float* v_lo = vs + (k0 + lt) * STRIDE;
            const float* v_hi = vs + (k0 + lt + 4) * STRIDE;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                const int n = n0 + nt * 8 + lg;
                const unsigned int b[2] = {__float_as_uint(v_lo[n]), __float_as_uint(v_hi[n])};
#pragma unroll
                for (int mt = 0; mt < 2; ++mt) {
                    mma_tf32(acc[mt][nt], alo[mt], b);
                    mma_tf32(acc[mt][nt], ahi[mt], b);
                }
            }
        }
    }

    template <typename F> LDT_DEVICE void for_each_pair(F f) {
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
                for (int q = 0; q < 4; q += 2) {
                    f(m0 + mt * 16 + lg + (q >> 1) * 8, n0 + nt * 8 + 2 * lt, acc[mt][nt][q],
                      acc[mt][nt][q + 1]);
                }
            }
        }
    }
};

// ---------------------------------------------------------------------------------------------
// Pass 1: partial sums of φ(K)ᵀV and φ(K) over one chunk of tokens.

template <typename T, int DP, bool VEC, typename Acc>
LDT_DEVICE void partial_chunk(const T* qkv, float* partial, int tokens, int heads, int d,
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
    const int h = heads * d;
    const long long ld = 3LL * h;
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
                kf[e] = ok ? phi(kf[e]) : 0.0f;
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

template <typename T, int DP, bool VEC>
LDT_DEVICE void partial_dispatch(const T* qkv, float* partial, int tokens, int heads, int d,
                                 int chunk, int num_chunks, float* tile, float* zred) {
    using Shape = PartialShape<T, DP>;
    using Acc = typename Conditional<sizeof(T) == 4, PartialFma<DP, Shape::TT, Shape::STRIDE>,
                                     PartialMma<DP, Shape::TT, Shape::STRIDE>>::type;
    partial_chunk<T, DP, VEC, Acc>(qkv, partial, tokens, heads, d, chunk, num_chunks, tile, zred);
}

template <typename T>
LDT_DEVICE void linear_attention_partial(const T* qkv, float* partial, int tokens, int heads,
                                         int d, int chunk) {
    __shared__ __align__(16) float tile[PartialTileFloats<T>::N];
    __shared__ float zred[LDT_THREADS];
    const int num_chunks = (tokens + chunk - 1) / chunk;
    if ((int)blockIdx.x >= num_chunks || d > LINATTN_MAX_HEAD_DIM) {
        return;  // a grid larger than asked for, or a head dim the host must reject
    }
    if (d % Vec16<T>::N != 0 || !is_aligned(qkv, 16)) {  // the rare scalar path: DP = 128
        partial_dispatch<T, 128, false>(qkv, partial, tokens, heads, d, chunk, num_chunks, tile,
                                        zred);
    } else if (d <= 32) {
        partial_dispatch<T, 32, true>(qkv, partial, tokens, heads, d, chunk, num_chunks, tile,
                                      zred);
    } else if (d <= 64) {
        partial_dispatch<T, 64, true>(qkv, partial, tokens, heads, d, chunk, num_chunks, tile,
                                      zred);
    } else {
        partial_dispatch<T, 128, true>(qkv, partial, tokens, heads, d, chunk, num_chunks, tile,
                                       zred);
    }
}

// ---------------------------------------------------------------------------------------------
// Pass 2: the chunks' partial sums, added in chunk order.

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

// ---------------------------------------------------------------------------------------------
// Pass 3, the product of one staged φ(Q) chunk with S: acc += φ(Q)[:, i0…i0+KC) · S[i0…, :].
// qs: [TILE][QSTRIDE] fp32, ss: [DP][DP + 8] fp32. Both policies visit their outputs in
// pairs (token, col, value of col, value of col + 1), col even, with for_each_pair.

// fp32 FMA: a thread owns TOK tokens × COLS columns (two float4 groups 4tx… and DP/2 + 4tx…).
template <int DP> struct ApplyFma {
    static constexpr int TILE = LINATTN_APPLY_TILE;
    static constexpr int COLS = DP >= 64 ? 8 : 4;
    static constexpr int TX = DP / COLS;
    static constexpr int TY = LDT_THREADS / TX;
    static constexpr int TOK = TILE / TY;
    static_assert(TY * TOK == TILE, "tile shape");
    float acc[TOK][COLS];
    int ty, tx;

    LDT_DEVICE ApplyFma() {
        ty = threadIdx.x / TX;
        tx = threadIdx.x % TX;
#pragma unroll
        for (int t = 0; t < TOK; ++t) {
#pragma unroll
            for (int c = 0; c < COLS; ++c) {
                acc[t][c] = 0.0f;
            }
        }
    }

    LDT_DEVICE void chunk(const float* qs, const float* ss, int i0) {
        constexpr int SS = DP + 8;
#pragma unroll 2  // more spills at 128 registers (2 blocks per SM)
        for (int ii = 0; ii < LINATTN_KC; ++ii) {
            float q[TOK];
#pragma unroll
            for (int t = 0; t < TOK; ++t) {
                q[t] = qs[(ty * TOK + t) * LINATTN_QSTRIDE + ii];
            }
            const float* srow = ss + (i0 + ii) * SS;
            float s[COLS];
            float4_to(*reinterpret_cast<const float4*>(srow + 4 * tx), s);
            if constexpr (COLS == 8) {
                float4_to(*reinterpret_cast<const float4*>(srow + DP / 2 + 4 * tx), s + 4);
            }
#pragma unroll
            for (int t = 0; t < TOK; ++t) {
#pragma unroll
                for (int c = 0; c < COLS; ++c) {
                    acc[t][c] += q[t] * s[c];
                }
            }
        }
    }

    template <typename F> LDT_DEVICE void for_each_pair(F f) {
#pragma unroll
        for (int t = 0; t < TOK; ++t) {
#pragma unroll
            for (int c = 0; c < COLS; c += 2) {
                f(ty * TOK + t, (c < 4 ? 0 : DP / 2 - 4) + 4 * tx + c, acc[t][c], acc[t][c + 1]);
            }
        }
    }
};

// TF32 tensor cores: warp (wm, wn) owns tokens 32wm … 32wm+31 × columns wn·DP/2 …, as 2 × NT
// m16n8 tiles; A = φ(Q) and B = S are both split hi/lo (3 MMAs per tile).
template <int DP> struct ApplyMma {
    static constexpr int NT = DP / 16;
    float acc[2][NT][4];
    int m0, n0, lg, lt;

    LDT_DEVICE ApplyMma() {
        const int warp = threadIdx.x >> 5;
        const int lane = threadIdx.x & 31;
        m0 = (warp >> 1) * 32;
        n0 = (warp & 1) * (DP / 2);
        lg = lane >> 2;
        lt = lane & 3;
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                    acc[mt][nt][q] = 0.0f;
                }
            }
        }
    }

    LDT_DEVICE void chunk(const float* qs, const float* ss, int i0) {
        constexpr int SS = DP + 8;
        constexpr int QS = LINATTN_QSTRIDE;
#pragma unroll 1
        for (int k0 = 0; k0 < LINATTN_KC; k0 += 8) {
            unsigned int ahi[2][4], alo[2][4];
#pragma unroll
            for (int mt = 0; mt < 2; ++mt) {
                const float* q0 = qs + (m0 + mt * 16 + lg) * QS + k0 + lt;  // token g, channel t
                const float* q8 = q0 + 8 * QS;                              // token g + 8
                const float a[4] = {q0[0], q8[0], q0[4], q8[4]};
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                    const Tf32Split s = split_tf32(a[q]);
                    ahi[mt][q] = s.hi;
                    alo[mt][q] = s.lo;
                }
            }
            const float* s_lo = ss + (i0 + k0 + lt) * SS;      // channel i0 + k0 + t
            const float* s_hi = ss + (i0 + k0 + lt + 4) * SS;  // channel i0 + k0 + t + 4
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                const int n = n0 + nt * 8 + lg;
                const Tf32Split b0 = split_tf32(s_lo[n]);
                const Tf32Split b1 = split_tf32(s_hi[n]);
                const unsigned int bhi[2] = {b0.hi, b1.hi};
                const unsigned int blo[2] = {b0.lo, b1.lo};
#pragma unroll
                for (int mt = 0; mt < 2; ++mt) {
                    mma_tf32(acc[mt][nt], alo[mt], bhi);
                    mma_tf32(acc[mt][nt], ahi[mt], blo);
                    mma_tf32(acc[mt][nt], ahi[mt], bhi);
                }
            }
        }
    }

    template <typename F> LDT_DEVICE void for_each_pair(F f) {
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
                for (int q = 0; q < 4; q += 2) {
                    f(m0 + mt * 16 + lg + (q >> 1) * 8, n0 + nt * 8 + 2 * lt, acc[mt][nt][q],
                      acc[mt][nt][q + 1]);
                }
            }
        }
    }
};

// ---------------------------------------------------------------------------------------------
// Pass 3: O = φ(Q) S / (φ(Q)·z + 1e-6) for a tile of LINATTN_APPLY_TILE tokens.

template <typename T, int DP, bool VEC, typename Acc>
LDT_DEVICE void apply_tile(const T* qkv, const float* state, T* out, int tokens, int heads, int d,
                           float* ss, float* qs, float* den) {
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
    const int h = heads * d;
    const long long ld = 3LL * h;
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
                f[e] = ok ? phi(f[e]) : 0.0f;
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
        den[tid] = 1.0f / (den[tid] + LINATTN_EPS);
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

template <typename T, int DP, bool VEC>
LDT_DEVICE void apply_dispatch(const T* qkv, const float* state, T* out, int tokens, int heads,
                               int d, float* ss, float* qs, float* den) {
    using Acc = typename Conditional<sizeof(T) == 4, ApplyFma<DP>, ApplyMma<DP>>::type;
    apply_tile<T, DP, VEC, Acc>(qkv, state, out, tokens, heads, d, ss, qs, den);
}

template <typename T>
LDT_DEVICE void linear_attention_apply(const T* qkv, const float* state, T* out, int tokens,
                                       int heads, int d) {
    extern __shared__ float4 linattn_dynamic_smem[];
    __shared__ __align__(16) float qs[LINATTN_APPLY_TILE * LINATTN_QSTRIDE];
    __shared__ float den[LINATTN_APPLY_TILE];
    float* ss = reinterpret_cast<float*>(linattn_dynamic_smem);
    if ((int)blockIdx.x * LINATTN_APPLY_TILE >= tokens || d > LINATTN_MAX_HEAD_DIM) {
        return;  // a grid larger than asked for, or a head dim the host must reject
    }
    // The dynamic shared memory is sized for LINATTN_PAD(d): the scalar path uses DP = 128
    // only when d > 64.
    if (d % Vec16<T>::N != 0 || !is_aligned(qkv, 16)) {
        if (d <= 32) {
            apply_dispatch<T, 32, false>(qkv, state, out, tokens, heads, d, ss, qs, den);
        } else if (d <= 64) {
            apply_dispatch<T, 64, false>(qkv, state, out, tokens, heads, d, ss, qs, den);
        } else {
            apply_dispatch<T, 128, false>(qkv, state, out, tokens, heads, d, ss, qs, den);
        }
    } else if (d <= 32) {
        apply_dispatch<T, 32, true>(qkv, state, out, tokens, heads, d, ss, qs, den);
    } else if (d <= 64) {
        apply_dispatch<T, 64, true>(qkv, state, out, tokens, heads, d, ss, qs, den);
    } else {
        apply_dispatch<T, 128, true>(qkv, state, out, tokens, heads, d, ss, qs, den);
    }
}

#define LDT_LINEAR_ATTENTION(SUFFIX, T)                                                       \
    extern "C" __global__ void __launch_bounds__(LDT_THREADS, 2)                              \
        linear_attention_partial_##SUFFIX(const T* qkv, float* partial, int batch, int tokens, \
                                          int heads, int head_dim, int chunk) {               \
        (void)batch;                                                                          \
        linear_attention_partial<T>(qkv, partial, tokens, heads, head_dim, chunk);           \
    }                                                                                         \
    extern "C" __global__ void __launch_bounds__(LDT_THREADS, 2)                              \
        linear_attention_apply_##SUFFIX(const T* qkv, const float* state, T* out, int batch,  \
                                        int tokens, int heads, int head_dim) {                \
        (void)batch;                                                                          \
        linear_attention_apply<T>(qkv, state, out, tokens, heads, head_dim);                  \
    }

LDT_LINEAR_ATTENTION(f32, float)
LDT_LINEAR_ATTENTION(bf16, bf16_t)
LDT_LINEAR_ATTENTION(f16, half_t)
