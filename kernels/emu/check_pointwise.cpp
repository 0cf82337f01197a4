// check_pointwise.cpp: the kernels whose every output is a function of its own inputs: casts,
// conditioning features, class embedding, modulation, position embedding, bias + GELU.
// Ragged sizes, odd row lengths and misaligned pointers (the scalar paths), grids smaller than
// suggested (the grid-stride loops), null bias / gamma / beta / mod, the fp16 overflow policy.

#include <cstdio>
#include <string>
#include <vector>

#include "kernel_check.hpp"

namespace kc {
namespace {

// Inputs that exercise rounding and the fp16 policy, placed first in every cast input.
const float kSpecial[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 65504.0f, 65519.0f, 65520.0f,
                          -65520.0f, 1e5f, -1e6f, 3e38f, 1e-7f, 6e-8f, 3e-8f, 2.98e-8f,
                          float_of(0x3f808000u), float_of(0x3f818000u), float_of(0x3f807fffu),
                          float_of(0x7f7fffffu), float_of(0x00000001u)};

std::string sz(const char* name, long long v) { return std::string(name) + "=" + std::to_string(v); }

// Bits of a float with every NaN made one NaN (payloads are not part of the contract).
std::uint32_t canon(double v) { return std::isnan(v) ? 0x7fc00000u : bits_of((float)v); }

template <typename T> void cast_from_f32(void (*k)(const float*, T*, long long), Rng& rng) {
    const std::string name = std::string("cast_f32_to_") + suffix<T>();
    const long long sizes[] = {1, 7, 300, 4097, 100003};
    for (long long n : sizes) {
        if (g_opt.quick && n > 4097) continue;
        for (int mis = 0; mis < 3; ++mis) {
            for (int grid : {ceil_div(n, LDT_ELEMS_PER_BLOCK), 1, 5}) {
                Buf<float> in(n, mis == 1);
                Buf<T> out(n, mis == 2);
                for (long long i = 0; i < n; ++i) {
                    const double v = i < (long long)(sizeof kSpecial / sizeof *kSpecial)
                                         ? kSpecial[i]
                                         : std::ldexp(rng.normal(), rng.integer(-20, 20));
                    in.set(i, v);
                }
                const std::string what = sz("n", n) + " " + sz("misaligned", mis) + " " + sz("grid", grid);
                if (!run(name, what, k, dim3(grid), 0, in.ptr(), out.ptr(), n)) continue;
                std::vector<std::uint32_t> got(n), want(n);
                for (long long i = 0; i < n; ++i) {
                    got[i] = canon(out.at(i));
                    want[i] = canon(stored<T>(in.at(i)));
                }
                check_bits(name, what, got, want);
            }
        }
    }
}

template <typename T> void cast_to_f32(void (*k)(const T*, float*, long long)) {
    const std::string name = std::string("cast_") + suffix<T>() + "_to_f32";
    for (int mis = 0; mis < 2; ++mis) {
        const long long n = 65536 - mis;  // every bit pattern
        Buf<T> in(n, mis == 1);
        Buf<float> out(n);
        for (long long i = 0; i < n; ++i) in[i].bits = (unsigned short)i;
        const std::string what = "all bit patterns " + sz("misaligned", mis);
        if (!run(name, what, k, dim3(ceil_div(n, LDT_ELEMS_PER_BLOCK)), 0, in.ptr(), out.ptr(), n)) continue;
        std::vector<std::uint32_t> got(n), want(n);
        for (long long i = 0; i < n; ++i) {
            got[i] = canon(out.at(i));
            want[i] = canon(in.at(i));
        }
        check_bits(name, what, got, want);
    }
}

// The SPEC formulas of conditioning.cu, in double, rounded once to float (as the kernels).
void timestep(Rng& rng) {
    const double ln1e4 = std::log(10000.0);
    for (int batch : {1, 3}) {
        Buf<float> t(batch), out(batch * 256);
        for (int b = 0; b < batch; ++b) t.set(b, b == 0 ? 0.0 : rng.uniform(0.0, 1000.0));
        const std::string what = sz("batch", batch);
        if (run("timestep_features_dit", what, timestep_features_dit, dim3(ceil_div(batch * 128, 256)), 0,
                t.ptr(), out.ptr(), batch)) {
            std::vector<double> got, want, mag;
            for (int b = 0; b < batch; ++b) {
                for (int i = 0; i < 256; ++i) {
                    const double arg = t.at(b) * std::exp(-ln1e4 * (i % 128) / 128.0);
                    want.push_back((float)(i < 128 ? std::cos(arg) : std::sin(arg)));
                    got.push_back(out.at(b * 256 + i));
                    mag.push_back(0.0);
                }
            }
            check("timestep_features_dit", what, got, want, mag, kStore<float>);
        }
        for (int half : {1, 2, 7, 128}) {
            Buf<float> o(batch * 2 * half);
            const std::string w = what + " " + sz("half", half);
            if (!run("timestep_features_edifice", w, timestep_features_edifice,
                     dim3(ceil_div(batch * half, 256)), 0, t.ptr(), o.ptr(), batch, half, 1000.0f))
                continue;
            std::vector<double> got, want, mag;
            for (int b = 0; b < batch; ++b) {
                for (int i = 0; i < 2 * half; ++i) {
                    const int f = i % half;
                    const double arg = t.at(b) / 1000.0 *
                                       std::exp(-ln1e4 * f / (double)std::max(half - 1, 1));
                    want.push_back((float)(i < half ? std::sin(arg) : std::cos(arg)));
                    got.push_back(o.at(b * 2 * half + i));
                    mag.push_back(0.0);
                }
            }
            check("timestep_features_edifice", w, got, want, mag, kStore<float>);
        }
    }
}

void onehot() {
    const int batch = 5, classes = 10;
    std::vector<long long> y = {3, -1, 10, 0, 9};
    Buf<float> out(batch * classes);
    if (!run("class_onehot", "y in and out of range", class_onehot,
             dim3(ceil_div(batch * classes, 256)), 0, y.data(), out.ptr(), batch, classes))
        return;
    std::vector<double> got, want, mag(batch * classes, 0.0);
    for (int b = 0; b < batch; ++b) {
        for (int c = 0; c < classes; ++c) {
            got.push_back(out.at(b * classes + c));
            want.push_back(y[b] == c ? 1.0 : 0.0);
        }
    }
    check("class_onehot", "y in and out of range", got, want, mag, kStore<float>);
}

template <typename T>
void class_embedding(void (*k)(float*, const T*, const long long*, int, int), Rng& rng) {
    const std::string name = std::string("add_class_embedding_") + suffix<T>();
    const int batch = 4, classes = 5;
    std::vector<long long> y = {2, 5, 0, 4};  // 5 = the null class row (y ∈ [0, C])
    for (int h : {7, 64}) {
        Buf<float> c(batch * h);
        Buf<T> table((classes + 1) * h);
        std::vector<double> c0(batch * h);
        for (int i = 0; i < batch * h; ++i) c0[i] = c.set(i, rng.normal());
        for (int i = 0; i < (classes + 1) * h; ++i) table.set(i, rng.normal());
        const std::string what = sz("h", h);
        if (!run(name, what, k, dim3(ceil_div(batch * h, 256)), 0, c.ptr(), table.ptr(), y.data(), batch, h))
            continue;
        std::vector<double> got, want, mag;
        for (int b = 0; b < batch; ++b) {
            for (int j = 0; j < h; ++j) {
                const double e = table.at(y[b] * h + j);
                got.push_back(c.at(b * h + j));
                want.push_back(c0[b * h + j] + e);
                mag.push_back(std::fabs(c0[b * h + j]) + std::fabs(e));
            }
        }
        check(name, what, got, want, mag, kStore<float>);
    }
}

template <typename T>
void modulation(void (*k)(const float*, int, int, int, const T*, const T*, float*, float*, int, int),
                Rng& rng) {
    const std::string name = std::string("modulation_affine_") + suffix<T>();
    const int batch = 3;
    for (int h : {7, 64}) {
        for (int variant = 0; variant < 4; ++variant) {
            const bool has_mod = variant < 2, has_affine = variant % 2 == 0;
            const int stride = 6 * h, shift_col = variant == 0 ? 0 : 3 * h, scale_col = variant == 0 ? h : 4 * h;
            Buf<float> mod(batch * stride), scale(batch * h), shift(batch * h);
            Buf<T> gamma(h), beta(h);
            for (int i = 0; i < batch * stride; ++i) mod.set(i, rng.normal());
            for (int j = 0; j < h; ++j) {
                gamma.set(j, 1.0 + 0.3 * rng.normal());
                beta.set(j, rng.normal());
            }
            const std::string what = sz("h", h) + (has_mod ? " mod" : " no mod") + (has_affine ? " gamma beta" : " no affine");
            if (!run(name, what, k, dim3(ceil_div(batch * h, 256)), 0, has_mod ? mod.ptr() : nullptr,
                     stride, shift_col, scale_col, has_affine ? gamma.ptr() : nullptr,
                     has_affine ? beta.ptr() : nullptr, scale.ptr(), shift.ptr(), batch, h))
                continue;
            std::vector<double> got, want, mag;
            for (int b = 0; b < batch; ++b) {
                for (int j = 0; j < h; ++j) {
                    const double g = has_affine ? gamma.at(j) : 1.0, be = has_affine ? beta.at(j) : 0.0;
                    const double s = has_mod ? mod.at(b * stride + scale_col + j) : 0.0;
                    const double t = has_mod ? mod.at(b * stride + shift_col + j) : 0.0;
                    got.push_back(scale.at(b * h + j));
                    want.push_back(has_mod ? g * (1.0 + s) : g);
                    mag.push_back(std::fabs(g) * (1.0 + std::fabs(s)));
                    got.push_back(shift.at(b * h + j));
                    want.push_back(has_mod ? be * (1.0 + s) + t : be);
                    mag.push_back(std::fabs(be) * (1.0 + std::fabs(s)) + std::fabs(t));
                }
            }
            check(name, what, got, want, mag, kStore<float>);
        }
    }
}

template <typename T>
void embedding(void (*k)(float*, const T*, const float*, int, int, int), Rng& rng) {
    const std::string name = std::string("embed_add_") + suffix<T>();
    for (int rows : {1, 7, 300}) {
        for (int h : {5, 64, 72}) {
            if (g_opt.quick && rows * h > 5000) continue;
            for (int variant = 0; variant < 3; ++variant) {
                const int table_rows = variant == 1 ? 1 : rows;
                const bool mis = variant == 2;
                Buf<float> x(rows * h, mis), table(table_rows * h);
                Buf<T> bias(h);
                std::vector<double> x0(rows * h);
                for (int i = 0; i < rows * h; ++i) x0[i] = x.set(i, rng.normal());
                for (int i = 0; i < table_rows * h; ++i) table.set(i, rng.normal());
                for (int j = 0; j < h; ++j) bias.set(j, rng.normal());
                const int grid = variant == 0 ? ceil_div((long long)rows * h, LDT_ELEMS_PER_BLOCK) : variant;
                const std::string what = sz("rows", rows) + " " + sz("h", h) + " " +
                                         sz("table_rows", table_rows) + (mis ? " misaligned x" : "") + " " + sz("grid", grid);
                if (!run(name, what, k, dim3(grid), 0, x.ptr(), bias.ptr(), table.ptr(), rows, h, table_rows))
                    continue;
                std::vector<double> got, want, mag;
                for (int r = 0; r < rows; ++r) {
                    for (int j = 0; j < h; ++j) {
                        const double b = bias.at(j), t = table.at((r % table_rows) * h + j);
                        got.push_back(x.at(r * h + j));
                        want.push_back(x0[r * h + j] + b + t);
                        mag.push_back(std::fabs(x0[r * h + j]) + std::fabs(b) + std::fabs(t));
                    }
                }
                check(name, what, got, want, mag, kStore<float>);
            }
        }
    }
}

double gelu_ref(double v, bool erf) {
    if (erf) return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
    return 0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
}

template <typename T>
void gelu(void (*k)(T*, const T*, long long, int), bool erf, Rng& rng) {
    const std::string name = std::string(erf ? "bias_gelu_erf_" : "bias_gelu_tanh_") + suffix<T>();
    for (int rows : {1, 7, 300}) {
        for (int m : {5, 64, 72}) {
            if (g_opt.quick && rows * m > 5000) continue;
            for (int variant = 0; variant < 4; ++variant) {
                const bool has_bias = variant != 1, mis = variant == 2;
                const int grid = variant == 3 ? 1 : std::max(1, ceil_div((long long)rows * m, LDT_ELEMS_PER_BLOCK));
                Buf<T> x(rows * m, mis), bias(m);
                std::vector<double> x0(rows * m);
                for (int i = 0; i < rows * m; ++i) x0[i] = x.set(i, 3.0 * rng.normal());
                // NaN, the fp16 maximum (+ a positive bias: past 65504, saturates), huge values.
                x0[0] = x.set(0, NAN);
                if (rows * m > 3) {
                    x0[1] = x.set(1, 65504.0);
                    x0[2] = x.set(2, -65504.0);
                    x0[3] = x.set(3, -12.0);
                }
                for (int j = 0; j < m; ++j) bias.set(j, j == 1 ? 100.0 : rng.normal());
                const std::string what = sz("rows", rows) + " " + sz("m", m) + (has_bias ? "" : " no bias") +
                                         (mis ? " misaligned" : "") + " " + sz("grid", grid);
                if (!run(name, what, k, dim3(grid), 0, x.ptr(), has_bias ? bias.ptr() : nullptr, (long long)rows, m))
                    continue;
                std::vector<double> got, want, mag;
                for (int i = 0; i < rows * m; ++i) {
                    const double v = (double)(float)(x0[i] + (has_bias ? bias.at(i % m) : 0.0));
                    got.push_back(x.at(i));
                    want.push_back(policy<T>(gelu_ref(v, erf)));
                    mag.push_back(std::fabs(v));
                }
                check(name, what, got, want, mag, kStore<T>);
            }
        }
    }
}

}  // namespace

void check_pointwise() {
    Rng rng(g_opt.seed * 101 + 1);
    cast_from_f32<float>(cast_f32_to_f32, rng);
    cast_from_f32<bf16_t>(cast_f32_to_bf16, rng);
    cast_from_f32<half_t>(cast_f32_to_f16, rng);
    cast_to_f32<bf16_t>(cast_bf16_to_f32);
    cast_to_f32<half_t>(cast_f16_to_f32);
    timestep(rng);
    onehot();
    class_embedding<float>(add_class_embedding_f32, rng);
    class_embedding<bf16_t>(add_class_embedding_bf16, rng);
    class_embedding<half_t>(add_class_embedding_f16, rng);
    modulation<float>(modulation_affine_f32, rng);
    modulation<bf16_t>(modulation_affine_bf16, rng);
    modulation<half_t>(modulation_affine_f16, rng);
    embedding<float>(embed_add_f32, rng);
    embedding<bf16_t>(embed_add_bf16, rng);
    embedding<half_t>(embed_add_f16, rng);
    gelu<float>(bias_gelu_tanh_f32, false, rng);
    gelu<bf16_t>(bias_gelu_tanh_bf16, false, rng);
    gelu<half_t>(bias_gelu_tanh_f16, false, rng);
    gelu<float>(bias_gelu_erf_f32, true, rng);
    gelu<bf16_t>(bias_gelu_erf_bf16, true, rng);
    gelu<half_t>(bias_gelu_erf_f16, true, rng);
}

}  // namespace kc
