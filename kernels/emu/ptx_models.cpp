// ptx_models.cpp: CPU models of the inline-PTX instructions of common.cuh, which it calls
// under LDT_EMULATE (one model per instruction; cuda_emu.hpp makes any other asm a compile
// error). References are to the PTX ISA (NVIDIA, "Parallel Thread Execution ISA").
//
// The fp16 conversions are written from the IEEE binary16 format, not with the compiler's
// _Float16, so that the harness (which uses _Float16 for its reference values) checks them
// against an independent implementation.

#include <cmath>
#include <cstdint>
#include <cstring>

#include "cuda_emu.hpp"

namespace ldt_emu {
namespace {

std::uint32_t bits_of(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}
float float_of(std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

}  // namespace

// cvt.f32.f16 (PTX ISA, "cvt"): exact; NaN stays NaN (made quiet), infinities and subnormals
// are converted exactly.
float ptx_cvt_f32_f16(unsigned short h) {
    const std::uint32_t sign = (std::uint32_t)(h & 0x8000u) << 16;
    const std::uint32_t exp = (h >> 10) & 0x1fu;
    const std::uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) {
        return float_of(sign | 0x7f800000u | (man != 0 ? 0x400000u | (man << 13) : 0));
    }
    if (exp == 0) {
        const float mag = std::ldexp((float)man, -24);  // ±0 or a subnormal: man · 2^−24
        return sign != 0 ? -mag : mag;
    }
    return float_of(sign | ((exp + 112u) << 23) | (man << 13));
}

// cvt.rn.f16.f32 (PTX ISA, "cvt"): round to nearest even; a magnitude that rounds past the
// largest finite fp16 (≥ 65520) becomes ±inf; NaN becomes the canonical NaN 0x7fff.
unsigned short ptx_cvt_rn_f16_f32(float f) {
    const std::uint32_t x = bits_of(f);
    const std::uint32_t sign = (x >> 16) & 0x8000u;
    const std::uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) {
        return 0x7fff;
    }
    if (ax >= 0x477ff000u) {  // 65520 and up (infinity included)
        return (unsigned short)(sign | 0x7c00u);
    }
    if (ax >= 0x38800000u) {  // 2^−14 and up: a normal fp16; rebias the exponent (127 → 15)
        const std::uint32_t m = ax - 0x38000000u;
        return (unsigned short)(sign | ((m + 0xfffu + ((m >> 13) & 1u)) >> 13));
    }
    if (ax <= 0x33000000u) {  // at most 2^−25, half the smallest subnormal: rounds to ±0
        return (unsigned short)sign;
    }
    // A subnormal fp16, in units of 2^−24: the float's significand shifted right, rounded
    // to nearest even on the bits shifted out.
    const std::uint32_t e = ax >> 23;                      // 102 … 112
    const std::uint32_t sig = (ax & 0x7fffffu) | 0x800000u;
    const std::uint32_t shift = 126u - e;                  // 14 … 24
    std::uint32_t q = sig >> shift;
    const std::uint32_t rest = sig & ((1u << shift) - 1u);
    const std::uint32_t half = 1u << (shift - 1);
    if (rest > half || (rest == half && (q & 1u))) {
        ++q;
    }
    return (unsigned short)(sign | q);
}

// cvt.rna.tf32.f32 (PTX ISA, "cvt"): round to the 10 explicit mantissa bits of tf32, to
// nearest with ties away from zero; the result is a .b32 whose low 13 bits are zero. Adding
// half a tf32 ulp to the magnitude bits and truncating does exactly that (a carry into the
// exponent is the correct rounding up, up to infinity). NaN stays a NaN.
unsigned int ptx_cvt_rna_tf32_f32(float f) {
    const std::uint32_t x = bits_of(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) {
        return 0x7fffffffu;
    }
    if ((x & 0x7fffffffu) == 0x7f800000u) {
        return x;
    }
    return (x + 0x1000u) & 0xffffe000u;
}

// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 d, a, b, c (PTX ISA, "Warp-level matrix
// multiply-accumulate instructions", section "Matrix Fragments for mma.m16n8k8", .tf32
// multiplicands and .f32 accumulators): D = A·B + C, A 16×8, B 8×8, C/D 16×8, spread over
// the 32 lanes of the warp. With groupID g = laneid >> 2 and threadID_in_group t = laneid % 4:
//   A: a0 = A[g][t], a1 = A[g+8][t], a2 = A[g][t+4], a3 = A[g+8][t+4]
//   B: b0 = B[t][g], b1 = B[t+4][g]
//   C/D: c0 = C[g][2t], c1 = C[g][2t+1], c2 = C[g+8][2t], c3 = C[g+8][2t+1]
// .sync.aligned: every lane of the warp executes it, so the model gathers the fragments of
// all 32 lanes (a warp exchange), assembles A and B, and each lane computes its own four D
// elements. The tensor core reads only the tf32 bits of each operand (the low 13 bits are
// ignored); the products of tf32 values are exact in fp32 and the model sums them exactly (in
// double) before one rounding to fp32, an idealised accumulator.
void ptx_mma_m16n8k8_row_col_f32_tf32_tf32_f32(float (&d)[4], const unsigned int (&a)[4],
                                               const unsigned int (&b)[2]) {
    struct Fragments {
        unsigned int a[4];
        unsigned int b[2];
    };
    const Fragments mine = {{a[0], a[1], a[2], a[3]}, {b[0], b[1]}};
    Fragments all[32];
    warp_gather(0xffffffffu, &mine, sizeof mine, all, "mma.sync.aligned.m16n8k8");
    double A[16][8], B[8][8];
    for (int l = 0; l < 32; ++l) {
        const int g = l >> 2;
        const int t = l & 3;
        auto tf32 = [](unsigned int u) { return (double)float_of(u & 0xffffe000u); };
        A[g][t] = tf32(all[l].a[0]);
        A[g + 8][t] = tf32(all[l].a[1]);
        A[g][t + 4] = tf32(all[l].a[2]);
        A[g + 8][t + 4] = tf32(all[l].a[3]);
        B[t][g] = tf32(all[l].b[0]);
        B[t + 4][g] = tf32(all[l].b[1]);
    }
    const int g = lane() >> 2;
    const int t = lane() & 3;
    for (int q = 0; q < 4; ++q) {
        const int row = g + (q >> 1) * 8;
        const int col = 2 * t + (q & 1);
        double s = d[q];
        for (int k = 0; k < 8; ++k) {
            s += A[row][k] * B[k][col];
        }
        d[q] = (float)s;
    }
}

}  // namespace ldt_emu
