// check_norm.cpp: norm_modulate_T and residual_norm_modulate_T against
//   x ← x + gate[b]·(y + bias)                  (residual only, written back in fp32)
//   out = (x − mean)/√(var + eps)·scale[b] + shift[b],   biased var, b = row / tokens
// on each of the kernel's three ways of spreading a row (one warp per row, h ≤ 1024; one
// block per row, h ≤ 8192; the streamed fallback for odd h, misaligned pointers, odd
// gate_stride or h > 8192), with rows that only eps keeps finite (variance ≪ eps), the fp16
// saturation, residual without a LayerNorm (out null), and grids of the suggested size, of
// ceil(rows / 8) whatever h (a host that undercounts), and 1: the kernels stride over rows.

#include <string>
#include <vector>

#include "kernel_check.hpp"

namespace kc {
namespace {

struct Case {
    int rows, h, tokens;
    bool misaligned_x = false;  // the 128-bit path must be refused
    bool flat = false;          // variance 1e−8 ≪ eps: eps decides the result
    bool saturate = false;      // shift ±70000: fp16 stores clamp to ±65504
    bool odd_gate_stride = false;
    bool no_out = false;        // residual only
};

template <typename T> struct NormKernels {
    void (*norm)(const float*, T*, const float*, const float*, int, int, int, float);
    void (*residual)(float*, const T*, const T*, const float*, int, T*, const float*,
                     const float*, int, int, int, float);
};

template <typename T> void norm_case(const NormKernels<T>& k, const Case& c, bool residual, Rng& rng) {
    const std::string name = std::string(residual ? "residual_norm_modulate_" : "norm_modulate_") + suffix<T>();
    const int rows = c.rows, h = c.h, batch = rows / c.tokens;
    const int gate_stride = 6 * h + (c.odd_gate_stride ? 1 : 0);
    const float eps = 1e-6f;
    const int suggested = h <= 1024 ? ceil_div(rows, 8) : rows;
    std::vector<int> grids = {suggested};
    for (int g : {ceil_div(rows, 8), 1}) {
        if (g != grids.back() && g != suggested) grids.push_back(g);
    }
    for (int grid : grids) {
        Buf<float> x((long long)rows * h, c.misaligned_x), gate(batch * gate_stride);
        Buf<float> scale(batch * h), shift(batch * h);
        Buf<T> y((long long)rows * h), bias(h), out((long long)rows * h);
        std::vector<double> xs((long long)rows * h);
        for (long long i = 0; i < (long long)rows * h; ++i) {
            xs[i] = x.set(i, c.flat ? 1e-4 * rng.normal() : 3.0 + 2.0 * rng.normal());
            y.set(i, c.flat ? 1e-4 * rng.normal() : rng.normal());
        }
        for (int j = 0; j < h; ++j) bias.set(j, c.flat ? 0.0 : 0.5 * rng.normal());
        for (int i = 0; i < batch * gate_stride; ++i) gate.set(i, rng.normal());
        for (int i = 0; i < batch * h; ++i) {
            scale.set(i, 1.0 + 0.5 * rng.normal());
            shift.set(i, c.saturate && i % h < 2 ? (i % h == 0 ? 70000.0 : -70000.0) : rng.normal());
        }
        const std::string what = "rows=" + std::to_string(rows) + " h=" + std::to_string(h) +
                                 " tokens=" + std::to_string(c.tokens) + " grid=" + std::to_string(grid) +
                                 (c.misaligned_x ? " misaligned x" : "") + (c.flat ? " flat" : "") +
                                 (c.saturate ? " saturate" : "") + (c.odd_gate_stride ? " odd gate_stride" : "") +
                                 (c.no_out ? " no out" : "");
        T* out_ptr = c.no_out ? nullptr : out.ptr();
        const bool ok = residual ? run(name, what, k.residual, dim3(grid), 0, x.ptr(), y.ptr(), bias.ptr(),
                                       gate.ptr(), gate_stride, out_ptr, scale.ptr(), shift.ptr(),
                                       rows, h, c.tokens, eps)
                                 : run(name, what, k.norm, dim3(grid), 0, x.ptr(), out.ptr(),
                                       scale.ptr(), shift.ptr(), rows, h, c.tokens, eps);
        if (!ok) continue;
        std::vector<double> gx, wx, mx, got, want, mag;
        for (int r = 0; r < rows; ++r) {
            const int b = r / c.tokens;
            double* xr = xs.data() + (long long)r * h;
            if (residual) {
                for (int j = 0; j < h; ++j) {
                    const double g = gate.at(b * gate_stride + j), yb = y.at((long long)r * h + j) + bias.at(j);
                    gx.push_back(x.at((long long)r * h + j));
                    wx.push_back(xr[j] + g * yb);
                    mx.push_back(std::fabs(xr[j]) + std::fabs(g) * (std::fabs(y.at((long long)r * h + j)) + std::fabs(bias.at(j))));
                    xr[j] += g * yb;
                }
            }
            if (c.no_out) continue;
            double mean = 0.0, var = 0.0;
            for (int j = 0; j < h; ++j) mean += xr[j];
            mean /= h;
            for (int j = 0; j < h; ++j) var += (xr[j] - mean) * (xr[j] - mean);
            var /= h;
            const double rstd = 1.0 / std::sqrt(var + (double)eps);
            for (int j = 0; j < h; ++j) {
                const double sc = scale.at(b * h + j), sh = shift.at(b * h + j);
                got.push_back(out.at((long long)r * h + j));
                want.push_back(policy<T>((xr[j] - mean) * rstd * sc + sh));
                mag.push_back((std::fabs(xr[j]) + std::fabs(mean)) * rstd * std::fabs(sc) + std::fabs(sh));
            }
        }
        if (residual) check(name, what + " (x)", gx, wx, mx, kStore<float>);
        if (!c.no_out) check(name, what, got, want, mag, kStore<T>);
        if (c.no_out) {  // out is null: nothing else may have been written
            bool untouched = true;
            for (long long i = 0; i < (long long)rows * h; ++i) untouched = untouched && std::isnan(out.at(i));
            expect(name, what + " (out untouched)", untouched, "a buffer the kernel was not given changed");
        }
    }
}

template <typename T> void norm_cases(const NormKernels<T>& k, Rng& rng) {
    std::vector<Case> cases;
    if (g_opt.quick) {
        cases = {{7, 64, 7, false, false, true, true}, {3, 1032, 3}, {9, 33, 3},
                 {7, 72, 7, true}, {16, 64, 8, false, true}};
    } else {
        cases = {{1, 64, 1},
                 {7, 64, 7, false, false, true, true},
                 {300, 64, 150},
                 {16, 1024, 8},
                 {3, 2048, 3},
                 {7, 5, 7},
                 {9, 33, 3},
                 {7, 72, 7, true},
                 {5, 130, 5},
                 {2, 8200, 1},
                 {24, 64, 8, false, true},
                 {6, 130, 3, false, true},
                 {3, 2048, 3, false, true},
                 {300, 64, 150, false, false, false, false, true},
                 {7, 5, 7, false, false, false, false, true}};
    }
    for (const Case& c : cases) {
        if (!c.no_out && !c.odd_gate_stride) norm_case(k, c, false, rng);
        norm_case(k, c, true, rng);
    }
}

}  // namespace

void check_norm() {
    Rng rng(g_opt.seed * 101 + 3);
    norm_cases<float>({norm_modulate_f32, residual_norm_modulate_f32}, rng);
    norm_cases<bf16_t>({norm_modulate_bf16, residual_norm_modulate_bf16}, rng);
    norm_cases<half_t>({norm_modulate_f16, residual_norm_modulate_f16}, rng);
}

}  // namespace kc
