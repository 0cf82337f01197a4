// linear_attention/policies.cuh: the d×d products of the partial and apply passes, done two
// ways (the pass templates in partial.cuh and apply.cuh take one as a parameter):
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
// PartialPolicy<T, DP, TT, STRIDE> and ApplyPolicy<T, DP> pick the one for storage T.

#ifndef LINEAR_DIT_LINEAR_ATTENTION_POLICIES_CUH
#define LINEAR_DIT_LINEAR_ATTENTION_POLICIES_CUH

#include "common.cuh"
#include "linear_attention/params.cuh"
#include "linear_attention/staging.cuh"

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
// The policy of storage T: fp32 FMA for fp32, TF32 tensor cores for bf16 and fp16.

template <typename T, int DP, int TT, int STRIDE> struct PartialPolicy {
    using type = typename Conditional<sizeof(T) == 4, PartialFma<DP, TT, STRIDE>,
                                      PartialMma<DP, TT, STRIDE>>::type;
};
template <typename T, int DP> struct ApplyPolicy {
    using type = typename Conditional<sizeof(T) == 4, ApplyFma<DP>, ApplyMma<DP>>::type;
};

#endif  // LINEAR_DIT_LINEAR_ATTENTION_POLICIES_CUH
