// masked_softmax.cu: the softmax of sana's cross-attention (image tokens to caption tokens),
// the middle of three steps: scores = Q·Kᵀ (a cuBLASLt GEMM with fp32 output), this kernel,
// then out = P·V (a cuBLASLt GEMM):
//
//   masked_softmax_T(scores, probs, mask, rows_per_sample, texts, batch, scale)
//     z_j = scale · scores[r, j] + (1 − mask[b, j]) · (−10000),   b = r / rows_per_sample
//     probs[r, j] = e^(z_j − max_j z) / Σ_j e^(z_j − max_j z)
//
// scores is fp32 [batch·rows_per_sample, texts] (row r of sample b: any order of (head, image
// token) inside the sample, e.g. [B, heads, N, S] or [B, N, heads, S]); probs is T, same
// shape; mask is fp32 [batch, texts] with values in [0, 1] (1 keeps a caption token). The
// bias is diffusers' (SanaAttnProcessor2_0 via prepare_attention_mask): −10000, not −∞, so a
// fully masked caption attends uniformly to all its tokens, as there. scale is 1/√d (or 1
// when the GEMM's alpha already applied it). fp32 throughout; probs rounded once into T. For
// fp32 storage probs may be scores itself (every value is read before the same thread
// writes it).
//
// Why a softmax between two GEMMs rather than a fused attention kernel: the caption is short
// (≤ 300 tokens; up to 4096 allowed) and the head dim small (32), so both products are plain
// batched GEMMs that cuBLASLt runs near peak, and this kernel is memory-bound (one read of
// fp32 scores, one write of T probabilities); the price is the [rows, texts] scores buffer,
// which the host bounds by tiling the image tokens. A fused kernel would save that buffer's
// traffic at the cost of re-implementing both GEMMs; left for when profiles ask for it.
//
// How. One warp per row. texts ≤ 512 (SANA's 300): lane l holds z_j for j = l + 32k in
// registers (the warp reads 32 consecutive floats per step), max and sum by shuffles, the
// row read once and written once. Longer rows: three strided passes over the row (max, sum,
// write), recomputing z from global memory (L1/L2) each time.
//
// Launch: block LDT_THREADS (256), grid.x = ceil(batch·rows_per_sample / 8) (the kernel
// strides over rows: any grid.x ≥ 1 is correct), no dynamic shared memory.

#include "common.cuh"

// Values per lane on the register path: rows of up to 32·SMX_PER_LANE texts.
#define SMX_PER_LANE 16
// diffusers' additive bias of a dropped caption token.
#define SMX_MASKED_BIAS -10000.0f

LDT_DEVICE float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float w = __shfl_xor_sync(LDT_FULL_MASK, v, o);
        v = w > v ? w : v;
    }
    return v;
}

// The biased, scaled score j of a row.
LDT_DEVICE float smx_logit(const float* s, const float* mask, int j, float scale) {
    return scale * s[j] + (1.0f - mask[j]) * SMX_MASKED_BIAS;
}

template <typename T>
LDT_DEVICE void smx_row_registers(const float* s, const float* mask, T* p, int texts,
                                  float scale, int lane) {
    float z[SMX_PER_LANE];
    float mx = -3.402823466e38f;
#pragma unroll
    for (int k = 0; k < SMX_PER_LANE; ++k) {
        const int j = lane + 32 * k;
        z[k] = j < texts ? smx_logit(s, mask, j, scale) : -3.402823466e38f;
        mx = z[k] > mx ? z[k] : mx;
    }
    mx = warp_max(mx);
    float sum = 0.0f;
#pragma unroll
    for (int k = 0; k < SMX_PER_LANE; ++k) {
        const int j = lane + 32 * k;
        z[k] = j < texts ? expf(z[k] - mx) : 0.0f;
        sum += z[k];
    }
    const float inv = 1.0f / warp_sum(sum);
#pragma unroll
    for (int k = 0; k < SMX_PER_LANE; ++k) {
        const int j = lane + 32 * k;
        if (j < texts) {
            p[j] = from_float<T>(z[k] * inv);
        }
    }
}

template <typename T>
LDT_DEVICE void smx_row_streamed(const float* s, const float* mask, T* p, int texts,
                                 float scale, int lane) {
    float mx = -3.402823466e38f;
    for (int j = lane; j < texts; j += 32) {
        const float z = smx_logit(s, mask, j, scale);
        mx = z > mx ? z : mx;
    }
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int j = lane; j < texts; j += 32) {
        sum += expf(smx_logit(s, mask, j, scale) - mx);
    }
    const float inv = 1.0f / warp_sum(sum);
    for (int j = lane; j < texts; j += 32) {
        p[j] = from_float<T>(expf(smx_logit(s, mask, j, scale) - mx) * inv);
    }
}

template <typename T>
LDT_DEVICE void masked_softmax(const float* scores, T* probs, const float* mask,
                               int rows_per_sample, int texts, int batch, float scale) {
    constexpr int ROWS_PER_BLOCK = LDT_THREADS / 32;
    const long long rows = (long long)batch * rows_per_sample;
    const int lane = threadIdx.x & 31;
    for (long long r = (long long)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5); r < rows;
         r += (long long)gridDim.x * ROWS_PER_BLOCK) {
        const int b = (int)(r / rows_per_sample);
        const float* s = scores + r * texts;
        const float* mk = mask + (long long)b * texts;
        T* p = probs + r * texts;
        if (texts <= 32 * SMX_PER_LANE) {
            smx_row_registers<T>(s, mk, p, texts, scale, lane);
        } else {
            smx_row_streamed<T>(s, mk, p, texts, scale, lane);
        }
    }
}

#define LDT_MASKED_SOFTMAX(SUFFIX, T)                                                         \
    extern "C" __global__ void __launch_bounds__(LDT_THREADS)                                 \
        masked_softmax_##SUFFIX(const float* scores, T* probs, const float* mask,             \
                                int rows_per_sample, int texts, int batch, float scale) {     \
        masked_softmax<T>(scores, probs, mask, rows_per_sample, texts, batch, scale);         \
    }

LDT_MASKED_SOFTMAX(f32, float)
LDT_MASKED_SOFTMAX(bf16, bf16_t)
LDT_MASKED_SOFTMAX(f16, half_t)
