//! Compiler passes. A pass is a plain function `&Graph -> Result<(Graph, PassStats)>`;
//! [`run_pipeline`] runs a list of them, checking `verify()` after each in debug builds and
//! tests. Adding a pass is one file in this directory and one entry in [`ALL_PASSES`].
//! [`Rewriter`] rebuilds a graph through a value remap; since `Graph::add` hash-conses,
//! every rewrite gets common-subexpression elimination for free.

mod dce;
mod fold;
mod fuse_elementwise;
mod fuse_patterns;
mod pipeline;
mod recompute;
mod registry;
mod rewrite;
mod simplify;

pub use dce::{dce, live_nodes};
pub use fold::{fold, MAX_FOLD_ELEMENTS};
pub use fuse_elementwise::fuse_elementwise;
pub use fuse_patterns::fuse_patterns;
pub use pipeline::{optimize, optimize_forward, DEFAULT_PIPELINE, FORWARD_PIPELINE};
pub use recompute::{recompute, RecomputePolicy};
pub use registry::{closest, pass_by_name, ALL_PASSES};
pub use rewrite::{rebuild, Rewriter};
pub use simplify::simplify;

use crate::{Graph, Result};
use std::fmt;

/// What a pass changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassStats {
    /// Name of the pass.
    pub pass: &'static str,
    /// Node count of the graph the pass was given.
    pub nodes_before: usize,
    /// Node count of the graph it returned.
    pub nodes_after: usize,
    /// Pass-specific count of rewrites applied (nodes removed, folded, fused, ...).
    pub rewrites: usize,
}

impl PassStats {
    /// Statistics of pass `pass` that turned `before` into `after` with `rewrites` rewrites.
    pub fn new(pass: &'static str, before: &Graph, after: &Graph, rewrites: usize) -> Self {
        PassStats {
            pass,
            nodes_before: before.len(),
            nodes_after: after.len(),
            rewrites,
        }
    }

    /// Whether the pass rewrote anything or changed the node count.
    pub fn changed(&self) -> bool {
        self.rewrites > 0 || self.nodes_before != self.nodes_after
    }
}

impl fmt::Display for PassStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} -> {} nodes, {} rewrites",
            self.pass, self.nodes_before, self.nodes_after, self.rewrites
        )
    }
}

/// A pass: a new graph computing the same outputs, and what changed.
pub type PassFn = fn(&Graph) -> Result<(Graph, PassStats)>;

/// A named pass.
#[derive(Clone, Copy)]
pub struct Pass {
    /// Name used by [`pass_by_name`], dumps and statistics.
    pub name: &'static str,
    /// The pass function.
    pub run: PassFn,
}

/// Run `passes` in order. In debug builds and tests every intermediate graph is verified,
/// so a broken pass is caught at the pass that broke it; with `LUOSHU_DUMP=dir` every
/// intermediate graph is written there (see [`crate::dump`]). Each pass's statistics are a
/// `debug` tracing event (`LUOSHU_LOG=debug`).
pub fn run_pipeline(graph: &Graph, passes: &[Pass]) -> Result<(Graph, Vec<PassStats>)> {
    let mut current = graph.clone();
    let mut stats = Vec::with_capacity(passes.len());
    for pass in passes {
        let (next, s) = (pass.run)(&current)?;
        if cfg!(debug_assertions) {
            next.verify().map_err(|e| crate::Error::Invalid {
                detail: format!("pass `{}` produced an invalid graph: {e}", pass.name),
            })?;
        }
        crate::dump::dump_if_enabled(&next, pass.name)?;
        tracing::debug!(
            pass = s.pass,
            nodes_before = s.nodes_before,
            nodes_after = s.nodes_after,
            rewrites = s.rewrites,
            "pass statistics"
        );
        stats.push(s);
        current = next;
    }
    Ok((current, stats))
}
