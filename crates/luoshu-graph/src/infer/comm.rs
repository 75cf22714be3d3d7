//! Collectives keep the dtype; all-gather multiplies a dim by the group size, reduce-scatter
//! divides it (exactly, as monomials: `2·rows / 2 = rows`).

use super::rule::{one, require_dim, InferResult};
use super::InferError;
use crate::{Dim, Op, TensorType};

pub(super) fn infer(op: &Op, x: &TensorType) -> InferResult {
    match op {
        Op::AllReduce { parts, .. } => {
            require_parts(*parts)?;
            one(x.shape.clone(), x.dtype)
        }
        Op::AllGather { parts, dim, .. } => {
            require_parts(*parts)?;
            require_dim(*dim, x.rank())?;
            let mut shape = x.shape.clone();
            shape[*dim] = shape[*dim].mul(&Dim::fixed(*parts));
            one(shape, x.dtype)
        }
        Op::RingShift { parts, offset, .. } => {
            require_parts(*parts)?;
            if *offset >= *parts {
                return Err(InferError::Shape(format!(
                    "a ring shift by {offset} needs an offset below the {parts} ranks"
                )));
            }
            one(x.shape.clone(), x.dtype)
        }
        Op::ReduceScatter { parts, dim, .. } => {
            require_parts(*parts)?;
            require_dim(*dim, x.rank())?;
            let mut shape = x.shape.clone();
            shape[*dim] = shape[*dim].div_exact(&Dim::fixed(*parts)).ok_or_else(|| {
                InferError::Shape(format!(
                    "dimension {dim} of size {} is not a multiple of the {parts} ranks",
                    x.shape[*dim]
                ))
            })?;
            one(shape, x.dtype)
        }
        other => Err(InferError::WrongFamily {
            op: other.name(),
            family: "a collective",
        }),
    }
}

fn require_parts(parts: usize) -> Result<(), InferError> {
    if parts == 0 {
        Err(InferError::EmptyGroup)
    } else {
        Ok(())
    }
}
