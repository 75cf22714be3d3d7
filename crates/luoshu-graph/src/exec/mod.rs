//! Running graphs: [`evaluate`], the plain node-by-node interpreter (fresh buffers per value,
//! the oracle for every pass and for the planned executor), and [`compile`]/[`Plan`], the
//! planned executor (memory-lowering schedule, one arena, in-place reuse). Both run ops
//! through the same dispatch table in the private `kernels` module.

mod collectives;
mod evaluate;
mod feeds;
pub(crate) mod kernels;
mod plan;
mod profile;

pub use collectives::Collectives;
pub use evaluate::{evaluate, evaluate_with};
pub use plan::{compile, CompileOptions, Plan};

use crate::{Error, NodeId, Op};

/// Wrap a failure while running a node with the node and its op, so a runtime error says
/// which node of the graph failed.
pub(crate) fn node_error(node: NodeId, op: &Op, err: Error) -> Error {
    match err {
        // These name the node or leaf already.
        Error::Node { .. }
        | Error::UnboundDim { .. }
        | Error::MissingFeed { .. }
        | Error::FeedMismatch { .. } => err,
        other => Error::Node {
            node,
            op: op.name(),
            detail: other.to_string(),
        },
    }
}
