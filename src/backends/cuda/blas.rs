//! GEMMs through cuBLASLt: bf16/fp16 (or fp32) inputs, fp32 accumulation, bias and GELU
//! fused as epilogues. Each distinct shape gets a plan — descriptors, layouts and the
//! algorithm cuBLASLt's heuristic picks — made once and reused by every later call (and by
//! CUDA-graph capture, which needs no allocation: the workspace is preallocated).
//!
//! Layout: our tensors are row-major and a Linear weight is `[out, in]`, so `Y = X Wᵀ` is, in
//! cuBLASLt's column-major terms, `Yᵀ (out × rows) = W (in × out)ᵀ · Xᵀ (in × rows)`:
//! A = W with TRANSA = T, B = X, D = Y, all with their natural leading dimensions.
//!
//! Numerics: products accumulate in fp32 (`CUBLAS_COMPUTE_32F`, no TF32), and when the
//! heuristic splits K the partial sums are reduced in fp32 too ([`reduction_scheme_mask`]).
//! The `GELU_BIAS` epilogue's accuracy is not documented, so only the bf16/fp16 paths use it;
//! the fp32 reference path applies our own bias + GELU kernel after a plain GEMM.
//!
//! **fp16 outputs are the one exception to the fp16 saturation policy** of `kernels/README.md`
//! (every store into fp16 clamps to ±65504): cuBLASLt converts its fp32 result to fp16 with
//! IEEE round-to-nearest, so a product beyond ±65504 is stored as ±inf. No cuBLASLt epilogue
//! clamps, `kernels/` has no in-place fp16 clamp, and writing fp32 to cast it afterwards would
//! double the memory traffic of every fp16 GEMM for inputs no sane weights produce. So we keep
//! the inf on purpose: every consumer (attention, the residual, the next GEMM) turns it into
//! an inf or NaN in eps, which `Model::forward` reports as a non-finite-output error instead
//! of returning silently saturated values. The GPU test `fp16_gemm_outputs_overflow_to_inf`
//! pins this behaviour down.

use super::device::{device_error, internal_error};
use crate::dtype::DType;
use crate::error::Result;
use cudarc::cublaslt::result as lt;
use cudarc::cublaslt::sys;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
use std::collections::HashMap;
use std::ffi::c_void;
use std::mem::size_of;
use std::sync::Arc;

/// The cuBLASLt data type of a GEMM operand.
fn cuda_data_type(dtype: DType) -> sys::cudaDataType {
    match dtype {
        DType::F32 => sys::cudaDataType_t::CUDA_R_32F,
        DType::BF16 => sys::cudaDataType_t::CUDA_R_16BF,
        DType::F16 => sys::cudaDataType_t::CUDA_R_16F,
        DType::I64 => sys::cudaDataType_t::CUDA_R_64I,
    }
}

/// What cuBLASLt applies to the product before storing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Epilogue {
    /// Nothing.
    None,
    /// `+ bias` (bias in the output type).
    Bias,
    /// `GELU(· + bias)`, tanh approximation (DiT's GELU).
    GeluBias,
}

/// A GEMM shape: `out [rows, n] = x [rows, k] · w [n, k]ᵀ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GemmShape {
    /// Rows of x and out (tokens).
    pub rows: usize,
    /// Output features.
    pub n: usize,
    /// Input features.
    pub k: usize,
    /// Type of x and w.
    pub input: DType,
    /// Type of out (and bias).
    pub output: DType,
    /// The epilogue.
    pub epilogue: Epilogue,
}

/// A strided-batched GEMM in cuBLASLt's column-major terms: `batch` times,
/// `D (m × n) = op(A) (m × k) · op(B) (k × n)`, each operand's next matrix `stride_*` elements
/// after the previous, fp32 accumulation, no epilogue. `op(A)` is `Aᵀ` when `transpose_a`
/// (A stored `k × m`), else A (stored `m × k`); likewise B. Leading dimensions are in
/// elements and at least the stored rows. sana's cross-attention runs its per-head products
/// as one such GEMM per sample: the heads are columns `j·d …` of one row-major matrix, so
/// head j's block is `d` elements after head j − 1's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchedGemmShape {
    /// Rows of op(A) and D.
    pub m: usize,
    /// Columns of op(B) and D.
    pub n: usize,
    /// The inner dimension.
    pub k: usize,
    /// Whether A is read transposed.
    pub transpose_a: bool,
    /// Whether B is read transposed.
    pub transpose_b: bool,
    /// Leading dimension of A as stored.
    pub lda: usize,
    /// Leading dimension of B as stored.
    pub ldb: usize,
    /// Leading dimension of D.
    pub ldd: usize,
    /// Elements from one A to the next.
    pub stride_a: usize,
    /// Elements from one B to the next.
    pub stride_b: usize,
    /// Elements from one D to the next.
    pub stride_d: usize,
    /// Matrices.
    pub batch: usize,
    /// Type of A and B.
    pub input: DType,
    /// Type of D.
    pub output: DType,
    /// Bytes every operand's address is a multiple of, for every matrix of the batch (the
    /// heuristic otherwise assumes 256 and may pick an algorithm that faults on the heads'
    /// offsets of `d` elements).
    pub alignment: u32,
}

/// The largest power of two (at most 256) dividing every one of `offsets` (bytes; zeros
/// ignored): the alignment of addresses that differ from a 256-aligned base by sums of them.
pub fn common_alignment(offsets: &[usize]) -> u32 {
    offsets
        .iter()
        .filter(|&&v| v != 0)
        .map(|&v| 1u32 << v.trailing_zeros().min(8))
        .min()
        .unwrap_or(256)
}

impl BatchedGemmShape {
    /// (rows, columns) of A, B and D as stored.
    fn stored(&self) -> [(usize, usize); 3] {
        let a = if self.transpose_a {
            (self.k, self.m)
        } else {
            (self.m, self.k)
        };
        let b = if self.transpose_b {
            (self.n, self.k)
        } else {
            (self.k, self.n)
        };
        [a, b, (self.m, self.n)]
    }

    /// Elements each operand's buffer must hold — A, B, D — from its first element to the
    /// last one the GEMM touches (column-major: `(cols − 1)·ld + rows` per matrix, the last
    /// matrix `(batch − 1)·stride` in); an error when a leading dimension is below its rows
    /// or a size overflows.
    pub fn extents(&self) -> Result<[usize; 3]> {
        let strides = [self.stride_a, self.stride_b, self.stride_d];
        let lds = [self.lda, self.ldb, self.ldd];
        let mut out = [0usize; 3];
        for (i, ((rows, cols), (ld, stride))) in self
            .stored()
            .into_iter()
            .zip(lds.into_iter().zip(strides))
            .enumerate()
        {
            if ld < rows.max(1) {
                return Err(internal_error(format!(
                    "batched GEMM {self:?}: leading dimension {ld} below {rows} rows"
                )));
            }
            let one = cols
                .checked_sub(1)
                .map_or(Some(0), |c| c.checked_mul(ld)?.checked_add(rows));
            let all = self
                .batch
                .checked_sub(1)
                .map_or(Some(0), |b| b.checked_mul(stride)?.checked_add(one?));
            out[i] = all.ok_or_else(|| {
                internal_error(format!("batched GEMM {self:?}: extent overflows"))
            })?;
        }
        Ok(out)
    }
}

/// Descriptors and algorithm of one GEMM shape.
struct GemmPlan {
    desc: sys::cublasLtMatmulDesc_t,
    a: sys::cublasLtMatrixLayout_t,
    b: sys::cublasLtMatrixLayout_t,
    d: sys::cublasLtMatrixLayout_t,
    algo: sys::cublasLtMatmulAlgo_t,
}

impl Drop for GemmPlan {
    fn drop(&mut self) {
        // SAFETY: created by this plan and destroyed once; errors at teardown are ignored.
        unsafe {
            let _ = lt::destroy_matrix_layout(self.a);
            let _ = lt::destroy_matrix_layout(self.b);
            let _ = lt::destroy_matrix_layout(self.d);
            let _ = lt::destroy_matmul_desc(self.desc);
        }
    }
}

/// A cuBLASLt handle, its workspace, and the plans made so far.
pub struct Blas {
    handle: sys::cublasLtHandle_t,
    workspace: CudaSlice<u8>,
    stream: Arc<CudaStream>,
    plans: HashMap<GemmShape, GemmPlan>,
    batched_plans: HashMap<BatchedGemmShape, GemmPlan>,
}

// SAFETY: the handle and descriptors are used by one thread at a time (the backend's
// state is behind a mutex); cuBLASLt handles may move between threads.
unsafe impl Send for Blas {}

impl Drop for Blas {
    fn drop(&mut self) {
        self.plans.clear();
        self.batched_plans.clear();
        // SAFETY: created in `new`, destroyed once.
        let _ = unsafe { lt::destroy_handle(self.handle) };
    }
}

/// cuBLASLt's recommended workspace: 32 MiB on Hopper, 4 MiB before.
fn workspace_bytes(major: i32) -> usize {
    if major >= 9 { 32 << 20 } else { 4 << 20 }
}

impl Blas {
    /// A handle issuing work on `stream`.
    pub fn new(stream: Arc<CudaStream>, compute_major: i32) -> Result<Self> {
        let handle = lt::create_handle().map_err(|e| device_error("cublasLtCreate", e))?;
        let workspace = stream
            .alloc_zeros::<u8>(workspace_bytes(compute_major))
            .map_err(|e| device_error("allocating the cuBLASLt workspace", e))?;
        Ok(Blas {
            handle,
            workspace,
            stream,
            plans: HashMap::new(),
            batched_plans: HashMap::new(),
        })
    }

    /// The strided-batched GEMM `shape` (see [`BatchedGemmShape`]) with raw device
    /// pointers, D's previous contents ignored (β = 0).
    ///
    /// # Safety
    /// Each pointer must address a device buffer of at least the elements
    /// [`BatchedGemmShape::extents`] gives for it, valid until the stream has run; D must
    /// not overlap A or B.
    pub unsafe fn batched(
        &mut self,
        shape: BatchedGemmShape,
        a: u64,
        b: u64,
        d: u64,
    ) -> Result<()> {
        if !self.batched_plans.contains_key(&shape) {
            let plan = self.batched_plan(shape)?;
            self.batched_plans.insert(shape, plan);
        }
        let plan = &self.batched_plans[&shape];
        // SAFETY: the plan's descriptors match the pointers' buffers (caller's contract).
        unsafe { self.matmul(plan, a, b, d, &shape) }
    }

    /// `d = a · b` by `plan` on the stream (alpha 1, beta 0; `what` names the shape in errors).
    ///
    /// # Safety
    /// `a`, `b` and `d` address live device buffers of the sizes and types `plan`'s
    /// descriptors describe, until the stream has run the call.
    unsafe fn matmul(
        &self,
        plan: &GemmPlan,
        a: u64,
        b: u64,
        d: u64,
        what: &dyn std::fmt::Debug,
    ) -> Result<()> {
        let (alpha, beta) = (1.0f32, 0.0f32);
        let (workspace, _sync) = self.workspace.device_ptr(&self.stream);
        // SAFETY: the plan's descriptors match the pointers' buffers (the caller's contract).
        unsafe {
            lt::matmul(
                self.handle,
                plan.desc,
                (&alpha) as *const f32 as *const c_void,
                (&beta) as *const f32 as *const c_void,
                a as *const c_void,
                plan.a,
                b as *const c_void,
                plan.b,
                d as *const c_void,
                plan.d,
                d as *mut c_void,
                plan.d,
                &plan.algo,
                workspace as *mut c_void,
                self.workspace.len(),
                self.stream.cu_stream() as *mut _,
            )
        }
        .map_err(|e| device_error(&format!("cublasLtMatmul {what:?}"), e))
    }

    /// Builds the descriptors of the batched `shape`, each layout with its batch count and
    /// stride, and asks the heuristic for its best algorithm.
    fn batched_plan(&self, shape: BatchedGemmShape) -> Result<GemmPlan> {
        let what = format!("{shape:?}");
        let fail = |step: &'static str| {
            let what = what.clone();
            move |e| device_error(&format!("{step} for {what}"), e)
        };
        let to_i32 = |v: usize, name: &str| {
            i32::try_from(v)
                .map_err(|_| internal_error(format!("batched GEMM {name} = {v} exceeds int32")))
        };
        let batch = to_i32(shape.batch, "batch")?;
        let desc = lt::create_matmul_desc(
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            sys::cudaDataType_t::CUDA_R_32F,
        )
        .map_err(fail("cublasLtMatmulDescCreate"))?;
        let [a, b, d] = shape.stored();
        let types = [shape.input, shape.input, shape.output];
        let lds = [shape.lda, shape.ldb, shape.ldd];
        let strides = [shape.stride_a, shape.stride_b, shape.stride_d];
        let mut layouts = Vec::with_capacity(3);
        for (((rows, cols), t), (ld, stride)) in [a, b, d]
            .into_iter()
            .zip(types)
            .zip(lds.into_iter().zip(strides))
        {
            let layout =
                lt::create_matrix_layout(cuda_data_type(t), rows as u64, cols as u64, ld as i64)
                    .map_err(fail("cublasLtMatrixLayoutCreate"))?;
            layouts.push(layout);
            let stride = stride as i64;
            use sys::cublasLtMatrixLayoutAttribute_t as L;
            // SAFETY: the layout is live; BATCH_COUNT is an int32_t, STRIDED_BATCH_OFFSET an
            // int64_t (cuBLASLt's documented attribute types).
            unsafe {
                lt::set_matrix_layout_attribute(
                    layout,
                    L::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                    (&batch) as *const i32 as *const c_void,
                    size_of::<i32>(),
                )
                .and_then(|_| {
                    lt::set_matrix_layout_attribute(
                        layout,
                        L::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                        (&stride) as *const i64 as *const c_void,
                        size_of::<i64>(),
                    )
                })
            }
            .map_err(fail("the batch layout"))?;
        }
        let mut plan = GemmPlan {
            desc,
            a: layouts[0],
            b: layouts[1],
            d: layouts[2],
            // SAFETY: plain-old-data, overwritten by the heuristic below.
            algo: unsafe { std::mem::zeroed() },
        };
        let set = |attr: sys::cublasLtMatmulDescAttributes_t, value: i32| {
            // SAFETY: the descriptor is live; every attribute set here is a 32-bit enum.
            unsafe {
                lt::set_matmul_desc_attribute(
                    desc,
                    attr,
                    (&value) as *const i32 as *const c_void,
                    size_of::<i32>(),
                )
            }
        };
        use sys::cublasLtMatmulDescAttributes_t as D;
        set(D::CUBLASLT_MATMUL_DESC_TRANSA, shape.transpose_a as i32).map_err(fail("TRANSA"))?;
        set(D::CUBLASLT_MATMUL_DESC_TRANSB, shape.transpose_b as i32).map_err(fail("TRANSB"))?;
        plan.algo = self.heuristic(&plan, &what, Some(shape.alignment))?;
        tracing::debug!(?shape, "cuBLASLt batched plan cached");
        Ok(plan)
    }

    /// `out = x · wᵀ` (+ epilogue) with raw device pointers.
    ///
    /// # Safety
    /// The pointers must address device buffers of the sizes `shape` implies (and `bias` one
    /// of `shape.n` elements when the epilogue uses it), valid until the stream has run.
    pub unsafe fn linear(
        &mut self,
        shape: GemmShape,
        x: u64,
        w: u64,
        bias: Option<u64>,
        out: u64,
    ) -> Result<()> {
        if !self.plans.contains_key(&shape) {
            let plan = self.plan(shape)?;
            self.plans.insert(shape, plan);
        }
        let plan = &self.plans[&shape];
        if let Some(bias) = bias {
            // SAFETY: `plan.desc` is live; the attribute is a device pointer.
            unsafe {
                lt::set_matmul_desc_attribute(
                    plan.desc,
                    sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                    (&bias) as *const u64 as *const c_void,
                    size_of::<u64>(),
                )
            }
            .map_err(|e| device_error("setting the GEMM bias", e))?;
        }
        // SAFETY: the plan's descriptors match the pointers' buffers (caller's contract).
        unsafe { self.matmul(plan, w, x, out, &shape) }
    }

    /// Builds the descriptors of `shape` and asks the heuristic for its best algorithm.
    fn plan(&self, shape: GemmShape) -> Result<GemmPlan> {
        let fail = |what: &'static str| move |e| device_error(&format!("{what} for {shape:?}"), e);
        let desc = lt::create_matmul_desc(
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            sys::cudaDataType_t::CUDA_R_32F,
        )
        .map_err(fail("cublasLtMatmulDescCreate"))?;
        let (k, n, rows) = (shape.k as u64, shape.n as u64, shape.rows as u64);
        let make =
            |t: DType, r: u64, c: u64| lt::create_matrix_layout(cuda_data_type(t), r, c, r as i64);
        let mut plan = GemmPlan {
            desc,
            a: make(shape.input, k, n).map_err(fail("layout A"))?,
            b: make(shape.input, k, rows).map_err(fail("layout B"))?,
            d: make(shape.output, n, rows).map_err(fail("layout D"))?,
            // SAFETY: plain-old-data, overwritten by the heuristic below.
            algo: unsafe { std::mem::zeroed() },
        };
        let set = |attr: sys::cublasLtMatmulDescAttributes_t, value: i32| {
            // SAFETY: the descriptor is live; every attribute set here is a 32-bit enum.
            unsafe {
                lt::set_matmul_desc_attribute(
                    desc,
                    attr,
                    (&value) as *const i32 as *const c_void,
                    size_of::<i32>(),
                )
            }
        };
        use sys::cublasLtMatmulDescAttributes_t as D;
        set(D::CUBLASLT_MATMUL_DESC_TRANSA, 1).map_err(fail("TRANSA"))?;
        set(D::CUBLASLT_MATMUL_DESC_TRANSB, 0).map_err(fail("TRANSB"))?;
        let epilogue = match shape.epilogue {
            Epilogue::None => sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_DEFAULT,
            Epilogue::Bias => sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS,
            Epilogue::GeluBias => sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_GELU_BIAS,
        };
        set(D::CUBLASLT_MATMUL_DESC_EPILOGUE, epilogue as i32).map_err(fail("EPILOGUE"))?;
        if shape.epilogue != Epilogue::None {
            set(
                D::CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                cuda_data_type(shape.output) as i32,
            )
            .map_err(fail("BIAS_DATA_TYPE"))?;
        }
        plan.algo = self.heuristic(&plan, &format!("{shape:?}"), None)?;
        tracing::debug!(?shape, "cuBLASLt plan cached");
        Ok(plan)
    }

    /// The heuristic's best algorithm for `plan` (`what` names the shape in errors), within
    /// the workspace, with split-K partials reduced in fp32 only, and — with `alignment` —
    /// for operand addresses only that many bytes aligned (cuBLASLt's default is 256).
    fn heuristic(
        &self,
        plan: &GemmPlan,
        what: &str,
        alignment: Option<u32>,
    ) -> Result<sys::cublasLtMatmulAlgo_t> {
        let fail = |step: &'static str| move |e| device_error(&format!("{step} for {what}"), e);
        let pref = lt::create_matmul_pref().map_err(fail("cublasLtMatmulPreferenceCreate"))?;
        let bytes = self.workspace.len();
        let reduction = reduction_scheme_mask();
        use sys::cublasLtMatmulPreferenceAttributes_t as P;
        // SAFETY: `pref` is live; the workspace size is a usize (size_t), the reduction scheme
        // mask a u32 (uint32_t).
        let heuristic = unsafe {
            lt::set_matmul_pref_attribute(
                pref,
                P::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&bytes) as *const usize as *const c_void,
                size_of::<usize>(),
            )
            .and_then(|_| {
                lt::set_matmul_pref_attribute(
                    pref,
                    P::CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                    (&reduction) as *const u32 as *const c_void,
                    size_of::<u32>(),
                )
            })
            .and_then(|_| {
                let Some(alignment) = alignment else {
                    return Ok(());
                };
                [
                    P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                    P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                    P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                    P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                ]
                .into_iter()
                .try_for_each(|attr| {
                    // The attribute is a uint32_t.
                    lt::set_matmul_pref_attribute(
                        pref,
                        attr,
                        (&alignment) as *const u32 as *const c_void,
                        size_of::<u32>(),
                    )
                })
            })
            .and_then(|_| {
                lt::get_matmul_algo_heuristic(
                    self.handle,
                    plan.desc,
                    plan.a,
                    plan.b,
                    plan.d,
                    plan.d,
                    pref,
                )
            })
        };
        // SAFETY: created above.
        let _ = unsafe { lt::destroy_matmul_pref(pref) };
        Ok(heuristic.map_err(fail("no cuBLASLt algorithm"))?.algo)
    }
}

/// The split-K reduction schemes the heuristic may pick: none, or partial sums kept in the
/// compute type (fp32) in the workspace. `INPLACE` and `OUTPUT_TYPE` add the partials up in
/// the output type — bf16 or fp16 — which would throw away the fp32 accumulation.
pub fn reduction_scheme_mask() -> u32 {
    sys::cublasLtReductionScheme_t::CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use sys::cublasLtReductionScheme_t as R;

    fn cross_scores(texts: usize, tokens: usize, heads: usize, d: usize) -> BatchedGemmShape {
        BatchedGemmShape {
            m: texts,
            n: tokens,
            k: d,
            transpose_a: true,
            transpose_b: false,
            lda: heads * d,
            ldb: heads * d,
            ldd: texts,
            stride_a: d,
            stride_b: d,
            stride_d: tokens * texts,
            batch: heads,
            input: DType::BF16,
            output: DType::F32,
            alignment: 2,
        }
    }

    #[test]
    fn alignment_is_the_largest_power_of_two_dividing_every_offset() {
        assert_eq!(common_alignment(&[16, 64]), 16);
        assert_eq!(common_alignment(&[16, 10]), 2);
        assert_eq!(common_alignment(&[0, 4096]), 256);
        assert_eq!(common_alignment(&[]), 256);
        assert_eq!(common_alignment(&[224, 4480]), 32);
    }

    #[test]
    fn batched_extents_end_at_the_last_element_touched() {
        // Scores of 3 heads of d = 4 over 5 captions and 7 tokens: K [5, 12] and Q [7, 12]
        // read at columns j·4 …, scores [3, 7, 5].
        let shape = cross_scores(5, 7, 3, 4);
        // A: the last head's 4 × 5 block starts at 8, its last column at 4·12: 8 + 48 + 4.
        assert_eq!(shape.extents().unwrap(), [60, 8 + 6 * 12 + 4, 3 * 35]);
        let mut bad = shape;
        bad.lda = 3;
        assert!(bad.extents().is_err());
        let mut huge = shape;
        huge.batch = usize::MAX;
        assert!(huge.extents().is_err());
    }

    #[test]
    fn split_k_partials_are_reduced_in_fp32_only() {
        let mask = reduction_scheme_mask();
        assert_ne!(mask & R::CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE as u32, 0);
        assert_eq!(mask & R::CUBLASLT_REDUCTION_SCHEME_INPLACE as u32, 0);
        assert_eq!(mask & R::CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE as u32, 0);
    }
}
