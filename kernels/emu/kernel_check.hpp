// kernel_check.hpp: what the harness files share: tolerances, reference storage conversions,
// test buffers, the launch wrapper and the per-kernel report.
//
// Tolerances. A value computed by a kernel passes when
//     |got − want| ≤ abs(T) + rel(T)·|want| + kArithRel·mag
// where want is the exact reference (double, from the SPEC formula, on the inputs as stored),
// T is the storage type the kernel writes, and mag is the magnitude of the computation (for a
// sum, Σ|terms|; otherwise |want|): rel(T) and abs(T) are the rounding of one store into T,
// kArithRel is what fp32 arithmetic may lose. The report gives, per kernel, the largest
// relative error |got − want| / max(|want|, mag) and the largest absolute error.
// Casts and conversions are exact and compared bit for bit.

#ifndef LDT_EMU_KERNEL_CHECK_HPP
#define LDT_EMU_KERNEL_CHECK_HPP

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "runtime.hpp"
#include "common.cuh"
#include "kernels.hpp"

namespace kc {

// ---------------------------------------------------------------------------------------------
// Tolerances.

struct Tol {
    double rel, abs;
};
// One rounding into the storage type: half an ulp (fp32 2^−24, bf16 2^−8, fp16 2^−11
// relative; fp16 subnormals: half of 2^−24 absolute).
template <typename T> constexpr Tol kStore = {0x1p-24, 0x1p-149};
template <> constexpr Tol kStore<bf16_t> = {0x1p-8, 0x1p-133};
template <> constexpr Tol kStore<half_t> = {0x1p-11, 0x1p-25};
// fp32 arithmetic (sums of up to a few thousand terms, expf, rsqrtf), relative to mag.
constexpr double kArithRel = 2e-5;

// ---------------------------------------------------------------------------------------------
// Options of the run (kernel_check.cpp).

struct Options {
    bool quick = false;    // a subset for the sanitizer builds
    std::string only;      // run only this family
    std::uint64_t seed = 1;
};
extern Options g_opt;

// ---------------------------------------------------------------------------------------------
// Reference storage conversions, written independently of common.cuh: bf16 by choosing the
// nearer of the two neighbours in double arithmetic, fp16 with the compiler's _Float16.

inline std::uint32_t bits_of(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}
inline float float_of(std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

inline double value(float v) { return v; }
inline double value(bf16_t v) { return float_of((std::uint32_t)v.bits << 16); }
inline double value(half_t v) {
    _Float16 h;
    std::memcpy(&h, &v.bits, sizeof h);
    return (double)h;
}

// What a kernel must store for the computed value v (the fp16 overflow policy included).
template <typename T> T store(double v);
template <> inline float store<float>(double v) { return (float)v; }
template <> inline bf16_t store<bf16_t>(double v) {
    const float f = (float)v;  // the kernels round fp32 values
    bf16_t r;
    if (std::isnan(f)) {
        r.bits = 0x7fc0;
        return r;
    }
    const std::uint32_t lo = bits_of(f) & 0xffff0000u;
    const double vlo = float_of(lo);
    const double vhi = (lo & 0x7fffffffu) == 0x7f7f0000u
                           ? std::copysign(0x1p128, (double)f)
                           : (double)float_of(lo + 0x10000u);
    const double dlo = std::fabs((double)f - vlo);
    const double dhi = std::fabs(vhi - (double)f);
    const bool up = std::isinf(f) ? false : dhi < dlo || (dhi == dlo && ((lo >> 16) & 1u));
    r.bits = (unsigned short)((up ? lo + 0x10000u : lo) >> 16);
    return r;
}
template <> inline half_t store<half_t>(double v) {
    float f = (float)v;
    if (!std::isnan(f)) {
        f = std::fmin(std::fmax(f, -65504.0f), 65504.0f);
    }
    const _Float16 h = (_Float16)f;
    half_t r;
    std::memcpy(&r.bits, &h, sizeof r.bits);
    return r;
}
// The fp16 overflow policy on an exact value: clamped to ±65504 for fp16 (NaN stays NaN).
template <typename T> double policy(double v) {
    if constexpr (sizeof(T) == 2 && !std::is_same_v<T, bf16_t>) {
        return std::isnan(v) ? v : std::fmin(std::fmax(v, -65504.0), 65504.0);
    } else {
        return v;
    }
}
// The exact value the kernel should have stored for v.
template <typename T> double stored(double v) { return value(store<T>(v)); }

template <typename T> const char* suffix();
template <> inline const char* suffix<float>() { return "f32"; }
template <> inline const char* suffix<bf16_t>() { return "bf16"; }
template <> inline const char* suffix<half_t>() { return "f16"; }

// ---------------------------------------------------------------------------------------------
// Random inputs.

class Rng {
  public:
    explicit Rng(std::uint64_t seed) : g_(seed) {}
    double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(g_); }
    double normal() { return std::normal_distribution<double>(0.0, 1.0)(g_); }
    int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(g_); }

  private:
    std::mt19937_64 g_;
};

// A device-side array of n elements of T, optionally misaligned by one element (so a kernel's
// 128-bit path must refuse it), filled with NaN (0xFF bytes) unless given values.
template <typename T> class Buf {
  public:
    explicit Buf(std::size_t n, bool misaligned = false)
        : store_(n + 8), off_(misaligned ? 1 : 0), n_(n) {
        std::memset(static_cast<void*>(store_.data()), 0xff, store_.size() * sizeof(T));
    }
    T* ptr() { return store_.data() + off_; }
    std::size_t size() const { return n_; }
    T& operator[](std::size_t i) { return store_[off_ + i]; }
    double at(std::size_t i) const { return value(store_[off_ + i]); }
    // Stores v rounded to T and returns the stored value.
    double set(std::size_t i, double v) {
        store_[off_ + i] = store<T>(v);
        return at(i);
    }

  private:
    std::vector<T> store_;
    std::size_t off_, n_;
};

// ---------------------------------------------------------------------------------------------
// Launching and reporting.

int ceil_div(long long a, long long b);

bool launch_failed(const std::string& kernel, const std::string& what, const std::string& error);
void note_launch(const std::string& kernel);

// Launches k with LDT_THREADS threads per block; a launch error fails the case (and returns
// false).
template <typename... P, typename... A>
bool run(const std::string& kernel, const std::string& what, void (*k)(P...), dim3 grid,
         std::size_t dynamic_smem, A&&... args) {
    note_launch(kernel);
    const std::string error = ldt_emu::launch(k, grid, dim3(LDT_THREADS), dynamic_smem,
                                              std::forward<A>(args)...);
    return error.empty() || !launch_failed(kernel, what, error);
}

// One comparison of n values: got and want as doubles, mag the magnitude of each computation.
// Counts as one case of `kernel`; prints the first mismatches.
void check(const std::string& kernel, const std::string& what, const std::vector<double>& got,
           const std::vector<double>& want, const std::vector<double>& mag, Tol store_tol);
// Bit-exact comparison (casts, and outputs that must be left untouched).
void check_bits(const std::string& kernel, const std::string& what,
                const std::vector<std::uint32_t>& got, const std::vector<std::uint32_t>& want);

// A yes/no case (the executor's self-checks).
void expect(const std::string& name, const std::string& what, bool ok, const std::string& detail);

// The families of kernels; each returns after recording its cases.
void check_pointwise();
void check_small_linear();
void check_norm();
void check_attention();
void check_sana();
void check_emulator();

}  // namespace kc

#endif  // LDT_EMU_KERNEL_CHECK_HPP
