// linear_attention/params.cuh: the constants of the linear-attention kernels and the struct
// that describes one problem, shared by the three passes (partial.cuh, reduce.cu, apply.cuh).
//
// Non-causal linear attention (Katharopoulos et al. 2020), per sample b and head,
// φ(z) = ELU(z) + 1, no 1/√d (SPEC, "The block"):
//
//   S = Σ_n φ(K_n)ᵀ V_n   [d, d]      z = Σ_n φ(K_n)   [d]
//   O_n = φ(Q_n) S / (φ(Q_n) · z + 1e-6)
//
// Q, K and V are read in place from the qkv projection, T [R, 3h]: Q = columns 0…h−1,
// K = h…2h−1, V = 2h…3h−1, head j's channels j·d … j·d+d−1 of each. The output is T [R, h]
// (column head·d + j). S, z and every sum are fp32 whatever T is. Three passes, so the work
// spreads over the whole GPU even for one sample, and every sum has a fixed order (no atomics:
// bit-identical results from run to run, and per sample whatever else is in the batch).
//
// The host mirrors the constants below in src/backends/cuda/kernel_constants.rs (a test there
// reads this file and checks they agree).

#ifndef LINEAR_DIT_LINEAR_ATTENTION_PARAMS_CUH
#define LINEAR_DIT_LINEAR_ATTENTION_PARAMS_CUH

#include "common.cuh"

// Tokens per partial block the host should use.
#define LINATTN_CHUNK 256
// Tokens per apply block.
#define LINATTN_APPLY_TILE 128
#define LINATTN_MAX_HEAD_DIM 128
// The padded head dim (the head-dim class of a kernel instance), and the apply kernel's
// dynamic shared memory in bytes.
#define LINATTN_PAD(d) ((d) <= 32 ? 32 : (d) <= 64 ? 64 : 128)
#define LINATTN_APPLY_SMEM(d) ((LINATTN_PAD(d) * (LINATTN_PAD(d) + 8) + LINATTN_PAD(d)) * 4)
// φ(Q) channels staged per step of the apply kernel, and the row stride they are staged with.
#define LINATTN_KC 32
#define LINATTN_QSTRIDE (LINATTN_KC + 4)
// The denominator's stabiliser (SPEC).
#define LINATTN_EPS 1e-6f

// One attention problem, from a kernel's arguments: `tokens` tokens per sample, `heads` heads
// of `d` channels each. The block's sample and head come from blockIdx (y: head, z: sample).
struct AttentionProblem {
    int tokens;
    int heads;
    int d;
    int h;         // heads·d: the channels of Q (and of K, V and the output)
    long long ld;  // 3h: elements per qkv row

    LDT_DEVICE AttentionProblem(int tokens_, int heads_, int d_)
        : tokens(tokens_), heads(heads_), d(d_), h(heads_ * d_), ld(3LL * (heads_ * d_)) {}

    // Whether a kernel instance of head-dim class DP serves this problem: d must pad to DP
    // (the host picks the instance, and the apply pass's dynamic shared memory is sized for
    // LINATTN_PAD(d)) and be at most LINATTN_MAX_HEAD_DIM.
    template <int DP> LDT_DEVICE bool fits_class() const {
        return d >= 1 && d <= LINATTN_MAX_HEAD_DIM && LINATTN_PAD(d) == DP;
    }
};

#endif  // LINEAR_DIT_LINEAR_ATTENTION_PARAMS_CUH
