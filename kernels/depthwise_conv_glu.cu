// depthwise_conv_glu.cu: the middle of sana's Mix-FFN (diffusers' GLUMBConv), everything
// between the two 1×1 convs (GEMMs), in one pass:
//
//   depthwise_conv_glu_T(in, in_bias, weight, bias, out, batch, rows, cols, m)
//     a[b, y, x, c] = SiLU(in[b, y·cols + x, c] + in_bias[c])          c < 2m
//     d[b, y, x, c] = bias[c] + Σ_{di, dj ∈ 0…2} weight[c·9 + di·3 + dj] · a[b, y+di−1, x+dj−1, c]
//                     (a = 0 outside the rows × cols grid of sample b: zero padding)
//     out[b, y·cols + x, c] = d[…, c] · SiLU(d[…, m + c])              c < m
//
// in is the 1×1 conv h → 2m output, T [batch·rows·cols, 2m] token-major (tokens row-major on
// each sample's grid, sample b's tokens b·rows·cols …); out is T [batch·rows·cols, m]; weight
// is the depthwise conv's T [2m, 1, 3, 3], bias T [2m]; in_bias (T [2m]) is the 1×1 conv's
// bias when the GEMM did not add it, else null; bias may be null (no bias). The order is the
// CPU twin's and diffusers' (src/backends/cpu/sana/mix_ffn.rs): SiLU of the 1×1 conv output,
// then the depthwise conv with zero padding, then the split into (value, gate) halves,
// value ⊙ SiLU(gate). All fp32, one rounding into T at the store.
//
// Why the first SiLU (and the 1×1 conv's bias) is fused here: the [N, 2m] tensor is the
// largest activation of the block (2m = 5h for mlp_ratio 2.5); a separate bias + SiLU kernel
// would read and write it once more (and round it into T once more), while here it costs one
// expf per staged value. It is applied as the tile is staged, once per value per block (the
// halo re-stages 36 of every 100), never per tap.
//
// How. A block owns a tile of 8×8 grid positions and a slice of 32 channel pairs (value
// channels c0…c0+31 and their gates m+c0…): it stages SiLU(in + in_bias) of the 10×10 halo
// of both halves in shared memory as fp32 (zero outside the grid or past m), 128-bit loads
// when m % (16 / sizeof(T)) == 0 and in is 16-byte aligned, scalar otherwise. Thread
// (row r = tid / 32, channel c = tid % 32) then computes the 8 positions of tile row r for its
// channel pair, with its 18 taps and 2 biases in registers; the 32 lanes of a warp read 32
// consecutive shared floats (no bank conflicts) and store 32 consecutive channels. The block
// strides over tiles (x), slices (y) and samples (z).
//
// Launch: block LDT_THREADS (256), grid (ceil(cols / 8)·ceil(rows / 8), ceil(m / 32), batch)
// (any grid ≥ 1 is correct: the kernel strides over all three), no dynamic shared memory.
// Static shared memory: 10·10·64·4 = 25,600 bytes.

#include "common.cuh"

// Output tile: DWC_TILE × DWC_TILE grid positions, DWC_PAIRS channel pairs.
#define DWC_TILE 8
#define DWC_PAIRS 32
#define DWC_HALO (DWC_TILE + 2)
// Staged floats per halo position: the value half, then the gate half.
#define DWC_SLOTS (2 * DWC_PAIRS)

template <typename T> struct DwcArgs {
    const T* in;
    const T* in_bias;
    const T* weight;
    const T* bias;
    T* out;
    int batch;
    int rows;
    int cols;
    int m;
};

// Stages SiLU(in + in_bias) of the halo of tile (ty0, tx0), slice c0, sample b into sm
// [DWC_HALO²][DWC_SLOTS], NV channels per load.
template <typename T, int NV>
LDT_DEVICE void dwc_stage(const DwcArgs<T>& a, int b, int ty0, int tx0, int c0, float* sm) {
    constexpr int LP = DWC_SLOTS / NV;  // loads per halo position
    const long long ld = 2LL * a.m;
    const T* base = a.in + (long long)b * a.rows * a.cols * ld;
    for (int idx = threadIdx.x; idx < DWC_HALO * DWC_HALO * LP; idx += LDT_THREADS) {
        const int pos = idx / LP;
        const int k = (idx % LP) * NV;                  // slot of the first value
        const int ch = c0 + k % DWC_PAIRS;              // channel in its half
        const int col = ch + (k < DWC_PAIRS ? 0 : a.m);  // channel of in
        const int gy = ty0 + pos / DWC_HALO - 1;
        const int gx = tx0 + pos % DWC_HALO - 1;
        float f[NV];
        // With NV > 1, m % NV == 0 and ch % NV == 0: the NV channels are all < m or all ≥ m.
        if (gy >= 0 && gy < a.rows && gx >= 0 && gx < a.cols && ch < a.m) {
            load_vec<NV>(base + ((long long)gy * a.cols + gx) * ld + col, f);
#pragma unroll
            for (int e = 0; e < NV; ++e) {
                const float bv = a.in_bias != nullptr ? to_float(a.in_bias[col + e]) : 0.0f;
                f[e] = silu(f[e] + bv);
            }
        } else {
#pragma unroll
            for (int e = 0; e < NV; ++e) {
                f[e] = 0.0f;  // the conv's zero padding (of the SiLU output), or past m
            }
        }
#pragma unroll
        for (int e = 0; e < NV; ++e) {
            sm[pos * DWC_SLOTS + k + e] = f[e];
        }
    }
}

template <typename T, int NV> LDT_DEVICE void dwc_run(const DwcArgs<T>& a, float* sm) {
    const int tiles_x = (a.cols + DWC_TILE - 1) / DWC_TILE;
    const int tiles = tiles_x * ((a.rows + DWC_TILE - 1) / DWC_TILE);
    const int slices = (a.m + DWC_PAIRS - 1) / DWC_PAIRS;
    const int c = threadIdx.x % DWC_PAIRS;
    const int r = threadIdx.x / DWC_PAIRS;  // output row in the tile
    static_assert(LDT_THREADS / DWC_PAIRS == DWC_TILE, "one tile row per warp");
    for (int slice = blockIdx.y; slice < slices; slice += gridDim.y) {
        const int c0 = slice * DWC_PAIRS;
        const int cu = c0 + c;  // this thread's value channel; its gate is m + cu
        const bool active = cu < a.m;
        float wu[9], wg[9], bu = 0.0f, bg = 0.0f;
#pragma unroll
        for (int t = 0; t < 9; ++t) {
            wu[t] = active ? to_float(a.weight[(long long)cu * 9 + t]) : 0.0f;
            wg[t] = active ? to_float(a.weight[((long long)a.m + cu) * 9 + t]) : 0.0f;
        }
        if (active && a.bias != nullptr) {
            bu = to_float(a.bias[cu]);
            bg = to_float(a.bias[a.m + cu]);
        }
        for (int b = blockIdx.z; b < a.batch; b += gridDim.z) {
            T* obase = a.out + (long long)b * a.rows * a.cols * a.m;
            for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
                const int ty0 = tile / tiles_x * DWC_TILE;
                const int tx0 = tile % tiles_x * DWC_TILE;
                __syncthreads();  // the previous tile's reads of sm are done
                dwc_stage<T, NV>(a, b, ty0, tx0, c0, sm);
                __syncthreads();  // the halo is staged
                const int oy = ty0 + r;
                if (!active || oy >= a.rows) {
                    continue;
                }
#pragma unroll
                for (int x = 0; x < DWC_TILE; ++x) {
                    const int ox = tx0 + x;
                    if (ox >= a.cols) {
                        break;
                    }
                    float u = bu, g = bg;
#pragma unroll
                    for (int di = 0; di < 3; ++di) {
#pragma unroll
                        for (int dj = 0; dj < 3; ++dj) {
                            const float* s = sm + ((r + di) * DWC_HALO + x + dj) * DWC_SLOTS;
                            u += wu[di * 3 + dj] * s[c];
                            g += wg[di * 3 + dj] * s[DWC_PAIRS + c];
                        }
                    }
                    obase[((long long)oy * a.cols + ox) * a.m + cu] = from_float<T>(u * silu(g));
                }
            }
        }
    }
}

template <typename T> LDT_DEVICE void depthwise_conv_glu(const DwcArgs<T>& a) {
    __shared__ __align__(16) float sm[DWC_HALO * DWC_HALO * DWC_SLOTS];
    if (a.m % Vec16<T>::N == 0 && is_aligned(a.in, 16)) {
        dwc_run<T, Vec16<T>::N>(a, sm);
    } else {
        dwc_run<T, 1>(a, sm);
    }
}

#define LDT_DEPTHWISE_CONV_GLU(SUFFIX, T)                                                     \
    extern "C" __global__ void __launch_bounds__(LDT_THREADS)                                 \
        depthwise_conv_glu_##SUFFIX(const T* in, const T* in_bias, const T* weight,           \
                                    const T* bias, T* out, int batch, int rows, int cols,     \
                                    int m) {                                                  \
        const DwcArgs<T> a = {in, in_bias, weight, bias, out, batch, rows, cols, m};          \
        depthwise_conv_glu<T>(a);                                                             \
    }

LDT_DEPTHWISE_CONV_GLU(f32, float)
LDT_DEPTHWISE_CONV_GLU(bf16, bf16_t)
LDT_DEPTHWISE_CONV_GLU(f16, half_t)
