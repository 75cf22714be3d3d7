//! Local shapes: the piece of a logical tensor one rank holds, and ops whose payload names
//! a shape rewritten to it.

use crate::{shard_range, Axis, DState, Error, Result};
use luoshu_graph::{Dim, Op, TensorType};

/// The type of the piece `rank` holds of a tensor of type `full` in `state`: each split
/// dim becomes the length of this rank's piece. A fixed dim may be split unevenly; a
/// symbolic dim only into pieces that divide it exactly as a monomial (`4·seq / 2`).
pub(super) fn local_type(full: &TensorType, state: &DState, rank: usize) -> Result<TensorType> {
    let mut shape = full.shape.clone();
    for (&d, &parts) in &state.splits {
        let dim = shape.get(d).ok_or_else(|| Error::SplitBeyondType {
            state: Box::new(state.clone()),
            dim: d,
            full: full.to_string(),
        })?;
        shape[d] = match dim.as_fixed() {
            Some(len) => {
                let index = state.axis_index(rank, Axis::Split(d))?;
                Dim::fixed(shard_range(len, parts, index).len())
            }
            None => {
                dim.div_exact(&Dim::fixed(parts))
                    .ok_or_else(|| Error::UnevenSymbolicSplit {
                        state: Box::new(state.clone()),
                        dim: d,
                        size: dim.to_string(),
                        full: full.to_string(),
                        parts,
                    })?
            }
        };
    }
    Ok(TensorType::new(shape, full.dtype))
}

/// `op` as the local graph runs it when its outputs have the `local` types: leaves and
/// the ops whose payload is their output shape get the local shape; every other op is
/// unchanged (the deduction rules only accept split dims the op does not name, e.g. a
/// slice of an unsplit dim).
pub(super) fn local_op(op: &Op, local: &[TensorType]) -> Op {
    let shape = || local[0].shape.clone();
    match op {
        Op::Input { name, dtype, .. } => Op::Input {
            name: name.clone(),
            shape: shape(),
            dtype: *dtype,
        },
        Op::Parameter { name, dtype, .. } => Op::Parameter {
            name: name.clone(),
            shape: shape(),
            dtype: *dtype,
        },
        Op::Reshape { .. } => Op::Reshape { shape: shape() },
        Op::Broadcast { .. } => Op::Broadcast { shape: shape() },
        other => other.clone(),
    }
}
