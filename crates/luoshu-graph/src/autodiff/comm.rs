//! Gradients of collectives follow Megatron's conjugate pairs: all-gather ↔ reduce-scatter,
//! and an all-reduce sum passes the gradient through (its result feeds computation that is
//! replicated on every rank, so every rank holds the same full gradient). An all-reduce max
//! only ever feeds shift-invariant expressions (log-sum-exp stabilisation), so it stops the
//! gradient. A ring shift's gradient travels back the other way around the ring.

use super::step::{Grads, Step};
use crate::{Graph, Op, Result};

pub(super) fn backward(g: &mut Graph, s: &Step) -> Result<Grads> {
    s.each(g, |g, _, dy| {
        Ok(match &s.node.op {
            Op::AllReduce { op, .. } => match op {
                crate::CollectiveReduce::Sum => Some(dy),
                crate::CollectiveReduce::Max => None,
            },
            Op::AllGather { group, parts, dim } => Some(g.reduce_scatter(dy, group, *parts, *dim)?),
            Op::ReduceScatter { group, parts, dim } => Some(g.all_gather(dy, group, *parts, *dim)?),
            Op::RingShift {
                group,
                parts,
                offset,
            } => Some(g.ring_shift(dy, group, *parts, (parts - offset) % parts)?),
            _ => return Err(s.not_in_family("collective")),
        })
    })
}
