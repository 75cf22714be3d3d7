//! Collectives over the devices of one axis of the state: all-reduce sums the partial
//! axis into copies, all-gather joins a split axis into copies, reduce-scatter sums the
//! partial axis into pieces of a dim. A ring shift keeps its input's state: every rank
//! receives a tensor of the same type, in the same role of the same state, from a peer of
//! the same group (context parallelism passes key/value blocks between ranks that hold
//! different chunks in the same sequence split; which chunk a rank holds at which step
//! is the builder's bookkeeping, as the chunk order itself is).

use super::rule::{per_axis, RuleResult};
use crate::{Axis, DState};
use luoshu_graph::{CollectiveReduce, Op};

pub(super) fn deduce(op: &Op, state: &DState) -> RuleResult {
    let require = |axis: Axis, parts: usize| {
        let extent = state.extent(axis);
        if extent == parts {
            Ok(())
        } else {
            Err(format!(
                "the group has {parts} ranks but the {axis:?} axis has extent {extent}"
            ))
        }
    };
    let replace = |from: Axis, to: Axis| {
        per_axis(&[state], 1, |_, roles| {
            Ok(vec![if roles[0] == from { to } else { roles[0] }])
        })
    };
    match op {
        Op::AllReduce {
            parts,
            op: CollectiveReduce::Sum,
            ..
        } => {
            require(Axis::Partial, *parts)?;
            replace(Axis::Partial, Axis::Duplicate)
        }
        Op::AllReduce {
            op: CollectiveReduce::Max,
            ..
        } => Err(
            "a max all-reduce combines per-device values that no state models (partial means sum)"
                .into(),
        ),
        Op::AllGather { parts, dim, .. } => {
            require(Axis::Split(*dim), *parts)?;
            replace(Axis::Split(*dim), Axis::Duplicate)
        }
        Op::ReduceScatter { parts, dim, .. } => {
            require(Axis::Partial, *parts)?;
            if state.extent(Axis::Split(*dim)) > 1 {
                return Err(format!("dim {dim} is already split"));
            }
            replace(Axis::Partial, Axis::Split(*dim))
        }
        Op::RingShift { .. } => per_axis(&[state], 1, |_, roles| Ok(vec![roles[0]])),
        other => Err(format!("{} is not a collective", other.name())),
    }
}
