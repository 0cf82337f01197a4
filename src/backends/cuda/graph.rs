//! The CUDA-graph state machine of one forward shape: eager warm-up, one capture, replays
//! from then on — or eager for good once a capture has failed — and the dit position table a
//! captured graph reads, kept alive with it.

use super::GraphStats;
use super::device::device_error;
use super::weights::DeviceArray;
use crate::error::Result;
use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{CudaGraph, CudaStream};
use std::sync::Arc;

/// Whether a forward is timed phase by phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// Not timed: the serving path.
    Untimed,
    /// Eager, with an event after each phase (benchmarks).
    PhaseByPhase,
}

/// Whether CUDA graphs may be used (`CudaBackend::set_graphs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphUse {
    /// Capture and replay.
    On,
    /// Launch kernel by kernel only.
    Off,
}

/// How the forward's work is launched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// Kernel by kernel.
    Eager,
    /// Captured as a CUDA graph, then launched.
    Capture,
    /// The shape's captured graph, launched again.
    Replay,
}

/// What a shape's forwards did so far, as far as graphs are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphHistory {
    /// A graph is captured.
    pub captured: bool,
    /// Eager forwards run so far.
    pub eager_runs: usize,
    /// A capture failed once.
    pub capture_failed: bool,
}

/// How to launch a forward: eagerly when timing (phases are timed between launches) or with
/// graphs off — even if a graph was captured before, so that `set_graphs(false)` means no
/// graph runs —, by replay when a graph is captured, by capture once the shape has run
/// eagerly (everything it needs resolved) and capture has not failed before.
pub fn launch_mode(timing: Timing, graphs: GraphUse, history: GraphHistory) -> Launch {
    if timing == Timing::PhaseByPhase || graphs == GraphUse::Off {
        Launch::Eager
    } else if history.captured {
        Launch::Replay
    } else if history.eager_runs >= 1 && !history.capture_failed {
        Launch::Capture
    } else {
        Launch::Eager
    }
}

/// One shape's graph, once captured, and what led to it.
#[derive(Default)]
pub struct GraphCapture {
    graph: Option<CudaGraph>,
    eager_runs: usize,
    capture_failed: bool,
    /// The position table the graph was captured with and reads (a grid of the same token
    /// count reads another): held here so that evicting it from the cache cannot free memory
    /// a graph still reads.
    positions: Option<Arc<DeviceArray<f32>>>,
}

impl GraphCapture {
    /// Drops the captured graph (it is captured again when graphs are used next).
    pub fn drop_graph(&mut self) {
        self.graph = None;
        self.positions = None;
    }

    /// Drops a graph captured with another position table than `positions`: it reads that
    /// table (which this capture keeps alive, so its address cannot have been reused).
    pub fn forget_other_positions(&mut self, positions: Option<&Arc<DeviceArray<f32>>>) {
        let address = |p: Option<&Arc<DeviceArray<f32>>>| p.map_or(0, |p| p.slice().addr());
        if self.graph.is_some() && address(self.positions.as_ref()) != address(positions) {
            self.drop_graph();
        }
    }

    /// What happened so far.
    pub fn history(&self) -> GraphHistory {
        GraphHistory {
            captured: self.graph.is_some(),
            eager_runs: self.eager_runs,
            capture_failed: self.capture_failed,
        }
    }

    /// Runs the forward on `stream` as `mode` says: `enqueue` launches it kernel by kernel
    /// (eagerly, or under capture); `positions` is the table it reads, kept with a new
    /// graph; `shape` (batch, tokens) is for the log.
    pub fn launch(
        &mut self,
        mode: Launch,
        stream: &Arc<CudaStream>,
        positions: Option<Arc<DeviceArray<f32>>>,
        stats: &mut GraphStats,
        shape: (usize, usize),
        mut enqueue: impl FnMut() -> Result<()>,
    ) -> Result<()> {
        match (mode, &self.graph) {
            (Launch::Replay, Some(graph)) => {
                graph
                    .launch()
                    .map_err(|e| device_error("launching the CUDA graph", e))?;
                stats.replays += 1;
            }
            (Launch::Capture, _) => match capture(stream, &mut enqueue) {
                Ok(graph) => {
                    graph
                        .launch()
                        .map_err(|e| device_error("launching the CUDA graph", e))?;
                    tracing::debug!(
                        batch = shape.0,
                        tokens = shape.1,
                        "captured the forward as a CUDA graph"
                    );
                    self.graph = Some(graph);
                    self.positions = positions;
                    stats.captures += 1;
                    stats.replays += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "CUDA graph capture failed; running eagerly from now on");
                    self.capture_failed = true;
                    enqueue()?;
                }
            },
            (Launch::Eager | Launch::Replay, _) => {
                enqueue()?;
                self.eager_runs += 1;
            }
        }
        Ok(())
    }
}

/// Captures what `enqueue` launches on `stream` as a graph.
fn capture(
    stream: &Arc<CudaStream>,
    enqueue: &mut impl FnMut() -> Result<()>,
) -> Result<CudaGraph> {
    stream
        .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .map_err(|e| device_error("beginning graph capture", e))?;
    let enqueued = enqueue();
    let graph = stream.end_capture(CUgraphInstantiate_flags(0));
    enqueued?;
    graph
        .map_err(|e| device_error("ending graph capture", e))?
        .ok_or_else(|| device_error("graph capture", "captured nothing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(captured: bool, eager_runs: usize, capture_failed: bool) -> GraphHistory {
        GraphHistory {
            captured,
            eager_runs,
            capture_failed,
        }
    }

    #[test]
    fn no_graph_runs_when_graphs_are_off_or_profiling() {
        for captured in [false, true] {
            for eager_runs in [0, 1, 5] {
                assert_eq!(
                    launch_mode(
                        Timing::Untimed,
                        GraphUse::Off,
                        history(captured, eager_runs, false)
                    ),
                    Launch::Eager
                );
                assert_eq!(
                    launch_mode(
                        Timing::PhaseByPhase,
                        GraphUse::On,
                        history(captured, eager_runs, false)
                    ),
                    Launch::Eager
                );
            }
        }
    }

    #[test]
    fn warm_up_then_capture_then_replay() {
        let mode = |h| launch_mode(Timing::Untimed, GraphUse::On, h);
        assert_eq!(mode(history(false, 0, false)), Launch::Eager);
        assert_eq!(mode(history(false, 1, false)), Launch::Capture);
        assert_eq!(mode(history(true, 1, false)), Launch::Replay);
        // After a failed capture, eager for good.
        assert_eq!(mode(history(false, 3, true)), Launch::Eager);
    }
}
