// cuda_emu.hpp: just enough of CUDA for kernels/*.cu to compile as host C++20 (g++ 12) and run
// on the CPU executor of scripts/kernel-check.sh, included before the kernels.
//
// What it provides, and how each piece keeps the CUDA semantics the kernels rely on:
// - threadIdx / blockIdx / blockDim / gridDim: thread_local, set by the launcher (runtime.cpp)
//   in each of the block's worker threads; every block is LDT_THREADS real std::threads.
// - __syncthreads(): a block barrier that knows its call site; divergence (threads at two
//   different barriers, or a thread that returned while others wait) is an error, not a hang.
// - __shfl_xor_sync: a per-warp exchange among the lanes of the mask; a lane outside the mask
//   calling it, or being read, is an error.
// - shared memory: kernels declare their static __shared__ arrays in their bodies, where no
//   macro can turn them into per-block objects or find their address. So when
//   scripts/kernel-check.sh generates the translation unit it rewrites each declaration line,
//   `__shared__ [__align__(n)] T name[N];` into LDT_EMU_SHARED(...) and
//   `extern __shared__ T name[];` into LDT_EMU_DYNAMIC_SHARED(T, name); any other use of
//   __shared__ is a compile error (extend the rewrite). LDT_EMU_SHARED makes the array a
//   static local, shared by all threads, which is exactly per-block sharing because the
//   launcher runs one block at a time (its threads joined before the next block starts), and
//   registers it, so the launcher poisons it (0xFF bytes, a quiet NaN as fp32) before every
//   block. The dynamic buffer is a heap allocation of exactly the size passed to launch(), so
//   AddressSanitizer reports any overrun; it is poisoned the same way.
// - inline PTX: common.cuh routes each instruction the kernels use through a helper that,
//   under LDT_EMULATE, calls the CPU model declared below (ptx_models.cpp). `asm` itself is
//   defined last to an undeclared identifier, so raw inline assembly that has no model fails
//   to compile.

#ifndef LDT_CUDA_EMU_HPP
#define LDT_CUDA_EMU_HPP

#include <math.h>

#include <cstddef>
#include <cstring>

#define LDT_EMULATE 1

// ---------------------------------------------------------------------------------------------
// Built-in types and variables.

struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1)
        : x(x_), y(y_), z(z_) {}
};
struct __attribute__((aligned(16))) float4 {
    float x, y, z, w;
};
struct __attribute__((aligned(8))) float2 {
    float x, y;
};
struct __attribute__((aligned(16))) uint4 {
    unsigned int x, y, z, w;
};
struct __attribute__((aligned(8))) uint2 {
    unsigned int x, y;
};

inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
inline uint4 make_uint4(unsigned int x, unsigned int y, unsigned int z, unsigned int w) {
    return {x, y, z, w};
}
inline uint2 make_uint2(unsigned int x, unsigned int y) { return {x, y}; }

extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;

// ---------------------------------------------------------------------------------------------
// Qualifiers.

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ LDT_EMU_shared_declaration_not_rewritten_by_kernel_check

namespace ldt_emu {
// Adds a static shared array to those poisoned before every block (and poisons it now: the
// first thread to reach its declaration registers it before any thread can use it).
bool register_shared(void* p, std::size_t bytes);
// The dynamic shared-memory buffer of the running launch (null when it asked for 0 bytes).
void* dynamic_shared();
}  // namespace ldt_emu

#define LDT_EMU_SHARED(TYPE, name, ...)                                                       \
    static TYPE name[__VA_ARGS__];                                                            \
    [[maybe_unused]] static const bool name##_ldt_emu_registered =                            \
        ldt_emu::register_shared(name, sizeof name)
#define LDT_EMU_DYNAMIC_SHARED(T, name) T* const name = static_cast<T*>(ldt_emu::dynamic_shared())

// ---------------------------------------------------------------------------------------------
// Synchronisation.

namespace ldt_emu {
void syncthreads(const char* site);
// Every lane of `mask` passes `bytes` (≤ 32) bytes; on return all[l] holds lane l's bytes for
// every lane l of the mask. `what` names the operation in error messages.
void warp_gather(unsigned int mask, const void* mine, std::size_t bytes, void* all,
                 const char* what);
// The calling thread's lane, 0…31.
inline int lane() { return (int)(threadIdx.x & 31u); }
[[noreturn]] void kernel_error(const char* what);
}  // namespace ldt_emu

#define LDT_EMU_STR2(x) #x
#define LDT_EMU_STR(x) LDT_EMU_STR2(x)
#define __syncthreads() ldt_emu::syncthreads(__FILE__ ":" LDT_EMU_STR(__LINE__))

template <typename T> T __shfl_xor_sync(unsigned int mask, T v, int lane_mask, int width = 32) {
    static_assert(sizeof(T) <= 32, "shuffle payload");
    T all[32];
    ldt_emu::warp_gather(mask, &v, sizeof(T), all, "__shfl_xor_sync");
    const int lane = ldt_emu::lane();
    const int src = lane ^ lane_mask;
    // A source outside the caller's width-segment returns the caller's own value (CUDA).
    if (src / width != lane / width || src < 0 || src > 31) {
        return v;
    }
    if (((mask >> src) & 1u) == 0) {
        ldt_emu::kernel_error("__shfl_xor_sync reads a lane that is not in the mask");
    }
    return all[src];
}

// ---------------------------------------------------------------------------------------------
// Intrinsics and math (fp32 functions: the host libm's, correctly rounded or nearly).

inline float __uint_as_float(unsigned int u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}
inline unsigned int __float_as_uint(float f) {
    unsigned int u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline int min(int a, int b) { return a < b ? a : b; }

// ---------------------------------------------------------------------------------------------
// CPU models of the inline-PTX instructions (ptx_models.cpp).

namespace ldt_emu {
float ptx_cvt_f32_f16(unsigned short h);
unsigned short ptx_cvt_rn_f16_f32(float f);
unsigned int ptx_cvt_rna_tf32_f32(float f);
void ptx_mma_m16n8k8_row_col_f32_tf32_tf32_f32(float (&d)[4], const unsigned int (&a)[4],
                                               const unsigned int (&b)[2]);
}  // namespace ldt_emu

// Inline assembly without a model does not compile (the identifier is never declared).
#define asm LDT_EMU_inline_asm_without_a_cpu_model
#define __asm__ LDT_EMU_inline_asm_without_a_cpu_model
#define __asm LDT_EMU_inline_asm_without_a_cpu_model

#endif  // LDT_CUDA_EMU_HPP
