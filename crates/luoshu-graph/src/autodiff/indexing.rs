//! Gradients of indexing ops: selects and gathers scatter their gradient back; adds and
//! scatters pass it through to the destination and pick it out for the source; concat
//! slices it apart. Indices get none.

use super::step::{Grads, Step};
use crate::{Error, Graph, Op, Result};

pub(super) fn backward(g: &mut Graph, s: &Step) -> Result<Grads> {
    let op = s.node.op.clone();
    s.each(g, |g, i, dy| {
        let d = match (&op, i) {
            (Op::IndexSelect { dim }, 0) => {
                let zeros = g.zeros_like(s.x(0))?;
                g.index_add(zeros, *dim, s.x(1), dy)?
            }
            (Op::Gather { dim }, 0) => {
                let zeros = g.zeros_like(s.x(0))?;
                g.scatter_add(zeros, *dim, s.x(1), dy)?
            }
            (Op::IndexAdd { .. } | Op::ScatterAdd { .. }, 0) => dy,
            (Op::IndexAdd { dim }, 2) => g.index_select(dy, *dim, s.x(1))?,
            (Op::ScatterAdd { dim }, 2) => g.gather(dy, *dim, s.x(1))?,
            (Op::Concat { dim }, _) => {
                let mut start = 0;
                for &earlier in &s.node.inputs[..i] {
                    start += fixed_size(g, earlier, *dim)?;
                }
                let end = start + fixed_size(g, s.x(i), *dim)?;
                g.slice(dy, *dim, start, end, 1)?
            }
            // Indices get no gradient.
            (
                Op::IndexSelect { .. }
                | Op::Gather { .. }
                | Op::IndexAdd { .. }
                | Op::ScatterAdd { .. },
                1,
            ) => return Ok(None),
            _ => return Err(s.not_in_family("indexing")),
        };
        Ok(Some(d))
    })
}

/// A concat input's size along the joined dim (fixed, as shape inference requires).
fn fixed_size(g: &Graph, v: crate::Value, dim: usize) -> Result<usize> {
    let d = &g.value_type(v).shape[dim];
    d.as_fixed().ok_or_else(|| Error::Invalid {
        detail: format!("concat input {v} has symbolic size {d} along dim {dim}"),
    })
}
