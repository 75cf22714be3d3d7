use crate::ReduceOp;
use std::fmt;

/// Which collective a rank entered, with the arguments that must agree across ranks.
/// Ranks are matched by sequence number, so a different `Op` at the same number means the
/// ranks called different operations (or the same one with different arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Barrier,
    Split,
    AllReduce(ReduceOp),
    AllGather,
    ReduceScatter(ReduceOp),
    AllToAll,
    Broadcast { root: usize },
}

impl Op {
    /// The `Communicator` method name, used as the `op` of errors.
    pub(super) fn name(self) -> &'static str {
        match self {
            Op::Barrier => "barrier",
            Op::Split => "split",
            Op::AllReduce(_) => "all_reduce",
            Op::AllGather => "all_gather",
            Op::ReduceScatter(_) => "reduce_scatter",
            Op::AllToAll => "all_to_all",
            Op::Broadcast { .. } => "broadcast",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::AllReduce(op) | Op::ReduceScatter(op) => write!(f, "{}({op:?})", self.name()),
            Op::Broadcast { root } => write!(f, "broadcast(root {root})"),
            _ => f.write_str(self.name()),
        }
    }
}
