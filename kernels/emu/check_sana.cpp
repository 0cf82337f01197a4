// check_sana.cpp: the kernels of the sana flavor (the ReLU linear attention is in
// check_attention.cpp), each against its formula in double on the inputs as stored:
//   modulation_table_T   out[b, r·h + j] = table[r·h + j] + mod[b·mod_stride + r·row_stride + j]
//   rms_norm_T           out = x / √(Σx²/h + eps) · w                          (eps 1e−5)
//   depthwise_conv_glu_T out = d_c · SiLU(d_{m+c}), d = bias + 3×3 depthwise conv (zero
//                        padding per sample) of SiLU(in + in_bias)
//   masked_softmax_T     p = softmax(scale·s + (1 − mask)·(−10000))
// Sizes include SANA's (h 64 with m = 160, a 3×5 grid, 300 caption tokens, batch 3 with one
// caption fully masked), ragged ones (tiles and vectors left over), misaligned pointers (the
// scalar paths), grids of 1 (the kernels stride), in-place use where the contract allows it,
// rows that only eps keeps finite, and the fp16 saturation.
//
// Tolerances: kernel_check.hpp (one rounding into T plus 2e−5 of the magnitude), except the
// softmax's, which adds 8·2^−24·max|z| relative: fp32 cannot hold z = scale·s − 10000 to
// better than 2^−24·10⁴ ≈ 6e−4, so a fully masked row (uniform −10000, the same result as no
// mask in exact arithmetic) is only good to ~5e−3 — diffusers' fp32 has the same loss.

#include <algorithm>
#include <string>
#include <vector>

#include "kernel_check.hpp"

namespace kc {
namespace {

std::string sz(const char* name, long long v) { return std::string(name) + "=" + std::to_string(v); }

double silu(double x) { return x / (1.0 + std::exp(-x)); }

// The stored bits of a value.
std::uint32_t raw(float v) { return bits_of(v); }
std::uint32_t raw(bf16_t v) { return v.bits; }
std::uint32_t raw(half_t v) { return v.bits; }

// ---------------------------------------------------------------------------------------------
// modulation_table_T.

template <typename T>
using TableKernel = void (*)(const float*, int, int, const T*, float*, int, int, int);

template <typename T> void table_cases(TableKernel<T> k, Rng& rng) {
    const std::string name = std::string("modulation_table_") + suffix<T>();
    struct Case {
        int batch, rows, h, extra;  // extra: mod_stride padding
        bool final_layer, in_place;
    };
    const std::vector<Case> cases = {{1, 6, 7, 0, false, false}, {3, 6, 64, 0, false, true},
                                     {2, 6, 33, 3, false, false}, {2, 2, 64, 0, true, false},
                                     {3, 2, 7, 1, true, false}};
    for (const Case& c : cases) {
        const int per = c.rows * c.h;
        const int mod_stride = (c.final_layer ? c.h : per) + c.extra;
        const int row_stride = c.final_layer ? 0 : c.h;
        for (int grid : {ceil_div((long long)c.batch * per, 256), 1}) {
            Buf<float> mod((long long)c.batch * mod_stride), sep((long long)c.batch * per);
            Buf<T> table(per);
            for (std::size_t i = 0; i < mod.size(); ++i) mod.set(i, rng.normal());
            for (int i = 0; i < per; ++i) table.set(i, 0.1 * rng.normal());
            std::vector<double> ms(mod.size());
            for (std::size_t i = 0; i < mod.size(); ++i) ms[i] = mod.at(i);
            const bool in_place = c.in_place && c.extra == 0;
            Buf<float>& out = in_place ? mod : sep;
            const std::string what = sz("batch", c.batch) + " " + sz("rows", c.rows) + " " +
                                     sz("h", c.h) + " " + sz("mod_stride", mod_stride) +
                                     (c.final_layer ? " final" : " block") +
                                     (in_place ? " in place" : "") + " " + sz("grid", grid);
            if (!run(name, what, k, dim3(grid), 0, (const float*)mod.ptr(), mod_stride, row_stride,
                     (const T*)table.ptr(), out.ptr(), c.batch, c.rows, c.h))
                continue;
            std::vector<double> got, want, mag;
            for (int b = 0; b < c.batch; ++b) {
                for (int e = 0; e < per; ++e) {
                    const int r = e / c.h, j = e % c.h;
                    const double w = table.at(e) + ms[(long long)b * mod_stride + r * row_stride + j];
                    got.push_back(out.at((long long)b * per + e));
                    want.push_back(w);
                    mag.push_back(std::fabs(w));
                }
            }
            check(name, what, got, want, mag, kStore<float>);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// rms_norm_T.

template <typename T> using RmsKernel = void (*)(const T*, int, T*, int, const T*, int, int, float);

template <typename T> void rms_cases(RmsKernel<T> k, Rng& rng) {
    const std::string name = std::string("rms_norm_") + suffix<T>();
    struct Case {
        int rows, h;
        bool qkv = false;         // in place on the K part of a [rows, 3h] qkv buffer
        bool misaligned = false;  // the scalar path
        bool flat = false;        // mean square ≪ eps: eps decides
        bool saturate = false;    // |result| > 65504: fp16 clamps
    };
    std::vector<Case> cases;
    if (g_opt.quick) {
        cases = {{7, 64, true}, {3, 2240}, {5, 33, false, false, true}, {4, 72, false, true},
                 {24, 64, false, false, true},
                 {9, 64, false, false, false, true}};
    } else {
        cases = {{1, 64},         {7, 64, true},  {300, 64},       {16, 1024},
                 {3, 2240},       {3, 2240, true}, {7, 5},         {9, 33},
                 {4, 72, false, true},              {2, 9000},     {24, 64, false, false, true},
                 {6, 130, false, false, true},      {3, 2048, false, false, true},
                 {9, 64, false, false, false, true}, {5, 33, false, false, false, true}};
    }
    const float eps = 1e-5f;
    for (const Case& c : cases) {
        const int rows = c.rows, h = c.h;
        const int ld = c.qkv ? 3 * h : h;
        const int suggested = h <= 1024 ? ceil_div(rows, 8) : rows;
        for (int grid : {suggested, 1}) {
            if (grid == 1 && suggested == 1) continue;
            Buf<T> x((long long)rows * ld, c.misaligned), sep((long long)rows * h), w(h);
            for (long long i = 0; i < (long long)rows * ld; ++i) {
                const double v = c.flat ? 1e-4 * rng.normal() : 0.5 + 2.0 * rng.normal();
                x.set(i, c.saturate ? 3000.0 * v : v);
            }
            for (int j = 0; j < h; ++j) w.set(j, c.saturate && j < 2 ? 2000.0 : 1.0 + 0.3 * rng.normal());
            std::vector<double> xs((long long)rows * ld);
            std::vector<std::uint32_t> before((long long)rows * ld);
            for (long long i = 0; i < (long long)rows * ld; ++i) {
                xs[i] = x.at(i);
                before[i] = raw(x[i]);
            }
            // qkv: normalise the K part (columns h … 2h−1) in place.
            const T* in = c.qkv ? x.ptr() + h : x.ptr();
            T* out = c.qkv ? x.ptr() + h : sep.ptr();
            const int out_ld = c.qkv ? ld : h;
            const std::string what = sz("rows", rows) + " " + sz("h", h) + " " + sz("grid", grid) +
                                     (c.qkv ? " in place in qkv" : "") +
                                     (c.misaligned ? " misaligned" : "") + (c.flat ? " flat" : "") +
                                     (c.saturate ? " saturate" : "");
            if (!run(name, what, k, dim3(grid), 0, in, ld, out, out_ld, (const T*)w.ptr(), rows, h, eps))
                continue;
            std::vector<double> got, want, mag;
            for (int r = 0; r < rows; ++r) {
                const long long xo = (long long)r * ld + (c.qkv ? h : 0);
                double ss = 0.0;
                for (int j = 0; j < h; ++j) ss += xs[xo + j] * xs[xo + j];
                const double inv = 1.0 / std::sqrt(ss / h + (double)eps);
                for (int j = 0; j < h; ++j) {
                    const double v = xs[xo + j] * inv * w.at(j);
                    got.push_back(c.qkv ? x.at(xo + j) : sep.at((long long)r * h + j));
                    want.push_back(policy<T>(v));
                    mag.push_back(std::fabs(v));
                }
            }
            check(name, what, got, want, mag, kStore<T>);
            if (c.qkv) {  // Q and V untouched
                std::vector<std::uint32_t> g, wb;
                for (long long i = 0; i < (long long)rows * ld; ++i) {
                    const long long col = i % ld;
                    if (col >= h && col < 2 * h) continue;
                    g.push_back(raw(x[i]));
                    wb.push_back(before[i]);
                }
                check_bits(name, what + " (Q, V untouched)", g, wb);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// depthwise_conv_glu_T.

template <typename T>
using DwcKernel = void (*)(const T*, const T*, const T*, const T*, T*, int, int, int, int);

template <typename T> void dwc_cases(DwcKernel<T> k, Rng& rng) {
    const std::string name = std::string("depthwise_conv_glu_") + suffix<T>();
    struct Case {
        int batch, rows, cols, m;
        bool in_bias = true, bias = true, misaligned = false;
    };
    std::vector<Case> cases;
    if (g_opt.quick) {
        cases = {{3, 3, 5, 40}, {2, 9, 10, 7, false, true, false}, {1, 4, 3, 16, true, false, true}};
    } else {
        cases = {{1, 1, 1, 1},    {3, 3, 5, 160},  {2, 3, 5, 7},
                 {2, 8, 8, 64},   {1, 9, 17, 40},  {2, 5, 3, 8, false, true},
                 {1, 4, 3, 16, true, false, true}, {2, 17, 9, 33, true, true, true},
                 {1, 1, 12, 32, false, false},     {1, 12, 1, 24}};
    }
    for (const Case& c : cases) {
        const int B = c.batch, R = c.rows, C = c.cols, m = c.m, N = R * C;
        const dim3 suggested(ceil_div(C, 8) * ceil_div(R, 8), ceil_div(m, 32), B);
        const bool one = suggested.x * suggested.y * suggested.z == 1;
        for (const dim3 grid : {suggested, dim3(1, 1, 1)}) {
            Buf<T> in((long long)B * N * 2 * m, c.misaligned), ib(2 * m), w(2 * m * 9), bias(2 * m);
            Buf<T> out((long long)B * N * m);
            for (std::size_t i = 0; i < in.size(); ++i) in.set(i, rng.normal());
            for (int i = 0; i < 2 * m; ++i) {
                ib.set(i, 0.5 * rng.normal());
                bias.set(i, 0.3 * rng.normal());
            }
            for (int i = 0; i < 2 * m * 9; ++i) w.set(i, 0.4 * rng.normal());
            const std::string what = sz("B", B) + " " + sz("grid", R) + "x" + std::to_string(C) +
                                     " " + sz("m", m) + (c.in_bias ? "" : " no in_bias") +
                                     (c.bias ? "" : " no bias") + (c.misaligned ? " misaligned" : "") +
                                     " launch=" + std::to_string(grid.x) + "," + std::to_string(grid.y) +
                                     "," + std::to_string(grid.z);
            if (!run(name, what, k, grid, 0, (const T*)in.ptr(), c.in_bias ? (const T*)ib.ptr() : nullptr,
                     (const T*)w.ptr(), c.bias ? (const T*)bias.ptr() : nullptr, out.ptr(), B, R, C, m))
                continue;
            // a = SiLU(in + in_bias), in double on the stored inputs.
            std::vector<double> a(in.size());
            for (std::size_t i = 0; i < in.size(); ++i) {
                const int ch = (int)(i % (2 * m));
                a[i] = silu(in.at(i) + (c.in_bias ? ib.at(ch) : 0.0));
            }
            std::vector<double> got, want, mag;
            for (int b = 0; b < B; ++b) {
                for (int y = 0; y < R; ++y) {
                    for (int x = 0; x < C; ++x) {
                        for (int ch = 0; ch < m; ++ch) {
                            double d[2], dm[2];
                            for (int half = 0; half < 2; ++half) {
                                const int cc = ch + half * m;
                                d[half] = c.bias ? bias.at(cc) : 0.0;
                                dm[half] = std::fabs(d[half]);
                                for (int di = 0; di < 3; ++di) {
                                    for (int dj = 0; dj < 3; ++dj) {
                                        const int yy = y + di - 1, xx = x + dj - 1;
                                        if (yy < 0 || yy >= R || xx < 0 || xx >= C) continue;
                                        const double t = w.at(cc * 9 + di * 3 + dj) *
                                                         a[(((long long)b * N + yy * C + xx) * 2 * m) + cc];
                                        d[half] += t;
                                        dm[half] += std::fabs(t);
                                    }
                                }
                            }
                            const double sg = silu(d[1]);
                            got.push_back(out.at(((long long)b * N + y * C + x) * m + ch));
                            want.push_back(policy<T>(d[0] * sg));
                            mag.push_back(dm[0] * std::fabs(sg) + std::fabs(d[0]) * 1.1 * dm[1] +
                                          std::fabs(d[0] * sg));
                        }
                    }
                }
            }
            check(name, what, got, want, mag, kStore<T>);
            if (one) break;  // the suggested grid was (1, 1, 1) already
        }
    }
}

// ---------------------------------------------------------------------------------------------
// masked_softmax_T.

template <typename T>
using SoftmaxKernel = void (*)(const float*, T*, const float*, int, int, int, float);

template <typename T> void softmax_cases(SoftmaxKernel<T> k, Rng& rng) {
    const std::string name = std::string("masked_softmax_") + suffix<T>();
    struct Case {
        int batch, rows_per_sample, texts;
        bool in_place = false;  // fp32 only: probs = scores
    };
    std::vector<Case> cases;
    if (g_opt.quick) {
        cases = {{3, 14, 300}, {2, 3, 600}, {3, 5, 33, true}};
    } else {
        cases = {{1, 1, 1},      {3, 14, 300},    {3, 64, 300, true}, {2, 9, 5},
                 {3, 10, 33},    {2, 7, 512},     {2, 7, 513},        {3, 3, 4096},
                 {1, 300, 77, true}};
    }
    const float scale = 1.0f / std::sqrt(32.0f);
    for (const Case& c : cases) {
        const int B = c.batch, rps = c.rows_per_sample, S = c.texts;
        const long long rows = (long long)B * rps;
        const bool in_place = c.in_place && sizeof(T) == 4;
        for (int grid : {ceil_div(rows, 8), 1}) {
            if (grid == 1 && ceil_div(rows, 8) == 1) continue;
            Buf<float> scores(rows * S), mask((long long)B * S);
            Buf<T> sep(rows * S);
            for (long long i = 0; i < rows * S; ++i) scores.set(i, 3.0 * rng.normal());
            // Sample 0 keeps every token, sample 1 a caption of about half the length, sample
            // 2 none (fully masked: uniform); fractional values in sample 1's tail.
            for (int b = 0; b < B; ++b) {
                const int keep = b == 0 ? S : b == 1 ? std::max(1, S / 2) : 0;
                for (int j = 0; j < S; ++j) {
                    double v = j < keep ? 1.0 : 0.0;
                    if (b == 1 && j == keep && j + 1 < S) v = 0.9995;
                    mask.set((long long)b * S + j, v);
                }
            }
            std::vector<double> ss(rows * S);
            for (long long i = 0; i < rows * S; ++i) ss[i] = scores.at(i);
            const std::string what = sz("batch", B) + " " + sz("rows_per_sample", rps) + " " +
                                     sz("texts", S) + " " + sz("grid", grid) +
                                     (in_place ? " in place" : "");
            T* probs = in_place ? reinterpret_cast<T*>(scores.ptr()) : sep.ptr();
            if (!run(name, what, k, dim3(grid), 0, (const float*)scores.ptr(), probs,
                     (const float*)mask.ptr(), rps, S, B, scale))
                continue;
            for (int b = 0; b < B; ++b) {
                std::vector<double> got, want, mag;
                double zmax = 0.0;
                for (long long r = (long long)b * rps; r < (long long)(b + 1) * rps; ++r) {
                    std::vector<double> z(S);
                    double mx = -INFINITY;
                    for (int j = 0; j < S; ++j) {
                        const double bias = (1.0 - mask.at((long long)b * S + j)) * -10000.0;
                        z[j] = (double)scale * ss[r * S + j] + bias;
                        zmax = std::max(zmax, std::fabs((double)scale * ss[r * S + j]) + std::fabs(bias));
                        mx = std::max(mx, z[j]);
                    }
                    double sum = 0.0;
                    for (int j = 0; j < S; ++j) sum += std::exp(z[j] - mx);
                    for (int j = 0; j < S; ++j) {
                        const double p = std::exp(z[j] - mx) / sum;
                        got.push_back(in_place ? scores.at(r * S + j) : sep.at(r * S + j));
                        want.push_back(p);
                        mag.push_back(p);
                    }
                }
                const Tol tol = {kStore<T>.rel + 8.0 * 0x1p-24 * zmax, kStore<T>.abs};
                check(name, what + " " + sz("sample", b), got, want, mag, tol);
            }
        }
    }
}

}  // namespace

void check_sana() {
    Rng rng(g_opt.seed * 101 + 5);
    table_cases<float>(modulation_table_f32, rng);
    table_cases<bf16_t>(modulation_table_bf16, rng);
    table_cases<half_t>(modulation_table_f16, rng);
    rms_cases<float>(rms_norm_f32, rng);
    rms_cases<bf16_t>(rms_norm_bf16, rng);
    rms_cases<half_t>(rms_norm_f16, rng);
    dwc_cases<float>(depthwise_conv_glu_f32, rng);
    dwc_cases<bf16_t>(depthwise_conv_glu_bf16, rng);
    dwc_cases<half_t>(depthwise_conv_glu_f16, rng);
    softmax_cases<float>(masked_softmax_f32, rng);
    softmax_cases<bf16_t>(masked_softmax_bf16, rng);
    softmax_cases<half_t>(masked_softmax_f16, rng);
}

}  // namespace kc
