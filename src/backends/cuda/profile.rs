//! Timing the forward phase by phase (events between phases of an eager forward), and the
//! device's measured ceilings (copy bandwidth, bf16 GEMM throughput) the phases are judged
//! against. Benchmarks print these; nothing here runs in a normal forward.

use super::blas::{Blas, Epilogue, GemmShape};
use super::device::device_error;
use super::weights::DeviceBuffer;
use crate::dtype::DType;
use crate::error::Result;
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaEvent, CudaStream};
use serde::Serialize;
use std::sync::Arc;

/// Records an event after each phase of a forward.
pub struct Profiler {
    stream: Arc<CudaStream>,
    start: CudaEvent,
    marks: Vec<(&'static str, CudaEvent)>,
}

impl Profiler {
    /// Starts timing on `stream`.
    pub fn new(stream: Arc<CudaStream>) -> Result<Self> {
        let start = stream
            .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(|e| device_error("recording a timing event", e))?;
        Ok(Profiler {
            stream,
            start,
            marks: Vec::new(),
        })
    }

    /// Ends phase `name` here.
    pub fn mark(&mut self, name: &'static str) -> Result<()> {
        let event = self
            .stream
            .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(|e| device_error("recording a timing event", e))?;
        self.marks.push((name, event));
        Ok(())
    }

    /// Waits for the stream; returns (phase, milliseconds, occurrences), summed by name, in
    /// order of first occurrence.
    pub fn finish(self) -> Result<Vec<(&'static str, f64, usize)>> {
        self.stream
            .synchronize()
            .map_err(|e| device_error("the profiled forward", e))?;
        let mut totals: Vec<(&'static str, f64, usize)> = Vec::new();
        let mut previous = &self.start;
        for (name, event) in &self.marks {
            let ms = previous
                .elapsed_ms(event)
                .map_err(|e| device_error("reading a timing event", e))?
                as f64;
            match totals.iter_mut().find(|(n, _, _)| n == name) {
                Some(entry) => {
                    entry.1 += ms;
                    entry.2 += 1;
                }
                None => totals.push((name, ms, 1)),
            }
            previous = event;
        }
        Ok(totals)
    }
}

/// The device's measured ceilings.
#[derive(Debug, Clone, Serialize)]
pub struct Ceilings {
    /// Device-to-device copy, bytes read + written per second, GB/s.
    pub copy_gb_per_s: f64,
    /// bf16 GEMM 8192³ through cuBLASLt, TFLOP/s.
    pub bf16_gemm_tflops: f64,
}

/// Times `f` (enqueued `iterations` times on `stream`) with events; milliseconds per call.
fn time(
    stream: &Arc<CudaStream>,
    iterations: usize,
    mut f: impl FnMut() -> Result<()>,
) -> Result<f64> {
    f()?;
    let start = stream
        .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
        .map_err(|e| device_error("timing", e))?;
    for _ in 0..iterations {
        f()?;
    }
    let end = stream
        .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
        .map_err(|e| device_error("timing", e))?;
    end.synchronize().map_err(|e| device_error("timing", e))?;
    let ms = start
        .elapsed_ms(&end)
        .map_err(|e| device_error("timing", e))? as f64;
    Ok(ms / iterations as f64)
}

/// Measures the copy bandwidth (1 GiB device-to-device) and the bf16 GEMM peak.
pub fn measure_ceilings(stream: &Arc<CudaStream>, blas: &mut Blas) -> Result<Ceilings> {
    let bytes = 1usize << 30;
    let (src, dst) = (
        DeviceBuffer::zeros(stream, bytes)?,
        DeviceBuffer::zeros(stream, bytes)?,
    );
    let copy_ms = time(stream, 10, || {
        // SAFETY: both buffers hold `bytes` bytes.
        unsafe {
            cudarc::driver::result::memcpy_dtod_async(
                dst.addr(),
                src.addr(),
                bytes,
                stream.cu_stream(),
            )
        }
        .map_err(|e| device_error("cuMemcpyDtoDAsync", e))
    })?;
    let n = 8192;
    let (a, w, c) = (
        DeviceBuffer::zeros(stream, n * n * 2)?,
        DeviceBuffer::zeros(stream, n * n * 2)?,
        DeviceBuffer::zeros(stream, n * n * 2)?,
    );
    let shape = GemmShape {
        rows: n,
        n,
        k: n,
        input: DType::BF16,
        output: DType::BF16,
        epilogue: Epilogue::None,
    };
    // SAFETY: the three buffers hold n×n bf16 values.
    let gemm_ms = time(stream, 10, || unsafe {
        blas.linear(shape, a.addr(), w.addr(), None, c.addr())
    })?;
    Ok(Ceilings {
        copy_gb_per_s: 2.0 * bytes as f64 / (copy_ms / 1e3) / 1e9,
        bf16_gemm_tflops: 2.0 * (n as f64).powi(3) / (gemm_ms / 1e3) / 1e12,
    })
}
