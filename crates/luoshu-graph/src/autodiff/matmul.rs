//! Gradient of batched matmul: `da = dy · bᵀ`, `db = aᵀ · dy`, each summed over the batch
//! dims its operand was broadcast along.

use super::step::{Grads, Step};
use crate::{Graph, Result};

pub(super) fn backward(g: &mut Graph, s: &Step) -> Result<Grads> {
    let (a, b) = (s.x(0), s.x(1));
    s.each(g, |g, i, dy| {
        let d = if i == 0 {
            let bt = g.transpose_last(b)?;
            g.matmul(dy, bt)?
        } else {
            let at = g.transpose_last(a)?;
            g.matmul(at, dy)?
        };
        let shape = g.shape_of(s.x(i));
        g.sum_to(d, &shape).map(Some)
    })
}
