//! Every kernel against its CPU twin (the CPU backend's own functions), on random shapes
//! including ragged token counts (1, 7, 4097), in every storage type. Without a usable GPU
//! each test prints why and passes (CI has no device), unless `LINEAR_DIT_REQUIRE_GPU` is set
//! — as `scripts/gpu-check.sh` does on the GPU machine — which makes every skip a failure.
//! Kernel tests need the driver, a device and kernels for it (the fatbin or NVRTC); only the
//! GEMM tests need cuBLASLt as well.
//!
//! Inputs are rounded to the storage type first, so the comparison measures the kernel's
//! arithmetic and its output rounding only. Relative Frobenius tolerances: fp32 1e-5,
//! fp16 2e-3, bf16 1e-2 (one rounding of the output: 2^-11 resp. 2^-8 per value).

use super::blas::{Blas, Epilogue, GemmShape};
use super::device::devices;
use super::device_slice::Storage;
use super::launch_params::{
    EmbedAdd, LinearAttention, ModulationAffine, ModulationColumns, NormModulate, NormWeights,
    ResidualNormModulate, SmallLinear, SmallLinearInput, SmallLinearOutput,
};
use super::module::Kernels;
use super::ops::{FeatureMap, Ops};
use super::weights::{DeviceArray, storage_bytes};
use super::{kernels_unavailable_reason, skip_gpu_test, unavailable_reason};
use crate::backends::cpu::activation::{gelu_erf, gelu_tanh, silu};
use crate::backends::cpu::attention::{AttentionShape, linear_attention};
use crate::backends::cpu::conditioning::modulated_affine;
use crate::backends::cpu::linear::linear_rows;
use crate::backends::cpu::norm::{NormAffine, norm_rows, residual_rows};
use crate::backends::cpu::params::Linear;
use crate::dtype::{DType, decode_f32};
use crate::model::embedding::timestep_features;
use crate::model::{Config, Flavor, Gelu};
use crate::rng::NormalStream;
use crate::tensor::SharedF32;
use crate::test_support::rel_error;
use cudarc::driver::{CudaContext, CudaStream};
use std::sync::Arc;

const TYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

fn tolerance(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => 2e-3,
        DType::BF16 => 1e-2,
        DType::F32 | DType::I64 => 1e-5,
    }
}

/// A device, its stream and the loaded kernels.
struct Gpu {
    _ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    kernels: Kernels,
}

/// The device with its kernels, for kernel tests (no cuBLASLt needed).
fn gpu() -> Option<Gpu> {
    if let Some(reason) = kernels_unavailable_reason() {
        skip_gpu_test(&reason);
        return None;
    }
    open_gpu()
}

/// The device with its kernels, for tests that run GEMMs too (cuBLASLt needed).
fn gpu_with_blas() -> Option<Gpu> {
    if let Some(reason) = unavailable_reason() {
        skip_gpu_test(&reason);
        return None;
    }
    open_gpu()
}

fn open_gpu() -> Option<Gpu> {
    let info = devices().ok()?.remove(0);
    let ctx = CudaContext::new(0).expect("CUDA context");
    // SAFETY: the tests order all work on one stream.
    unsafe { ctx.disable_event_tracking() };
    let stream = ctx.new_stream().expect("stream");
    let kernels = Kernels::load(&ctx, info.compute_capability).expect("kernels");
    Some(Gpu {
        _ctx: ctx,
        stream,
        kernels,
    })
}

impl Gpu {
    fn ops(&self, dtype: DType) -> Ops {
        Ops::new(
            &self.kernels,
            dtype,
            FeatureMap::EluPlusOne,
            self.stream.clone(),
        )
        .expect("ops")
    }

    fn f32(&self, values: &[f32]) -> DeviceArray<f32> {
        DeviceArray::upload(&self.stream, values).expect("upload")
    }

    fn typed(&self, values: &[f32], dtype: DType) -> DeviceArray<Storage> {
        DeviceArray::upload_storage(&self.stream, values, dtype).expect("upload")
    }

    fn i64(&self, values: &[i64]) -> DeviceArray<i64> {
        DeviceArray::upload(&self.stream, values).expect("upload")
    }

    fn zeros_f32(&self, len: usize) -> DeviceArray<f32> {
        DeviceArray::zeros(&self.stream, len).expect("alloc")
    }

    fn zeros_typed(&self, len: usize, dtype: DType) -> DeviceArray<Storage> {
        DeviceArray::zeros_storage(&self.stream, len, dtype).expect("alloc")
    }

    fn read_f32(&self, buffer: &DeviceArray<f32>, n: usize) -> Vec<f32> {
        self.stream.synchronize().expect("kernel ran");
        let mut out = vec![0f32; n];
        // SAFETY: `buffer` holds at least n floats; the stream is idle.
        unsafe { cudarc::driver::result::memcpy_dtoh_sync(&mut out, buffer.slice().addr()) }
            .expect("download");
        out
    }

    fn read_typed(&self, buffer: &DeviceArray<Storage>, n: usize, dtype: DType) -> Vec<f32> {
        self.stream.synchronize().expect("kernel ran");
        let mut bytes = vec![0u8; n * dtype.size()];
        // SAFETY: as above.
        unsafe { cudarc::driver::result::memcpy_dtoh_sync(&mut bytes, buffer.slice().addr()) }
            .expect("download");
        from_storage(&bytes, dtype)
    }
}

fn from_storage(bytes: &[u8], dtype: DType) -> Vec<f32> {
    decode_f32(dtype, bytes).expect("a float storage type")
}

/// `values` as the storage type would hold them.
fn round(values: &[f32], dtype: DType) -> Vec<f32> {
    from_storage(&storage_bytes(values, dtype).unwrap(), dtype)
}

fn random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let stream = NormalStream::new(seed, 99);
    let mut v = vec![0f32; n];
    stream.fill(0, &mut v);
    v.iter_mut().for_each(|x| *x *= scale);
    v
}

fn check(what: &str, dtype: DType, got: &[f32], expected: &[f32]) {
    let err = rel_error(got, expected);
    println!("{what} [{}]: relative error {err:.2e}", dtype.name());
    assert!(
        err <= tolerance(dtype),
        "{what} [{}]: relative error {err:.3e} > {:e}",
        dtype.name(),
        tolerance(dtype)
    );
}

#[test]
fn linear_attention_matches_cpu_for_ragged_tokens_and_head_sizes() {
    let Some(gpu) = gpu() else { return };
    for dtype in TYPES {
        let ops = gpu.ops(dtype);
        for (batch, tokens, heads, d) in [
            (2, 1, 2, 64),
            (1, 7, 3, 32),
            (2, 4097, 2, 64),
            (1, 300, 2, 72),
            (1, 1000, 1, 128),
            (3, 256, 8, 64),
        ] {
            let shape = AttentionShape {
                batch,
                tokens,
                heads,
                head_dim: d,
            };
            let h = heads * d;
            let qkv = round(&random(batch * tokens * 3 * h, tokens as u64, 1.0), dtype);
            let mut expected = vec![0f32; batch * tokens * h];
            linear_attention(&qkv, &mut expected, shape);
            let chunk = super::ops::attention_chunk(tokens);
            let chunks = tokens.div_ceil(chunk);
            let q = gpu.typed(&qkv, dtype);
            let partial = gpu.zeros_f32(batch * heads * chunks * (d * d + d));
            let state = gpu.zeros_f32(batch * heads * (d * d + d));
            let out = gpu.zeros_typed(batch * tokens * h, dtype);
            let params = LinearAttention {
                qkv: q.slice(),
                partial: partial.slice(),
                state: state.slice(),
                out: out.slice(),
                batch,
                tokens,
                heads,
                head_dim: d,
                chunk,
            };
            // SAFETY: the buffers live until the stream is synchronised by the read below.
            unsafe { ops.linear_attention(params) }.unwrap();
            let got = gpu.read_typed(&out, batch * tokens * h, dtype);
            check(
                &format!("linear_attention B={batch} N={tokens} H={heads} d={d}"),
                dtype,
                &got,
                &expected,
            );
        }
    }
}

#[test]
fn norm_kernels_match_cpu() {
    let Some(gpu) = gpu() else { return };
    for dtype in TYPES {
        let ops = gpu.ops(dtype);
        for (batch, tokens, h) in [(2, 7, 512), (1, 1, 48), (3, 33, 1536), (1, 5, 2056)] {
            let rows = batch * tokens;
            let x = random(rows * h, 1, 2.0);
            let affine = NormAffine {
                scale: random(batch * h, 2, 0.5).iter().map(|v| 1.0 + v).collect(),
                shift: random(batch * h, 3, 0.5),
                eps: 1e-6,
            };
            let mut expected = vec![0f32; rows * h];
            norm_rows(&x, &mut expected, h, tokens, &affine);
            let (dx, scale, shift) = (gpu.f32(&x), gpu.f32(&affine.scale), gpu.f32(&affine.shift));
            let out = gpu.zeros_typed(rows * h, dtype);
            let params = NormModulate {
                x: dx.slice(),
                out: out.slice(),
                scale: scale.slice(),
                shift: shift.slice(),
                rows,
                hidden: h,
                tokens,
                eps: 1e-6,
            };
            // SAFETY: the buffers live until the stream is synchronised by the read below.
            unsafe { ops.norm_modulate(params) }.unwrap();
            check(
                &format!("norm_modulate R={rows} h={h}"),
                dtype,
                &gpu.read_typed(&out, rows * h, dtype),
                &expected,
            );

            // Gated residual fused with the next norm; the gate lives in a [B, 6h] matrix.
            let y = round(&random(rows * h, 4, 1.0), dtype);
            let bias = round(&random(h, 5, 0.3), dtype);
            let gates = random(batch * 6 * h, 6, 0.7);
            let gate: Vec<f32> = gates
                .chunks(6 * h)
                .flat_map(|g| g[2 * h..3 * h].to_vec())
                .collect();
            let mut x_cpu = x.clone();
            let mut expected = vec![0f32; rows * h];
            residual_rows(
                &mut x_cpu,
                &y,
                &bias,
                &gate,
                h,
                tokens,
                Some((&affine, &mut expected)),
            );
            let (dy, db, dg) = (
                gpu.typed(&y, dtype),
                gpu.typed(&bias, dtype),
                gpu.f32(&gates),
            );
            let params = ResidualNormModulate {
                x: dx.slice(),
                y: dy.slice(),
                bias: db.slice(),
                gate: dg.slice().skip(2 * h).unwrap(),
                gate_stride: 6 * h,
                out: out.slice(),
                scale: scale.slice(),
                shift: shift.slice(),
                rows,
                hidden: h,
                tokens,
                eps: 1e-6,
            };
            // SAFETY: the buffers live until the stream is synchronised by the reads below.
            unsafe { ops.residual_norm_modulate(params) }.unwrap();
            check(
                &format!("residual (x) R={rows} h={h}"),
                DType::F32,
                &gpu.read_f32(&dx, rows * h),
                &x_cpu,
            );
            check(
                &format!("residual_norm_modulate R={rows} h={h}"),
                dtype,
                &gpu.read_typed(&out, rows * h, dtype),
                &expected,
            );
        }
    }
}

#[test]
fn conditioning_kernels_match_cpu() {
    let Some(gpu) = gpu() else { return };
    for dtype in TYPES {
        let ops = gpu.ops(dtype);
        let (batch, h) = (5, 96);
        let t = [0.0f32, 1.5, 250.25, 999.0, 1000.0];
        for flavor in [Flavor::Dit, Flavor::Edifice] {
            let config = Config {
                hidden_size: h,
                num_heads: 4,
                flavor,
                num_steps: 1000,
                ..Config::new(8)
            };
            let f = config.time_freq_dim();
            let mut expected = vec![0f32; batch * f];
            for (row, &t) in expected.chunks_mut(f).zip(&t) {
                timestep_features(&config, t, row);
            }
            let (dt, out) = (gpu.f32(&t), gpu.zeros_f32(batch * f));
            let (t_view, out_view) = (dt.slice(), out.slice());
            // SAFETY: the buffers live until the stream is synchronised by the read below.
            match flavor {
                Flavor::Dit => unsafe { ops.timestep_features_dit(t_view, out_view, batch) },
                Flavor::Edifice => unsafe {
                    ops.timestep_features_edifice(t_view, out_view, batch, h / 2, 1000.0)
                },
            }
            .unwrap();
            check(
                &format!("timestep_features {flavor}"),
                DType::F32,
                &gpu.read_f32(&out, batch * f),
                &expected,
            );
        }

        // small_linear (with SiLU input and accumulation) against the CPU Linear.
        for (rows, inp, outp) in [(1, 256, 96), (5, 96, 3456), (13, 37, 61)] {
            let x = random(rows * inp, 7, 1.0);
            let w = round(&random(outp * inp, 8, 0.1), dtype);
            let bias = round(&random(outp, 9, 0.1), dtype);
            let linear = Linear {
                weight: SharedF32::from_vec(w.clone()),
                bias: SharedF32::from_vec(bias.clone()),
                out: outp,
                inp,
            };
            let activated: Vec<f32> = x.iter().map(|&v| silu(v)).collect();
            let base = random(rows * outp, 10, 1.0);
            let expected: Vec<f32> = linear_rows(&activated, rows, &linear)
                .iter()
                .zip(&base)
                .map(|(a, b)| a + b)
                .collect();
            let (dx, dw, db, out) = (
                gpu.f32(&x),
                gpu.typed(&w, dtype),
                gpu.typed(&bias, dtype),
                gpu.f32(&base),
            );
            let params = SmallLinear {
                x: dx.slice(),
                weight: dw.slice(),
                bias: db.slice(),
                out: out.slice(),
                rows,
                inputs: inp,
                outputs: outp,
                input: SmallLinearInput::Silu,
                output: SmallLinearOutput::Accumulate,
            };
            // SAFETY: the buffers live until the stream is synchronised by the read below.
            unsafe { ops.small_linear(params) }.unwrap();
            check(
                &format!("small_linear {rows}x{inp}->{outp}"),
                DType::F32,
                &gpu.read_f32(&out, rows * outp),
                &expected,
            );
        }

        // One-hot (labels outside [0, C) are the null class) and the class table.
        let y = [0i64, 3, 4, -1, 2];
        let dy = gpu.i64(&y);
        let onehot = gpu.zeros_f32(batch * 4);
        // SAFETY: the buffers live until the stream is synchronised by the read below.
        unsafe { ops.class_onehot(dy.slice(), onehot.slice(), batch, 4) }.unwrap();
        let expected: Vec<f32> = y
            .iter()
            .flat_map(|&l| (0..4).map(move |c| if l == c { 1.0 } else { 0.0 }))
            .collect();
        assert_eq!(gpu.read_f32(&onehot, batch * 4), expected);
        let table = round(&random(5 * h, 11, 1.0), dtype);
        let c0 = random(batch * h, 12, 1.0);
        let labels = [0i64, 4, 2, 1, 3];
        let expected: Vec<f32> = c0
            .iter()
            .enumerate()
            .map(|(i, &c)| c + table[labels[i / h] as usize * h + i % h])
            .collect();
        let (dc, dtab, dl) = (gpu.f32(&c0), gpu.typed(&table, dtype), gpu.i64(&labels));
        // SAFETY: the buffers live until the stream is synchronised by the read below; every
        // label indexes one of the table's 5 rows.
        unsafe { ops.add_class_embedding(dc.slice(), dtab.slice(), dl.slice(), batch, h) }.unwrap();
        check(
            "add_class_embedding",
            DType::F32,
            &gpu.read_f32(&dc, batch * h),
            &expected,
        );
    }
}

#[test]
fn elementwise_kernels_match_cpu() {
    let Some(gpu) = gpu() else { return };
    for dtype in TYPES {
        let ops = gpu.ops(dtype);
        for (rows, m) in [(1, 8), (7, 2048), (33, 41)] {
            let x = round(&random(rows * m, 13, 2.0), dtype);
            let bias = round(&random(m, 14, 0.5), dtype);
            for tanh in [true, false] {
                let (gelu, kind) = if tanh {
                    (gelu_tanh as fn(f32) -> f32, Gelu::Tanh)
                } else {
                    (gelu_erf as fn(f32) -> f32, Gelu::Erf)
                };
                let expected: Vec<f32> = x
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| gelu(v + bias[i % m]))
                    .collect();
                let (dx, db) = (gpu.typed(&x, dtype), gpu.typed(&bias, dtype));
                // SAFETY: the buffers live until the stream is synchronised by the read below.
                unsafe { ops.bias_gelu(dx.slice(), db.slice(), rows, m, kind) }.unwrap();
                check(
                    &format!("bias_gelu tanh={tanh} {rows}x{m}"),
                    dtype,
                    &gpu.read_typed(&dx, rows * m, dtype),
                    &expected,
                );
            }
        }
        // Cast, position add and the modulation fold.
        let (batch, tokens, h) = (3, 7, 64);
        let v = random(batch * tokens * h, 15, 3.0);
        let (dv, dt) = (gpu.f32(&v), gpu.zeros_typed(v.len(), dtype));
        // SAFETY: the buffers live until the stream is synchronised by the read below.
        unsafe { ops.cast_in(dv.slice(), dt.slice(), v.len()) }.unwrap();
        check(
            "cast_f32_to_T",
            dtype,
            &gpu.read_typed(&dt, v.len(), dtype),
            &round(&v, dtype),
        );
        let bias = round(&random(h, 16, 1.0), dtype);
        let table = random(tokens * h, 17, 1.0);
        let expected: Vec<f32> = v
            .iter()
            .enumerate()
            .map(|(i, &x)| x + bias[i % h] + table[(i / h % tokens) * h + i % h])
            .collect();
        let (dbias, dtable) = (gpu.typed(&bias, dtype), gpu.f32(&table));
        let params = EmbedAdd {
            x: dv.slice(),
            bias: dbias.slice(),
            table: dtable.slice(),
            rows: batch * tokens,
            hidden: h,
            table_rows: tokens,
        };
        // SAFETY: the buffers live until the stream is synchronised by the read below.
        unsafe { ops.embed_add(params) }.unwrap();
        check(
            "embed_add",
            DType::F32,
            &gpu.read_f32(&dv, v.len()),
            &expected,
        );

        let modulation = random(batch * 6 * h, 18, 0.5);
        let gamma = round(
            &random(h, 19, 0.1)
                .iter()
                .map(|g| 1.0 + g)
                .collect::<Vec<_>>(),
            dtype,
        );
        let beta = round(&random(h, 20, 0.1), dtype);
        let column = |k: usize| -> Vec<f32> {
            modulation
                .chunks(6 * h)
                .flat_map(|r| r[k * h..(k + 1) * h].to_vec())
                .collect()
        };
        let expected = modulated_affine(Some((&gamma, &beta)), &column(3), &column(4), h, 1e-5);
        let (dm, dg, db) = (
            gpu.f32(&modulation),
            gpu.typed(&gamma, dtype),
            gpu.typed(&beta, dtype),
        );
        let (scale, shift) = (gpu.zeros_f32(batch * h), gpu.zeros_f32(batch * h));
        let params = ModulationAffine {
            modulation: Some(ModulationColumns {
                matrix: dm.slice(),
                stride: 6 * h,
                shift_col: 3 * h,
                scale_col: 4 * h,
            }),
            norm: Some(NormWeights {
                gamma: dg.slice(),
                beta: db.slice(),
            }),
            scale_out: scale.slice(),
            shift_out: shift.slice(),
            samples: batch,
            hidden: h,
        };
        // SAFETY: the buffers live until the stream is synchronised by the reads below.
        unsafe { ops.modulation_affine(params) }.unwrap();
        check(
            "modulation_affine scale",
            DType::F32,
            &gpu.read_f32(&scale, batch * h),
            &expected.scale,
        );
        check(
            "modulation_affine shift",
            DType::F32,
            &gpu.read_f32(&shift, batch * h),
            &expected.shift,
        );
    }
}

#[test]
fn fp16_stores_saturate_instead_of_overflowing() {
    // The fp16 overflow policy (kernels/common.cuh): every store into fp16 clamps to ±65504,
    // both for plain casts and for computed values (GELU of a sum beyond the fp16 range).
    let Some(gpu) = gpu() else { return };
    let dtype = DType::F16;
    let ops = gpu.ops(dtype);
    let values = [1e6f32, -1e6, 65519.0, 7e4, 1.5, -0.25, 65504.0, f32::NAN];
    let expected = [65504.0f32, -65504.0, 65504.0, 65504.0, 1.5, -0.25, 65504.0];
    let (dv, dt) = (gpu.f32(&values), gpu.zeros_typed(values.len(), dtype));
    // SAFETY: the buffers live until the stream is synchronised by the read below.
    unsafe { ops.cast_in(dv.slice(), dt.slice(), values.len()) }.unwrap();
    let got = gpu.read_typed(&dt, values.len(), dtype);
    assert_eq!(&got[..7], &expected, "cast_f32_to_T in fp16");
    assert!(got[7].is_nan(), "NaN must stay NaN, got {}", got[7]);

    let (x, bias) = (vec![60000.0f32; 8], vec![60000.0f32; 8]);
    let (dx, db) = (gpu.typed(&x, dtype), gpu.typed(&bias, dtype));
    // SAFETY: the buffers live until the stream is synchronised by the read below.
    unsafe { ops.bias_gelu(dx.slice(), db.slice(), 1, 8, Gelu::Tanh) }.unwrap();
    let got = gpu.read_typed(&dx, 8, dtype);
    assert!(
        got.iter().all(|&v| v == 65504.0),
        "GELU(60000 + 60000) in fp16 must saturate at 65504, got {got:?}"
    );
}

#[test]
fn fp16_gemm_outputs_overflow_to_inf() {
    // The documented exception to the fp16 saturation policy (blas.rs): cuBLASLt stores a
    // product beyond ±65504 as ±inf (with or without the GELU epilogue), values in range
    // exactly. If this fails, cuBLASLt saturates after all: update blas.rs's documentation.
    let Some(gpu) = gpu_with_blas() else { return };
    let (k, n) = (16, 8);
    let x = vec![256.0f32; k];
    // Output column 0: +2^20, column 1: −2^20, columns 2…7: 256 (in range).
    let mut w = vec![1.0f32 / 16.0; n * k];
    w[..k].fill(256.0);
    w[k..2 * k].fill(-256.0);
    let dtype = DType::F16;
    let (dx, dw, bias) = (
        gpu.typed(&x, dtype),
        gpu.typed(&w, dtype),
        gpu.typed(&[0.0; 8], dtype),
    );
    let mut blas = Blas::new(gpu.stream.clone(), 9).expect("cuBLASLt");
    for (epilogue, negative) in [
        (Epilogue::None, f32::NEG_INFINITY),
        (Epilogue::GeluBias, 0.0),
    ] {
        let out = gpu.zeros_typed(n, dtype);
        let shape = GemmShape {
            rows: 1,
            n,
            k,
            input: DType::F16,
            output: DType::F16,
            epilogue,
        };
        let bias = (epilogue != Epilogue::None).then(|| bias.slice().addr());
        let (x, w, y) = (dx.slice().addr(), dw.slice().addr(), out.slice().addr());
        // SAFETY: buffers sized for this shape; the stream is synchronised before reading.
        unsafe { blas.linear(shape, x, w, bias, y) }.expect("GEMM");
        let got = gpu.read_typed(&out, n, dtype);
        println!("fp16 GEMM {epilogue:?}: {got:?}");
        assert_eq!(got[0], f32::INFINITY, "{epilogue:?}: {got:?}");
        assert_eq!(got[1], negative, "{epilogue:?}: {got:?}");
        assert!(
            got[2..].iter().all(|&v| v == 256.0),
            "{epilogue:?}: {got:?}"
        );
    }
}
