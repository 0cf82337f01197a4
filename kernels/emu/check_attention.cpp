// check_attention.cpp: the three passes of linear attention, each against its SPEC formula
// on the previous pass's actual output, for both feature maps: φ(z) = z + 1 for z > 0, e^z
// otherwise, with ε = 1e−6 (linear_attention_*), and φ = ReLU with ε = 1e−15 (sana,
// linear_attention_relu_*):
//   partial: S_c[i][j] = Σ_{n ∈ chunk c} φ(K_n,i)·V_n,j,   z_c[i] = Σ_{n ∈ chunk c} φ(K_n,i)
//   reduce:  state = Σ_c partial_c
//   apply:   O_n,j = Σ_i φ(Q_n,i)·S[i][j] / (Σ_i φ(Q_n,i)·z_i + ε)
// The ReLU cases add SANA's head dim 32 with several heads, a token whose query is negative in
// every channel of a head (φ(Q) = 0: the output is 0/ε = 0, NaN if ε were lost), and features
// around 1e−8, where φ(Q)·z ≈ 1e−14 and the 1e−15 changes the result by several percent.
// Each case runs the instance of its head-dim class, as the host picks it
// (linear_attention_{partial,apply}_<T>_d<LINATTN_PAD(d)>). Head dims 32, 64, 128 (fast paths)
// and 72, 5, 33 (padded), ragged token counts, several heads and samples, chunks other than
// 256, a misaligned qkv (scalar loads), features so small that the 1e−6 decides the result,
// and d = 129, which the kernels must leave alone, as must the instances of the other classes
// (a head dim the host gave the wrong instance). The
// bf16/fp16 storage runs the TF32 mma.sync path (through the executor's model of the
// instruction): its fp32-level accuracy is checked on the fp32 partial sums.

#include <string>
#include <vector>

#include "kernel_check.hpp"

namespace kc {
namespace {

struct Case {
    int batch, tokens, heads, d;
    int chunk = 256;
    bool misaligned = false;
    bool tiny = false;  // Q, K ≈ −14: φ·z ≪ 1e−6
    bool other_classes = false;  // also run the other classes' instances: they must do nothing
};

// The feature map of a set of instances.
enum class Map { EluPlusOne, Relu };

double phi(Map map, double z) {
    if (map == Map::Relu) return z > 0.0 ? z : 0.0;
    return z > 0.0 ? z + 1.0 : std::exp(z);
}
double eps_of(Map map) { return map == Map::Relu ? (double)1e-15f : (double)1e-6f; }

int padded(int d) { return d <= 32 ? 32 : d <= 64 ? 64 : 128; }

// The instances of one storage type, one per head-dim class (32, 64, 128).
template <typename T> struct AttentionKernels {
    using Partial = void (*)(const T*, float*, int, int, int, int, int);
    using Apply = void (*)(const T*, const float*, T*, int, int, int, int);
    Partial partial[3];
    Apply apply[3];
    Map map;
};

constexpr int kClasses[3] = {32, 64, 128};

int class_index(int dp) { return dp == 32 ? 0 : dp == 64 ? 1 : 2; }

std::string prefix(Map map) {
    return map == Map::Relu ? "linear_attention_relu_" : "linear_attention_";
}
std::string partial_name(Map map, const std::string& sfx, int dp) {
    return prefix(map) + "partial_" + sfx + "_d" + std::to_string(dp);
}
std::string apply_name(Map map, const std::string& sfx, int dp) {
    return prefix(map) + "apply_" + sfx + "_d" + std::to_string(dp);
}

template <typename T> void attention_case(const AttentionKernels<T>& k, const Case& c, Rng& rng) {
    const std::string sfx = suffix<T>();
    const int dp = padded(c.d);
    const int ci = class_index(dp);
    const Map map = k.map;
    const bool relu = map == Map::Relu;
    const std::string pname = partial_name(map, sfx, dp), aname = apply_name(map, sfx, dp);
    const int B = c.batch, N = c.tokens, H = c.heads, d = c.d, h = H * d;
    const int chunks = ceil_div(N, c.chunk);
    const int size = d * d + d;
    const std::string what = "B=" + std::to_string(B) + " N=" + std::to_string(N) + " heads=" +
                             std::to_string(H) + " d=" + std::to_string(d) + " chunk=" +
                             std::to_string(c.chunk) + (c.misaligned ? " misaligned" : "") +
                             (c.tiny ? " tiny features" : "");
    Buf<T> qkv((long long)B * N * 3 * h, c.misaligned), out((long long)B * N * h);
    for (long long i = 0; i < (long long)B * N * 3 * h; ++i) {
        const bool v = (i % (3 * h)) >= 2 * h;
        const long long n = i / (3 * h) % N;
        const int col = (int)(i % (3 * h));
        double x = rng.normal();
        if (c.tiny && !v) x = relu ? 1e-8 * x : -14.0 + 0.5 * x;
        // ReLU: token 1's query is negative in every channel of head 0.
        if (relu && n == 1 && col < d) x = -std::fabs(x) - 1e-3;
        qkv.set(i, x);
    }
    auto at = [&](int b, int n, int part, int head, int i) {
        return qkv.at(((long long)b * N + n) * 3 * h + part * h + head * d + i);
    };
    Buf<float> partial((long long)B * H * chunks * size), state((long long)B * H * size);

    // The other classes' instances first: they must leave partial and out alone (NaN).
    if (c.other_classes || d > 128) {
        for (int oi = 0; oi < 3; ++oi) {
            const int odp = kClasses[oi];
            if (oi == ci && d <= 128) continue;
            const std::string op = partial_name(map, sfx, odp), oa = apply_name(map, sfx, odp);
            const std::size_t osmem = (std::size_t)(odp * (odp + 8) + odp) * 4;
            if (!run(op, what, k.partial[oi], dim3(chunks, H, B), 0, qkv.ptr(), partial.ptr(), B,
                     N, H, d, c.chunk) ||
                !run(oa, what, k.apply[oi], dim3(ceil_div(N, 128), H, B), osmem, qkv.ptr(),
                     (const float*)state.ptr(), out.ptr(), B, N, H, d))
                return;
            bool untouched = true;
            for (std::size_t i = 0; i < partial.size(); ++i) untouched = untouched && std::isnan(partial.at(i));
            expect(op, what, untouched, "an instance of another head-dim class must leave partial alone");
            untouched = true;
            for (std::size_t i = 0; i < out.size(); ++i) untouched = untouched && std::isnan(out.at(i));
            expect(oa, what, untouched, "an instance of another head-dim class must leave out alone");
        }
    }

    // Pass 1.
    if (!run(pname, what, k.partial[ci], dim3(chunks, H, B), 0, qkv.ptr(), partial.ptr(), B, N, H,
             d, c.chunk))
        return;
    if (d > 128) {  // LINATTN_MAX_HEAD_DIM
        bool untouched = true;
        for (std::size_t i = 0; i < partial.size(); ++i) untouched = untouched && std::isnan(partial.at(i));
        expect(pname, what, untouched, "a head dim above 128 must leave partial alone");
        return;
    }
    {
        std::vector<double> got, want, mag;
        for (int b = 0; b < B; ++b) {
            for (int head = 0; head < H; ++head) {
                for (int ch = 0; ch < chunks; ++ch) {
                    std::vector<double> S(size, 0.0), M(size, 0.0);
                    for (int n = ch * c.chunk; n < std::min(N, (ch + 1) * c.chunk); ++n) {
                        for (int i = 0; i < d; ++i) {
                            const double f = phi(map, at(b, n, 1, head, i));
                            for (int j = 0; j < d; ++j) {
                                const double p = f * at(b, n, 2, head, j);
                                S[i * d + j] += p;
                                M[i * d + j] += std::fabs(p);
                            }
                            S[d * d + i] += f;
                            M[d * d + i] += f;
                        }
                    }
                    const long long base = (((long long)b * H + head) * chunks + ch) * size;
                    for (int e = 0; e < size; ++e) {
                        got.push_back(partial.at(base + e));
                        want.push_back(S[e]);
                        mag.push_back(M[e]);
                    }
                }
            }
        }
        check(pname, what, got, want, mag, kStore<float>);
    }

    // Pass 2, on the kernel's partial sums.
    const std::string rname = "linear_attention_reduce";
    if (!run(rname, what, linear_attention_reduce, dim3(ceil_div(size, 256), B * H), 0,
             (const float*)partial.ptr(), state.ptr(), B * H, chunks, d))
        return;
    {
        std::vector<double> got, want, mag;
        for (int g = 0; g < B * H; ++g) {
            for (int e = 0; e < size; ++e) {
                double s = 0.0, m = 0.0;
                for (int ch = 0; ch < chunks; ++ch) {
                    const double v = partial.at(((long long)g * chunks + ch) * size + e);
                    s += v;
                    m += std::fabs(v);
                }
                got.push_back(state.at((long long)g * size + e));
                want.push_back(s);
                mag.push_back(m);
            }
        }
        check(rname, what, got, want, mag, kStore<float>);
    }

    // Pass 3, on the kernel's state; dynamic shared memory exactly LINATTN_APPLY_SMEM(d).
    const std::size_t smem = (std::size_t)(dp * (dp + 8) + dp) * 4;
    if (!run(aname, what, k.apply[ci], dim3(ceil_div(N, 128), H, B), smem, qkv.ptr(),
             (const float*)state.ptr(), out.ptr(), B, N, H, d))
        return;
    std::vector<double> got, want, mag;
    for (int b = 0; b < B; ++b) {
        for (int head = 0; head < H; ++head) {
            const long long sb = ((long long)b * H + head) * size;
            for (int n = 0; n < N; ++n) {
                std::vector<double> q(d);
                double den = 0.0;
                for (int i = 0; i < d; ++i) {
                    q[i] = phi(map, at(b, n, 0, head, i));
                    den += q[i] * state.at(sb + d * d + i);
                }
                den += eps_of(map);
                for (int j = 0; j < d; ++j) {
                    double s = 0.0, m = 0.0;
                    for (int i = 0; i < d; ++i) {
                        s += q[i] * state.at(sb + i * d + j);
                        m += std::fabs(q[i] * state.at(sb + i * d + j));
                    }
                    got.push_back(out.at(((long long)b * N + n) * h + head * d + j));
                    want.push_back(policy<T>(s / den));
                    mag.push_back(m / den + std::fabs(s / den));
                }
            }
        }
    }
    check(aname, what, got, want, mag, kStore<T>);
}

template <typename T> void attention_cases(const AttentionKernels<T>& k, Rng& rng) {
    std::vector<Case> cases;
    if (g_opt.quick) {
        cases = {{2, 7, 2, 64},
                 {1, 33, 1, 33, 256, true},
                 {1, 40, 1, 128, 16},
                 {1, 7, 1, 32, 256, false, true},
                 {1, 7, 1, 72, 256, false, false, true}};
    } else {
        cases = {{1, 1, 1, 32},           {2, 7, 2, 64},
                 {1, 300, 1, 128},        {1, 300, 1, 72, 64},
                 {2, 7, 1, 5},            {1, 33, 1, 33, 256, true},
                 {1, 300, 1, 32, 100},    {1, 4097, 1, 32},
                 {1, 7, 1, 64, 256, false, true}, {1, 20, 1, 128, 5, true},
                 {2, 7, 1, 33, 256, false, false, true}, {1, 7, 1, 129}};
    }
    if (k.map == Map::Relu) {  // SANA: d = 32, several heads; and the ε cases
        if (g_opt.quick) {
            cases = {{2, 7, 3, 32}, {1, 7, 1, 32, 256, false, true}, {1, 20, 1, 64, 5, true},
                     {1, 40, 1, 128, 16}};
        } else {
            cases.push_back({2, 15, 4, 32});
            cases.push_back({3, 300, 2, 32, 256, false, true});
            cases.push_back({2, 33, 2, 32, 16, true, true});
        }
    }
    for (const Case& c : cases) {
        // 4097 tokens through the mma model is seconds of warp exchanges: fp32 storage only.
        if (c.tokens > 1000 && sizeof(T) == 2) continue;
        attention_case(k, c, rng);
    }
}

}  // namespace

#define LDT_ATTENTION_KERNELS(P, S, MAP)                                                     \
    {{P##partial_##S##_d32, P##partial_##S##_d64, P##partial_##S##_d128},                    \
     {P##apply_##S##_d32, P##apply_##S##_d64, P##apply_##S##_d128},                          \
     MAP}

void check_attention() {
    Rng rng(g_opt.seed * 101 + 4);
    attention_cases<float>(LDT_ATTENTION_KERNELS(linear_attention_, f32, Map::EluPlusOne), rng);
    attention_cases<bf16_t>(LDT_ATTENTION_KERNELS(linear_attention_, bf16, Map::EluPlusOne), rng);
    attention_cases<half_t>(LDT_ATTENTION_KERNELS(linear_attention_, f16, Map::EluPlusOne), rng);
    attention_cases<float>(LDT_ATTENTION_KERNELS(linear_attention_relu_, f32, Map::Relu), rng);
    attention_cases<bf16_t>(LDT_ATTENTION_KERNELS(linear_attention_relu_, bf16, Map::Relu), rng);
    attention_cases<half_t>(LDT_ATTENTION_KERNELS(linear_attention_relu_, f16, Map::Relu), rng);
}

#undef LDT_ATTENTION_KERNELS

}  // namespace kc
