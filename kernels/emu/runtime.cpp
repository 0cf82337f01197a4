// runtime.cpp: the CPU executor's threads and barriers (see runtime.hpp and cuda_emu.hpp).
//
// A fixed pool of worker threads (grown to the largest block launched) runs one block at a
// time: worker i is thread i of the block. All synchronisation of a block goes through one
// mutex, which keeps the bookkeeping that turns GPU misbehaviour into errors simple:
// - live: threads that have not returned from the kernel. A __syncthreads needs every thread
//   of the block, so reaching one after a thread returned, or returning while others wait at
//   one, is divergent control flow around a barrier: an error.
// - blocked: threads waiting at a barrier or a warp exchange that has not completed. When every
//   live thread is blocked nothing can ever complete: a deadlock (threads at different
//   barriers, a warp split between a shuffle and a __syncthreads, ...), reported instead of
//   hanging. A completing barrier takes its waiters off `blocked` itself, so a waiter that has
//   not woken up yet is never counted as stuck.
// - a barrier records its call site; threads arriving at a different __syncthreads than the
//   ones already waiting is an error.
// An error marks the block failed, wakes every waiter, and unwinds every thread out of the
// kernel (an exception caught by the worker); launch() then returns the message.
//
// Warp exchanges (shuffles, mma) are double-buffered per warp: exchange k writes slot k % 2,
// and no lane can write that slot again (exchange k + 2) before every lane of the mask has
// arrived at exchange k + 1, i.e. has finished reading exchange k. So one barrier per
// exchange suffices.

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "runtime.hpp"

thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
thread_local dim3 blockDim;
thread_local dim3 gridDim;

namespace ldt_emu {
namespace {

constexpr int kWarp = 32;
constexpr int kMaxThreads = 1024;
constexpr std::size_t kPayload = 32;  // bytes per lane per warp exchange

// Thrown through the kernel to unwind a thread of a failed block.
struct Abort {};

struct Warp {
    std::condition_variable cv;
    int arrived = 0;
    unsigned int mask = 0;
    const char* what = nullptr;
    unsigned long long generation = 0;
    unsigned char slot[2][kWarp][kPayload];
};

struct Block {
    std::mutex m;
    int threads = 0;
    int live = 0;
    int blocked = 0;
    // __syncthreads
    std::condition_variable cv;
    int arrived = 0;
    const char* site = nullptr;
    unsigned long long generation = 0;
    Warp warps[kMaxThreads / kWarp];
    bool failed = false;
    std::string error;

    void reset(int n) {
        threads = live = n;
        blocked = arrived = 0;
        site = nullptr;
        failed = false;
        error.clear();
        for (Warp& w : warps) {
            w.arrived = 0;
            w.mask = 0;
            w.what = nullptr;
        }
    }

    // Records the first error and wakes everyone (the caller holds m).
    void fail(const std::string& message) {
        if (!failed) {
            failed = true;
            error = message;
        }
        cv.notify_all();
        for (Warp& w : warps) {
            w.cv.notify_all();
        }
    }

    // The caller is about to wait: if every live thread is then waiting, it never ends.
    void check_deadlock(const char* where) {
        ++blocked;
        if (blocked == live) {
            fail(std::string("deadlock: every live thread waits (the last at ") + where +
                 "); threads wait at different barriers or warp operations");
        }
    }
};

Block g_block;
void* g_dynamic_shared = nullptr;

// Per worker: exchanges done in this block (the slot parity).
thread_local unsigned long long t_exchanges = 0;

int thread_id() { return (int)threadIdx.x; }

std::string where(const char* what) {
    return std::string(what) + " (block " + std::to_string(blockIdx.x) + "," +
           std::to_string(blockIdx.y) + "," + std::to_string(blockIdx.z) + ", thread " +
           std::to_string(thread_id()) + ")";
}

[[noreturn]] void fail_and_abort(std::unique_lock<std::mutex>&, const std::string& message) {
    g_block.fail(message);
    throw Abort{};
}

// Called by a worker whose kernel body returned (or unwound).
void thread_exited() {
    std::unique_lock<std::mutex> lock(g_block.m);
    --g_block.live;
    const int tid = thread_id();
    if (g_block.arrived > 0) {
        g_block.fail(where("divergent __syncthreads: a thread returned from the kernel while "
                           "others wait at ") + g_block.site);
    }
    const Warp& w = g_block.warps[tid / kWarp];
    if (w.arrived > 0 && ((w.mask >> (tid % kWarp)) & 1u)) {
        g_block.fail(where("a lane returned from the kernel while its warp waits for it at ") +
                     w.what);
    }
    if (g_block.live > 0 && g_block.blocked == g_block.live) {
        g_block.fail(where("deadlock: every remaining thread waits after this one returned"));
    }
}

// The worker pool. Worker i runs thread i of each block that has at least i + 1 threads.
class Pool {
  public:
    ~Pool() {
        {
            std::lock_guard<std::mutex> lock(m_);
            quit_ = true;
        }
        start_.notify_all();
        for (std::thread& t : workers_) {
            t.join();
        }
    }

    void run_block(int threads, uint3 block_idx, dim3 grid, dim3 block,
                   const std::function<void()>& body) {
        std::unique_lock<std::mutex> lock(m_);
        while ((int)workers_.size() < threads) {
            const int i = (int)workers_.size();
            workers_.emplace_back([this, i] { work(i); });
        }
        body_ = &body;
        threads_ = threads;
        block_idx_ = block_idx;
        grid_ = grid;
        block_ = block;
        done_ = 0;
        ++generation_;
        start_.notify_all();
        finished_.wait(lock, [&] { return done_ == threads_; });
    }

  private:
    void work(int i) {
        unsigned long long seen = 0;
        for (;;) {
            const std::function<void()>* body;
            {
                std::unique_lock<std::mutex> lock(m_);
                start_.wait(lock, [&] { return quit_ || (generation_ != seen && i < threads_); });
                if (quit_) {
                    return;
                }
                seen = generation_;
                body = body_;
                threadIdx = {(unsigned int)i, 0, 0};
                blockIdx = block_idx_;
                gridDim = grid_;
                blockDim = block_;
            }
            t_exchanges = 0;
            try {
                (*body)();
            } catch (const Abort&) {
                // the block failed; the message is recorded
            } catch (const std::exception& e) {
                std::lock_guard<std::mutex> lock(g_block.m);
                g_block.fail(where("exception in kernel: ") + e.what());
            }
            thread_exited();
            std::lock_guard<std::mutex> lock(m_);
            if (++done_ == threads_) {
                finished_.notify_one();
            }
        }
    }

    std::mutex m_;
    std::condition_variable start_, finished_;
    std::vector<std::thread> workers_;
    const std::function<void()>* body_ = nullptr;
    int threads_ = 0;
    int done_ = 0;
    unsigned long long generation_ = 0;
    bool quit_ = false;
    uint3 block_idx_{};
    dim3 grid_, block_;
};

Pool& pool() {
    static Pool p;
    return p;
}

std::uint64_t g_seed = 1;
std::uint64_t g_launches = 0;

// The static shared arrays registered so far (LDT_EMU_SHARED).
struct SharedArray {
    void* p;
    std::size_t bytes;
};
std::mutex g_shared_m;
std::vector<SharedArray> g_shared;

void poison_static_shared() {
    std::lock_guard<std::mutex> lock(g_shared_m);
    for (const SharedArray& a : g_shared) {
        std::memset(a.p, 0xff, a.bytes);
    }
}

}  // namespace

bool register_shared(void* p, std::size_t bytes) {
    std::lock_guard<std::mutex> lock(g_shared_m);
    std::memset(p, 0xff, bytes);
    g_shared.push_back({p, bytes});
    return true;
}

void* dynamic_shared() { return g_dynamic_shared; }

void set_seed(std::uint64_t seed) {
    g_seed = seed;
    g_launches = 0;
}

void syncthreads(const char* site) {
    std::unique_lock<std::mutex> lock(g_block.m);
    Block& b = g_block;
    if (b.failed) {
        throw Abort{};
    }
    if (b.live < b.threads) {
        fail_and_abort(lock, where("divergent __syncthreads: reached after a thread of the block "
                                   "returned, at ") + site);
    }
    if (b.arrived > 0 && std::strcmp(b.site, site) != 0) {
        fail_and_abort(lock, where("divergent __syncthreads: threads wait at ") + b.site +
                                 " and at " + site);
    }
    b.site = site;
    if (++b.arrived == b.threads) {
        b.blocked -= b.arrived - 1;
        b.arrived = 0;
        ++b.generation;
        b.cv.notify_all();
        return;
    }
    const unsigned long long gen = b.generation;
    b.check_deadlock(site);
    b.cv.wait(lock, [&] { return b.generation != gen || b.failed; });
    if (b.generation == gen) {
        throw Abort{};
    }
}

void warp_gather(unsigned int mask, const void* mine, std::size_t bytes, void* all,
                 const char* what) {
    const int tid = thread_id();
    const int lane = tid % kWarp;
    std::unique_lock<std::mutex> lock(g_block.m);
    Block& b = g_block;
    if (b.failed) {
        throw Abort{};
    }
    // The lanes the warp actually has (a block of fewer than 32·k threads ends in a partial warp).
    const int first = tid - lane;
    const unsigned int exists =
        b.threads - first >= kWarp ? 0xffffffffu : (1u << (b.threads - first)) - 1u;
    if (((mask >> lane) & 1u) == 0) {
        fail_and_abort(lock, where(what) + ": the calling lane is not in the mask");
    }
    if ((mask & ~exists) != 0) {
        fail_and_abort(lock, where(what) + ": the mask names lanes the block does not have");
    }
    Warp& w = b.warps[tid / kWarp];
    if (w.arrived > 0 && (w.mask != mask || std::strcmp(w.what, what) != 0)) {
        fail_and_abort(lock, where(what) + ": lanes of one warp are at different warp "
                                           "operations or masks (" + w.what + ")");
    }
    w.mask = mask;
    w.what = what;
    const int parity = (int)(t_exchanges++ & 1u);
    std::memcpy(w.slot[parity][lane], mine, bytes);
    const int lanes = __builtin_popcount(mask);
    if (++w.arrived == lanes) {
        b.blocked -= w.arrived - 1;
        w.arrived = 0;
        ++w.generation;
        w.cv.notify_all();
    } else {
        const unsigned long long gen = w.generation;
        b.check_deadlock(what);
        w.cv.wait(lock, [&] { return w.generation != gen || b.failed; });
        if (w.generation == gen) {
            throw Abort{};
        }
    }
    lock.unlock();
    for (int l = 0; l < kWarp; ++l) {
        if ((mask >> l) & 1u) {
            std::memcpy(static_cast<unsigned char*>(all) + l * bytes, w.slot[parity][l], bytes);
        }
    }
}

void kernel_error(const char* what) {
    std::unique_lock<std::mutex> lock(g_block.m);
    fail_and_abort(lock, where(what));
}

std::string launch_body(dim3 grid, dim3 block, std::size_t dynamic_smem,
                        const std::function<void()>& body) {
    if (block.y != 1 || block.z != 1 || block.x < 1 || block.x > (unsigned int)kMaxThreads) {
        return "launch: the executor runs 1-D blocks of 1…1024 threads";
    }
    if (grid.x < 1 || grid.y < 1 || grid.z < 1) {
        return "launch: empty grid";
    }
    std::vector<uint3> order;
    for (unsigned int z = 0; z < grid.z; ++z) {
        for (unsigned int y = 0; y < grid.y; ++y) {
            for (unsigned int x = 0; x < grid.x; ++x) {
                order.push_back({x, y, z});
            }
        }
    }
    std::mt19937_64 rng(g_seed * 0x9e3779b97f4a7c15ull + ++g_launches);
    std::shuffle(order.begin(), order.end(), rng);

    // Exactly the size asked for, so AddressSanitizer reports any access past its end.
    unsigned char* dyn = dynamic_smem > 0 ? static_cast<unsigned char*>(::operator new(
                                                dynamic_smem, std::align_val_t(16)))
                                          : nullptr;
    g_dynamic_shared = dyn;
    std::string error;
    for (const uint3& b : order) {
        poison_static_shared();
        if (dyn != nullptr) {
            std::memset(dyn, 0xff, dynamic_smem);
        }
        g_block.reset((int)block.x);
        pool().run_block((int)block.x, b, grid, block, body);
        if (g_block.failed) {
            error = g_block.error;
            break;
        }
    }
    g_dynamic_shared = nullptr;
    if (dyn != nullptr) {
        ::operator delete(dyn, std::align_val_t(16));
    }
    return error;
}

}  // namespace ldt_emu
