// runtime.hpp: the host side of the CPU executor: launch a kernel of kernels/*.cu (compiled
// against cuda_emu.hpp) on a grid, block by block, each block as real threads.
//
// launch() runs the blocks one at a time, in a shuffled order (seeded, reproducible), so a
// block that depends on another block's results shows up; before each block the static and
// dynamic shared memory are poisoned with 0xFF bytes (fp32 quiet NaN), so reading shared
// memory that no thread wrote shows up too. It returns an empty string when the launch ran
// clean, otherwise what went wrong (divergent __syncthreads, a shuffle with an inactive lane,
// a deadlock, ...) and in which block.

#ifndef LDT_EMU_RUNTIME_HPP
#define LDT_EMU_RUNTIME_HPP

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <tuple>
#include <utility>

#include "cuda_emu.hpp"  // last: it disables inline asm for everything after it

namespace ldt_emu {

// Seeds the block orders: the k-th launch after set_seed(s) always runs its blocks in the
// same order (each launch draws its own).
void set_seed(std::uint64_t seed);

std::string launch_body(dim3 grid, dim3 block, std::size_t dynamic_smem,
                        const std::function<void()>& body);

// Runs kernel(args...) on grid × block (1-D blocks of at most 1024 threads) with
// dynamic_smem bytes of dynamic shared memory.
template <typename... P, typename... A>
std::string launch(void (*kernel)(P...), dim3 grid, dim3 block, std::size_t dynamic_smem,
                   A&&... args) {
    const std::tuple<P...> params(std::forward<A>(args)...);
    return launch_body(grid, block, dynamic_smem, [&] { std::apply(kernel, params); });
}

}  // namespace ldt_emu

#endif  // LDT_EMU_RUNTIME_HPP
