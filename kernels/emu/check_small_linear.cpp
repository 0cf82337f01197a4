// check_small_linear.cpp: small_linear_T against the plain sum
//   out[r,o] (+)= bias[o] + Σ_i a(x[r,i])·W[o,i],   a = SiLU or identity,
// over row counts around the 8-row step, input widths around the 512-input tile and the
// 16-byte vector, ragged output widths, null bias, accumulate, SiLU input, and a misaligned W
// (the scalar path).

#include <string>
#include <vector>

#include "kernel_check.hpp"

namespace kc {
namespace {

struct Case {
    int rows, in, out;
    bool silu, accumulate, bias, misaligned;
};

template <typename T>
void small_linear_cases(void (*k)(const float*, const T*, const T*, float*, int, int, int, int, int),
                        Rng& rng) {
    const std::string name = std::string("small_linear_") + suffix<T>();
    const Case full[] = {
        {1, 64, 32, false, false, true, false},  {3, 5, 33, true, false, true, false},
        {8, 513, 100, false, true, true, false}, {9, 64, 7, true, true, false, false},
        {17, 1030, 40, true, false, true, false}, {4, 72, 65, false, false, false, true},
        {2, 33, 1, true, true, true, true},
    };
    const Case quick[] = {{3, 5, 33, true, true, true, false}, {9, 72, 40, false, false, false, true}};
    const Case* cases = g_opt.quick ? quick : full;
    const int n = g_opt.quick ? 2 : 7;
    for (int c = 0; c < n; ++c) {
        const Case& t = cases[c];
        Buf<float> x(t.rows * t.in), out(t.rows * t.out);
        Buf<T> W(t.out * t.in, t.misaligned), bias(t.out);
        for (int i = 0; i < t.rows * t.in; ++i) x.set(i, rng.normal());
        for (int i = 0; i < t.out * t.in; ++i) W.set(i, rng.normal() / 8.0);
        for (int o = 0; o < t.out; ++o) bias.set(o, rng.normal());
        std::vector<double> out0(t.rows * t.out, 0.0);
        if (t.accumulate) {
            for (int i = 0; i < t.rows * t.out; ++i) out0[i] = out.set(i, rng.normal());
        }
        const std::string what = "rows=" + std::to_string(t.rows) + " in=" + std::to_string(t.in) +
                                 " out=" + std::to_string(t.out) + (t.silu ? " silu" : "") +
                                 (t.accumulate ? " accumulate" : "") + (t.bias ? "" : " no bias") +
                                 (t.misaligned ? " misaligned W" : "");
        if (!run(name, what, k, dim3(ceil_div(t.out, 32)), 0, x.ptr(), W.ptr(),
                 t.bias ? bias.ptr() : nullptr, out.ptr(), t.rows, t.in, t.out, (int)t.silu,
                 (int)t.accumulate))
            continue;
        std::vector<double> got, want, mag;
        for (int r = 0; r < t.rows; ++r) {
            for (int o = 0; o < t.out; ++o) {
                double s = t.bias ? bias.at(o) : 0.0, m = std::fabs(s);
                for (int i = 0; i < t.in; ++i) {
                    double a = x.at(r * t.in + i);
                    a = t.silu ? a / (1.0 + std::exp(-a)) : a;
                    s += a * W.at(o * t.in + i);
                    m += std::fabs(a * W.at(o * t.in + i));
                }
                got.push_back(out.at(r * t.out + o));
                want.push_back(out0[r * t.out + o] + s);
                mag.push_back(std::fabs(out0[r * t.out + o]) + m);
            }
        }
        check(name, what, got, want, mag, kStore<float>);
    }
}

}  // namespace

void check_small_linear() {
    Rng rng(g_opt.seed * 101 + 2);
    small_linear_cases<float>(small_linear_f32, rng);
    small_linear_cases<bf16_t>(small_linear_bf16, rng);
    small_linear_cases<half_t>(small_linear_f16, rng);
}

}  // namespace kc
