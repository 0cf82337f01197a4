//! The order of one forward's work across the backend's two streams, written down as data so
//! that it can be checked. Work on one stream runs in issue order; across streams only an
//! event orders it ([`Step::Order`]: an event recorded on one stream, waited for by the
//! other). The forward executes [`forward_steps`] one by one, and the tests prove with
//! [`Schedule`] that every step that reads what another wrote runs after it.

/// One of the backend's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Allocations, kernels, GEMMs, graph launches.
    Compute,
    /// Host ↔ device copies through the pinned staging buffers.
    Copy,
}

/// A step of a forward, in issue order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A new shape's arena allocated and zero-filled (`cuMemAllocAsync` + `cuMemsetD8Async`,
    /// compute stream).
    NewArena,
    /// x, t and y copied from pinned staging into the arena (copy stream).
    Upload,
    /// The forward itself — a new position table's upload, then graph replay, capture or
    /// eager launches (compute stream).
    Forward,
    /// eps copied from the arena into pinned staging (copy stream).
    Download,
    /// `to` waits for everything enqueued on `from` so far (an event recorded on `from`).
    Order {
        /// The stream whose work must finish first.
        from: Stream,
        /// The stream that waits for it.
        to: Stream,
    },
    /// The host waits for the stream (before reading eps, and before the next forward
    /// rewrites the staging buffers).
    HostWait(Stream),
}

#[cfg(test)]
impl Step {
    /// The stream a work step runs on (`None` for orderings and host waits).
    fn stream(self) -> Option<Stream> {
        match self {
            Step::NewArena | Step::Forward => Some(Stream::Compute),
            Step::Upload | Step::Download => Some(Stream::Copy),
            Step::Order { .. } | Step::HostWait(_) => None,
        }
    }
}

/// Whether the forward's shape has its arena yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arena {
    /// The first forward of its shape: the arena is allocated first.
    New,
    /// Allocated by an earlier forward.
    Existing,
}

/// The steps of one forward. A new arena is zero-filled on the compute stream, so the copy
/// stream must wait for the fill before writing the inputs into it — otherwise the memset
/// may land after the upload and the first forward of every new shape reads zeros.
pub fn forward_steps(arena: Arena) -> Vec<Step> {
    let mut steps = Vec::with_capacity(8);
    if arena == Arena::New {
        steps.push(Step::NewArena);
        steps.push(Step::Order {
            from: Stream::Compute,
            to: Stream::Copy,
        });
    }
    steps.extend([
        Step::Upload,
        Step::Order {
            from: Stream::Copy,
            to: Stream::Compute,
        },
        Step::Forward,
        Step::Order {
            from: Stream::Compute,
            to: Stream::Copy,
        },
        Step::Download,
        Step::HostWait(Stream::Copy),
    ]);
    steps
}

/// A list of steps with the happens-before relation it implies (for the tests).
#[cfg(test)]
pub struct Schedule {
    /// Per work step (by index into the list): the work steps that finish before it starts.
    before: Vec<Vec<usize>>,
    /// The work steps finished when the host's last wait returns.
    host: Vec<usize>,
    steps: Vec<Step>,
}

#[cfg(test)]
impl Schedule {
    /// Follows `steps` as the driver would: each stream runs its work in order and inherits
    /// what another stream had done at an [`Step::Order`].
    pub fn new(steps: Vec<Step>) -> Self {
        let (mut compute, mut copy) = (Vec::new(), Vec::new());
        let mut before = vec![Vec::new(); steps.len()];
        let mut host = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let done = |s: Stream, compute: &Vec<usize>, copy: &Vec<usize>| match s {
                Stream::Compute => compute.clone(),
                Stream::Copy => copy.clone(),
            };
            match (*step, step.stream()) {
                (_, Some(stream)) => {
                    let finished = match stream {
                        Stream::Compute => &mut compute,
                        Stream::Copy => &mut copy,
                    };
                    before[i] = finished.clone();
                    finished.push(i);
                }
                (Step::Order { from, to }, None) => {
                    let inherited = done(from, &compute, &copy);
                    match to {
                        Stream::Compute => compute.extend(inherited),
                        Stream::Copy => copy.extend(inherited),
                    }
                }
                (Step::HostWait(stream), None) => host = done(stream, &compute, &copy),
                _ => {}
            }
        }
        Schedule {
            before,
            host,
            steps,
        }
    }

    fn index(&self, step: Step) -> usize {
        self.steps
            .iter()
            .position(|s| *s == step)
            .unwrap_or_else(|| panic!("{step:?} is not in the schedule"))
    }

    /// Whether `first` finishes before `then` starts.
    pub fn happens_before(&self, first: Step, then: Step) -> bool {
        self.before[self.index(then)].contains(&self.index(first))
    }

    /// Whether `step` has finished when the host's wait returns.
    pub fn host_sees(&self, step: Step) -> bool {
        self.host.contains(&self.index(step))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reader_runs_after_its_writer() {
        for arena in [Arena::New, Arena::Existing] {
            let s = Schedule::new(forward_steps(arena));
            if arena == Arena::New {
                // The zero fill of the arena before the inputs are written into it.
                assert!(s.happens_before(Step::NewArena, Step::Upload));
                assert!(s.happens_before(Step::NewArena, Step::Forward));
            }
            assert!(s.happens_before(Step::Upload, Step::Forward));
            assert!(s.happens_before(Step::Forward, Step::Download));
            // The host reads eps, and rewrites the staging buffers the upload read, only after.
            assert!(s.host_sees(Step::Download));
            assert!(s.host_sees(Step::Upload));
            assert!(s.host_sees(Step::Forward));
        }
    }

    #[test]
    fn the_checker_catches_the_missing_order_after_the_zero_fill() {
        // The schedule before the fix: the fill on the compute stream, the upload on the copy
        // stream, no event between them.
        let mut racy = forward_steps(Arena::New);
        racy.remove(1);
        let s = Schedule::new(racy);
        assert!(!s.happens_before(Step::NewArena, Step::Upload));
        assert!(s.happens_before(Step::Upload, Step::Forward));
    }
}
