//! Gradients of views are views: the inverse permutation, the reshape back, the sum over a
//! broadcast, and a slice's gradient scattered into zeros at the sliced positions.

use super::step::{Grads, Step};
use crate::{Graph, Op, Result};
use luoshu_tensor::DType;

pub(super) fn backward(g: &mut Graph, s: &Step) -> Result<Grads> {
    let x = s.x(0);
    s.each(g, |g, _, dy| {
        let shape = g.shape_of(x);
        let d = match &s.node.op {
            Op::Reshape { .. } => g.reshape(dy, &shape)?,
            Op::Broadcast { .. } => g.sum_to(dy, &shape)?,
            Op::Permute { perm } => {
                let mut inverse = vec![0; perm.len()];
                for (i, &p) in perm.iter().enumerate() {
                    inverse[p] = i;
                }
                g.permute(dy, &inverse)?
            }
            Op::Slice {
                dim, start, step, ..
            } => {
                let len = g.shape_of(dy)[*dim].clone();
                let positions = g.arange(*start as f64, *step as f64, len, DType::I64)?;
                let zeros = g.zeros_like(x)?;
                g.index_add(zeros, *dim, positions, dy)?
            }
            Op::Contiguous => dy,
            _ => return Err(s.not_in_family("view or layout")),
        };
        Ok(Some(d))
    })
}
