// embedding.cu: adds the x_embedder bias and the position embedding to the embedded tokens,
// straight into the fp32 residual stream:
//
//   embed_add_T(x, bias, table, rows, h, table_rows)
//     x[r,j] += bias[j] + table[(r % table_rows)*h + j]
//
// x is fp32 [R, h] holding the x_embedder GEMM output (without its bias); bias is T [h];
// table is fp32: dit's fixed 2-D sin-cos embedding [N, h] (table_rows = N, so every sample
// gets the same positions), or edifice's learned pos_embed as a [1, h] table
// (table_rows = 1). Memory-bound: a thread moves 4 consecutive values with 128-bit accesses
// when h % 4 == 0 and the pointers are aligned, otherwise single values; grid-stride over
// vectors with (row, column) kept as a 2-D index so no 64-bit division runs per element.
//
// Launch: block LDT_THREADS (256), grid.x = max(1, ceil(rows * h / 2048)) (any grid.x ≥ 1 is
// correct), no dynamic shared memory.

#include "common.cuh"

template <typename T, int W>
LDT_DEVICE void embed_add_rows(float* x, const T* bias, const float* table, int rows, int h,
                               int table_rows) {
    const int per_row = h / W;  // vectors per row
    const long long total = (long long)rows * per_row;
    for (long long v = global_thread(); v < total; v += grid_threads()) {
        const int r = (int)(v / per_row);
        const int j = (int)(v - (long long)r * per_row) * W;
        float* xr = x + (long long)r * h + j;
        const float* tr = table + (long long)(r % table_rows) * h + j;
        float xv[W], bv[W], tv[W];
        load_vec<W>(xr, xv);
        load_vec<W>(bias + j, bv);
        load_vec<W>(tr, tv);
#pragma unroll
        for (int e = 0; e < W; ++e) {
            xv[e] = (xv[e] + bv[e]) + tv[e];  // (x W + b) + P, the CPU order
        }
        store_vec<W>(xr, xv);
    }
}

template <typename T>
LDT_DEVICE void embed_add(float* x, const T* bias, const float* table, int rows, int h,
                          int table_rows) {
    if (h % 4 == 0 && is_aligned(x, 16) && is_aligned(table, 16) &&
        is_aligned(bias, 4 * sizeof(T))) {
        embed_add_rows<T, 4>(x, bias, table, rows, h, table_rows);
    } else {
        embed_add_rows<T, 1>(x, bias, table, rows, h, table_rows);
    }
}

#define LDT_EMBED_ADD(SUFFIX, T)                                                              \
    extern "C" __global__ void __launch_bounds__(LDT_THREADS) embed_add_##SUFFIX(             \
        float* x, const T* bias, const float* table, int rows, int h, int table_rows) {       \
        embed_add<T>(x, bias, table, rows, h, table_rows);                                    \
    }

LDT_EMBED_ADD(f32, float)
LDT_EMBED_ADD(bf16, bf16_t)
LDT_EMBED_ADD(f16, half_t)
