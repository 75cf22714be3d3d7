//! The conformance suite (after DeepLink's diopi_test): every primitive and composite op of
//! a backend is run on deterministic random inputs — size-1, empty, odd, strided,
//! transposed, offset and broadcast layouts, every dtype the op supports — and compared
//! with the reference backend on the same inputs under a per-op tolerance. Every op family
//! has at least one shape above 65,536 elements, so the CPU backend's parallel kernels are
//! compared too, in quick mode as well. Exact ops (copies, views, casts, indexing, integer
//! arithmetic, comparisons, max/min, random bits) must match the reference bit for bit in
//! every element; an op with rounding passes when at most 0.1 % of its output elements are
//! out of tolerance. In both cases no NaN/Inf may appear where the reference has none, and
//! the inputs must be byte-identical afterwards. The reference's
//! gradients are checked against finite differences in f64. An op that returns an error
//! (or panics) fails.
//!
//! Any backend runs the same checks: `run_conformance(&my_backend)`.

mod cases;
mod checker;
mod compare;
mod composites;
mod gradcheck;
mod indexing;
mod primitives;
mod report;
mod training;

pub use compare::{tolerance, Class, Tol};
pub use report::{Implementation, OpKind, OpReport, Report, WorstError};

use crate::Backend;
use checker::Checker;

/// How much to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Seed of every random input.
    pub seed: u64,
    /// Fewer shapes and layouts per op (large tensors in one layout only): for tests.
    pub quick: bool,
    /// Only the op with this name (`exp`, `softmax`, ...).
    pub only: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seed: 0x1u64 << 32 | 0x5eed,
            quick: false,
            only: None,
        }
    }
}

/// The full suite on `backend`.
pub fn run_conformance(backend: &dyn Backend) -> Report {
    run_conformance_with(backend, &Options::default())
}

/// The suite on `backend` as `options` say.
pub fn run_conformance_with(backend: &dyn Backend, options: &Options) -> Report {
    let mut checker = Checker::new(backend, options.seed, options.quick, options.only.clone());
    primitives::check_all(&mut checker);
    indexing::check_all(&mut checker);
    composites::check_all(&mut checker);
    Report {
        backend: backend.name().to_string(),
        ops: checker.reports,
    }
}
