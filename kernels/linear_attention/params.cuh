// linear_attention/params.cuh: the constants of the linear-attention kernels and the struct
// that describes one problem, shared by the three passes (partial.cuh, reduce.cu, apply.cuh).
//
// Non-causal linear attention (Katharopoulos et al. 2020), per sample b and head, no 1/√d:
//
//   S = Σ_n φ(K_n)ᵀ V_n   [d, d]      z = Σ_n φ(K_n)   [d]
//   O_n = φ(Q_n) S / (φ(Q_n) · z + ε)
//
// The feature map φ and its ε are a template parameter of passes 1 and 3 (FeatureMap below):
// ELU(z) + 1 with ε = 1e-6 (dit, edifice: SPEC, "The block"), or ReLU with ε = 1e-15 (sana:
// SPEC §9, diffusers' SanaLinearAttnProcessor2_0, which also computes in fp32).
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
// The denominator's stabilisers (SPEC): of the ELU + 1 map, and of the ReLU map (sana).
#define LINATTN_EPS 1e-6f
#define LINATTN_RELU_EPS 1e-15f

// The feature maps: map(z) = φ(z), and eps() the ε of the denominator that goes with it (an
// attention is defined by the pair). Static functions rather than constexpr members: both
// nvcc and NVRTC accept them in device code without flags.
struct FeatureEluPlusOne {
    static LDT_DEVICE float map(float z) { return phi(z); }
    static LDT_DEVICE float eps() { return LINATTN_EPS; }
};
// ReLU; NaN maps to 0 (z > 0 is false), as the CPU twin's f32::max(z, 0).
struct FeatureRelu {
    static LDT_DEVICE float map(float z) { return z > 0.0f ? z : 0.0f; }
    static LDT_DEVICE float eps() { return LINATTN_RELU_EPS; }
};

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
