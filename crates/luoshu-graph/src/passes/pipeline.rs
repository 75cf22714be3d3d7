//! The default optimization pipelines.

use super::registry::{DCE, FOLD, FUSE_ELEMENTWISE, FUSE_PATTERNS, SIMPLIFY};
use super::{run_pipeline, Pass, PassStats};
use crate::{Graph, Result};

/// For a training graph (after autodiff): fold → simplify → DCE → fuse patterns → fuse
/// elementwise → DCE.
pub const DEFAULT_PIPELINE: &[Pass] = &[FOLD, SIMPLIFY, DCE, FUSE_PATTERNS, FUSE_ELEMENTWISE, DCE];

/// For a forward graph before autodiff: the pattern-level rewrites only, so that autodiff
/// sees composites (whose backward is one fused op) and no `Fused` nodes (which have no
/// gradient rule).
pub const FORWARD_PIPELINE: &[Pass] = &[FOLD, SIMPLIFY, DCE, FUSE_PATTERNS];

/// Run [`DEFAULT_PIPELINE`] (verifying between passes in debug builds and tests).
pub fn optimize(graph: &Graph) -> Result<(Graph, Vec<PassStats>)> {
    run_pipeline(graph, DEFAULT_PIPELINE)
}

/// Run [`FORWARD_PIPELINE`].
pub fn optimize_forward(graph: &Graph) -> Result<(Graph, Vec<PassStats>)> {
    run_pipeline(graph, FORWARD_PIPELINE)
}
