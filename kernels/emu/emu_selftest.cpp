// emu_selftest.cpp: checks of the CPU executor itself, so that a kernel check that passes
// means something: misuse of barriers and shuffles is reported (not a hang), shared memory is
// poisoned, blocks run in a shuffled reproducible order, and the PTX models agree with
// independent implementations (fp16 conversions with _Float16, the mma with a plain matrix
// product of the operands as the PTX ISA lays them out).

#include <cstdio>
#include <string>
#include <vector>

#include "kernel_check.hpp"

namespace {

// --- Kernels that misbehave on purpose.

void divergent_exit(int* out) {
    if (threadIdx.x < 128) {
        __syncthreads();
    }
    out[threadIdx.x] = 1;
}

void two_barriers(int* out) {
    if (threadIdx.x < 128) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = 1;
}

void caller_outside_mask(float* out) {
    out[threadIdx.x] = __shfl_xor_sync(0x0000ffffu, 1.0f, 1);
}

void reads_inactive_lane(float* out) {
    if ((threadIdx.x & 31) < 16) {
        out[threadIdx.x] = __shfl_xor_sync(0x0000ffffu, 1.0f, 16);
    }
}

void split_warp(float* out) {
    if (threadIdx.x < 16) {
        out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
    } else {
        __syncthreads();
    }
}

// --- Kernels that check the executor's guarantees.

void warp_sums(float* out) { out[threadIdx.x] = warp_sum((float)threadIdx.x); }

void reads_unwritten_shared(float* out) {
    LDT_EMU_SHARED(float, s, LDT_THREADS);
    LDT_EMU_DYNAMIC_SHARED(float, dyn);
    out[threadIdx.x] = s[threadIdx.x];
    out[LDT_THREADS + threadIdx.x] = dyn[threadIdx.x];
    __syncthreads();
    s[threadIdx.x] = 0.0f;  // the next block must see the poison again
    dyn[threadIdx.x] = 0.0f;
}

void block_order(int* order, int* next) {
    if (threadIdx.x == 0) {
        order[(*next)++] = (int)blockIdx.x;  // blocks run one at a time
    }
}

// One m16n8k8 tile per warp: A 16×8 row-major, B 8×8 row-major, C 16×8, D = A·B + C, the
// fragments loaded as the PTX ISA lays them out (as the kernels do).
void mma_tile(const float* A, const float* B, const float* C, float* D) {
    const int lane = threadIdx.x & 31;
    if (threadIdx.x >= 32) {
        return;
    }
    const int g = lane >> 2, t = lane & 3;
    const unsigned int a[4] = {to_tf32(A[g * 8 + t]), to_tf32(A[(g + 8) * 8 + t]),
                               to_tf32(A[g * 8 + t + 4]), to_tf32(A[(g + 8) * 8 + t + 4])};
    const unsigned int b[2] = {to_tf32(B[t * 8 + g]), to_tf32(B[(t + 4) * 8 + g])};
    float d[4] = {C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t],
                  C[(g + 8) * 8 + 2 * t + 1]};
    mma_tf32(d, a, b);
    D[g * 8 + 2 * t] = d[0];
    D[g * 8 + 2 * t + 1] = d[1];
    D[(g + 8) * 8 + 2 * t] = d[2];
    D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

void expect_error(const char* name, const std::string& error, const char* needle) {
    kc::expect("emu.error_detection", name, error.find(needle) != std::string::npos,
               "expected an error containing \"" + std::string(needle) + "\", got \"" + error +
                   "\"");
}

// The tf32 rounding of the PTX ISA (cvt.rna: nearest, ties away from zero), by arithmetic.
double tf32_reference(float x) {
    const double ulp = std::ldexp(1.0, std::ilogb(x) - 10);
    const double q = std::fabs((double)x) / ulp;
    const double r = std::floor(q + 0.5) * ulp;
    return std::copysign(r, (double)x);
}

}  // namespace

namespace kc {

void check_emulator() {
    using ldt_emu::launch;
    std::vector<int> ibuf(2048);
    std::vector<float> fbuf(2048);
    const dim3 one(1), block(LDT_THREADS);

    expect_error("divergent exit", launch(divergent_exit, one, block, 0, ibuf.data()),
                 "divergent __syncthreads");
    expect_error("two barriers", launch(two_barriers, one, block, 0, ibuf.data()),
                 "divergent __syncthreads");
    expect_error("caller outside mask", launch(caller_outside_mask, one, block, 0, fbuf.data()),
                 "not in the mask");
    expect_error("reads inactive lane", launch(reads_inactive_lane, one, block, 0, fbuf.data()),
                 "not in the mask");
    expect_error("split warp", launch(split_warp, one, block, 0, fbuf.data()), "deadlock");

    expect("emu.warp_sum", "launch", launch(warp_sums, one, block, 0, fbuf.data()).empty(), "");
    bool sums = true;
    for (int t = 0; t < LDT_THREADS; ++t) {
        const int w = t / 32;
        sums = sums && fbuf[t] == (float)(32 * 32 * w + 496);
    }
    expect("emu.warp_sum", "values", sums, "warp_sum differs from the sum of the lanes");

    const std::string e = launch(reads_unwritten_shared, dim3(3), block,
                                 LDT_THREADS * sizeof(float), fbuf.data());
    bool poisoned = e.empty();
    for (int i = 0; i < 2 * LDT_THREADS; ++i) {
        poisoned = poisoned && std::isnan(fbuf[i]);
    }
    expect("emu.shared_poison", "static and dynamic", poisoned,
           "unwritten shared memory did not read as NaN in every block " + e);

    std::vector<int> order1(64), order2(64);
    int next = 0;
    ldt_emu::set_seed(g_opt.seed);
    launch(block_order, dim3(64), block, 0, order1.data(), &next);
    next = 0;
    ldt_emu::set_seed(g_opt.seed);
    launch(block_order, dim3(64), block, 0, order2.data(), &next);
    bool shuffled = false;
    for (int i = 0; i < 64; ++i) {
        shuffled = shuffled || order1[i] != i;
    }
    expect("emu.block_order", "shuffled, reproducible", shuffled && order1 == order2,
           "blocks ran in grid order, or in a different order for the same seed");
    ldt_emu::set_seed(g_opt.seed);

    // cvt.f32.f16: all 65536 values; cvt.rn.f16.f32: random floats of every magnitude.
    bool cvt_ok = true;
    for (std::uint32_t h = 0; h < 65536; ++h) {
        half_t v;
        v.bits = (unsigned short)h;
        const float got = ldt_emu::ptx_cvt_f32_f16(v.bits);
        const double want = value(v);
        cvt_ok = cvt_ok && (std::isnan(want) ? std::isnan(got) : (double)got == want &&
                                                                      std::signbit(got) ==
                                                                          std::signbit(want));
    }
    expect("emu.ptx_cvt_f32_f16", "all 65536", cvt_ok, "differs from _Float16");
    Rng rng(g_opt.seed);
    bool rn_ok = true, tf_ok = true;
    for (int i = 0; i < 200000; ++i) {
        const float f = (float)std::ldexp(rng.uniform(-2.0, 2.0), rng.integer(-30, 20));
        const _Float16 h = (_Float16)f;
        unsigned short want;
        std::memcpy(&want, &h, sizeof want);
        rn_ok = rn_ok && ldt_emu::ptx_cvt_rn_f16_f32(f) == want;
        if (f != 0.0f) {
            tf_ok = tf_ok && (double)float_of(ldt_emu::ptx_cvt_rna_tf32_f32(f)) ==
                                 tf32_reference(f);
        }
    }
    expect("emu.ptx_cvt_rn_f16_f32", "random", rn_ok, "differs from _Float16");
    expect("emu.ptx_cvt_rna_tf32_f32", "random", tf_ok, "differs from round-half-away");

    // mma: D = A·B + C against the product of the tf32-rounded operands, in double.
    std::vector<float> A(128), B(64), C(128), D(128, NAN);
    for (float& v : A) v = (float)rng.normal();
    for (float& v : B) v = (float)rng.normal();
    for (float& v : C) v = (float)rng.normal();
    const std::string me = launch(mma_tile, one, block, 0, A.data(), B.data(), C.data(), D.data());
    expect("emu.ptx_mma_m16n8k8_tf32", "launch", me.empty(), me);
    std::vector<double> got(128), want(128), mag(128);
    for (int i = 0; i < 16; ++i) {
        for (int j = 0; j < 8; ++j) {
            double s = C[i * 8 + j], m = std::fabs(C[i * 8 + j]);
            for (int k = 0; k < 8; ++k) {
                const double p = tf32_reference(A[i * 8 + k]) * tf32_reference(B[k * 8 + j]);
                s += p;
                m += std::fabs(p);
            }
            got[i * 8 + j] = D[i * 8 + j];
            want[i * 8 + j] = s;
            mag[i * 8 + j] = m;
        }
    }
    check("emu.ptx_mma_m16n8k8_tf32", "random tile", got, want, mag, kStore<float>);
}

}  // namespace kc
