// kernel_check.cpp: the CPU executor's test harness (scripts/kernel-check.sh builds and runs
// it): every extern "C" kernel of kernels/ against an exact reference on random inputs,
// and the executor's own error detection. Prints one line per kernel (cases, largest relative
// and absolute error) and exits non-zero on any failure.
//
//   kernel_check [--quick] [--only=FAMILY] [--seed=N] [--list]
//     --quick   the subset the sanitizer builds run (small sizes)
//     --only    one family: pointwise, small_linear, norm, attention, sana, emulator
//     --list    print the names of the kernels the harness covers and exit
// Tolerances: kernel_check.hpp.

#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>

#include "kernel_check.hpp"

namespace kc {

Options g_opt;

namespace {

struct Stats {
    long cases = 0;
    long failures = 0;
    double max_rel = 0.0;
    double max_abs = 0.0;
};

std::map<std::string, Stats> g_stats;
long g_printed = 0;

// Every extern "C" kernel of kernels/ (kernels.hpp); the script checks this list against
// the symbols the kernel object defines.
const char* const kKernels[] = {
    "cast_f32_to_f32", "cast_f32_to_bf16", "cast_f32_to_f16", "cast_bf16_to_f32",
    "cast_f16_to_f32", "timestep_features_dit", "timestep_features_edifice", "class_onehot",
    "add_class_embedding_f32", "add_class_embedding_bf16", "add_class_embedding_f16",
    "small_linear_f32", "small_linear_bf16", "small_linear_f16", "modulation_affine_f32",
    "modulation_affine_bf16", "modulation_affine_f16", "embed_add_f32", "embed_add_bf16",
    "embed_add_f16", "norm_modulate_f32", "norm_modulate_bf16", "norm_modulate_f16",
    "residual_norm_modulate_f32", "residual_norm_modulate_bf16", "residual_norm_modulate_f16",
    "bias_gelu_tanh_f32", "bias_gelu_tanh_bf16", "bias_gelu_tanh_f16", "bias_gelu_erf_f32",
    "bias_gelu_erf_bf16", "bias_gelu_erf_f16",
    "linear_attention_partial_f32_d32", "linear_attention_apply_f32_d32",
    "linear_attention_partial_f32_d64", "linear_attention_apply_f32_d64",
    "linear_attention_partial_f32_d128", "linear_attention_apply_f32_d128",
    "linear_attention_partial_bf16_d32", "linear_attention_apply_bf16_d32",
    "linear_attention_partial_bf16_d64", "linear_attention_apply_bf16_d64",
    "linear_attention_partial_bf16_d128", "linear_attention_apply_bf16_d128",
    "linear_attention_partial_f16_d32", "linear_attention_apply_f16_d32",
    "linear_attention_partial_f16_d64", "linear_attention_apply_f16_d64",
    "linear_attention_partial_f16_d128", "linear_attention_apply_f16_d128",
    "linear_attention_reduce",
    "modulation_table_f32", "modulation_table_bf16", "modulation_table_f16",
    "rms_norm_f32", "rms_norm_bf16", "rms_norm_f16",
    "depthwise_conv_glu_f32", "depthwise_conv_glu_bf16", "depthwise_conv_glu_f16",
    "masked_softmax_f32", "masked_softmax_bf16", "masked_softmax_f16",
    "linear_attention_relu_partial_f32_d32", "linear_attention_relu_apply_f32_d32",
    "linear_attention_relu_partial_f32_d64", "linear_attention_relu_apply_f32_d64",
    "linear_attention_relu_partial_f32_d128", "linear_attention_relu_apply_f32_d128",
    "linear_attention_relu_partial_bf16_d32", "linear_attention_relu_apply_bf16_d32",
    "linear_attention_relu_partial_bf16_d64", "linear_attention_relu_apply_bf16_d64",
    "linear_attention_relu_partial_bf16_d128", "linear_attention_relu_apply_bf16_d128",
    "linear_attention_relu_partial_f16_d32", "linear_attention_relu_apply_f16_d32",
    "linear_attention_relu_partial_f16_d64", "linear_attention_relu_apply_f16_d64",
    "linear_attention_relu_partial_f16_d128", "linear_attention_relu_apply_f16_d128",
};

void fail_line(const std::string& kernel, const std::string& what, const std::string& detail) {
    if (g_printed++ < 40) {
        std::printf("FAIL %s [%s]: %s\n", kernel.c_str(), what.c_str(), detail.c_str());
    }
}

}  // namespace

int ceil_div(long long a, long long b) { return (int)((a + b - 1) / b); }

void note_launch(const std::string& kernel) { (void)g_stats[kernel]; }

bool launch_failed(const std::string& kernel, const std::string& what, const std::string& error) {
    Stats& s = g_stats[kernel];
    ++s.cases;
    ++s.failures;
    fail_line(kernel, what, "launch: " + error);
    return true;
}

void check(const std::string& kernel, const std::string& what, const std::vector<double>& got,
           const std::vector<double>& want, const std::vector<double>& mag, Tol store_tol) {
    Stats& s = g_stats[kernel];
    ++s.cases;
    long bad = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
        const double g = got[i], w = want[i];
        bool ok;
        double err = 0.0;
        if (std::isnan(w) || std::isnan(g)) {
            ok = std::isnan(w) && std::isnan(g);
            err = ok ? 0.0 : INFINITY;
        } else if (std::isinf(w) || std::isinf(g)) {
            ok = g == w;
            err = ok ? 0.0 : INFINITY;
        } else {
            err = std::fabs(g - w);
            ok = err <= store_tol.abs + store_tol.rel * std::fabs(w) + kArithRel * mag[i];
            const double scale = std::fmax(std::fabs(w), mag[i]);
            if (scale > 0.0) {
                s.max_rel = std::fmax(s.max_rel, err / scale);
            }
        }
        s.max_abs = std::fmax(s.max_abs, err);
        if (!ok && bad++ < 3) {
            char line[160];
            std::snprintf(line, sizeof line, "[%zu] got %.9g want %.9g (mag %.3g)", i, g, w,
                          mag[i]);
            fail_line(kernel, what, line);
        }
    }
    if (bad > 0) {
        ++s.failures;
        fail_line(kernel, what, std::to_string(bad) + " of " + std::to_string(want.size()) +
                                    " values out of tolerance");
    }
}

void check_bits(const std::string& kernel, const std::string& what,
                const std::vector<std::uint32_t>& got, const std::vector<std::uint32_t>& want) {
    Stats& s = g_stats[kernel];
    ++s.cases;
    long bad = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
        if (got[i] != want[i] && bad++ < 3) {
            char line[120];
            std::snprintf(line, sizeof line, "[%zu] got bits 0x%08x want 0x%08x", i, got[i],
                          want[i]);
            fail_line(kernel, what, line);
        }
    }
    if (bad > 0) {
        ++s.failures;
        s.max_abs = INFINITY;
        fail_line(kernel, what, std::to_string(bad) + " values differ");
    }
}

void expect(const std::string& name, const std::string& what, bool ok, const std::string& detail) {
    Stats& s = g_stats[name];
    ++s.cases;
    if (!ok) {
        ++s.failures;
        fail_line(name, what, detail);
    }
}

}  // namespace kc

int main(int argc, char** argv) {
    using namespace kc;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--quick") {
            g_opt.quick = true;
        } else if (a.rfind("--only=", 0) == 0) {
            g_opt.only = a.substr(7);
        } else if (a.rfind("--seed=", 0) == 0) {
            g_opt.seed = std::strtoull(a.c_str() + 7, nullptr, 10);
        } else if (a == "--list") {
            for (const char* k : kKernels) {
                std::printf("%s\n", k);
            }
            return 0;
        } else {
            std::fprintf(stderr, "kernel_check: unknown argument %s\n", a.c_str());
            return 2;
        }
    }
    ldt_emu::set_seed(g_opt.seed);
    const struct {
        const char* name;
        void (*run)();
    } families[] = {{"emulator", check_emulator},   {"pointwise", check_pointwise},
                    {"small_linear", check_small_linear}, {"norm", check_norm},
                    {"attention", check_attention}, {"sana", check_sana}};
    bool known = g_opt.only.empty();
    for (const auto& f : families) {
        if (g_opt.only.empty() || g_opt.only == f.name) {
            known = true;
            f.run();
        }
    }
    if (!known) {
        std::fprintf(stderr, "kernel_check: unknown family %s\n", g_opt.only.c_str());
        return 2;
    }

    std::printf("\n%-36s %6s %11s %11s  %s\n", "kernel", "cases", "max rel", "max abs",
                "result");
    long failures = 0;
    for (const auto& [name, s] : g_stats) {
        std::printf("%-36s %6ld %11.3e %11.3e  %s\n", name.c_str(), s.cases, s.max_rel, s.max_abs,
                    s.failures == 0 ? "ok" : "FAILED");
        failures += s.failures;
    }
    if (g_opt.only.empty()) {  // every kernel must have been exercised
        for (const char* k : kKernels) {
            if (g_stats.count(k) == 0 || g_stats[k].cases == 0) {
                std::printf("FAIL %s: no case ran\n", k);
                ++failures;
            }
        }
    }
    std::printf("%s: %ld failure(s) (seed %llu%s)\n", failures == 0 ? "ok" : "FAILED", failures,
                (unsigned long long)g_opt.seed, g_opt.quick ? ", quick" : "");
    return failures == 0 ? 0 : 1;
}
