//! Gradients of the composite nn ops: softmax and log-softmax by their formulas, the others
//! by their backward ops, which reuse the statistics the forward op saved (lse, rstd, mean).
//! Backward ops with several outputs are added once per wanted input; hash-consing makes
//! them one node.

use super::step::{Grads, Step};
use crate::{Graph, Op, Result, Value};

pub(super) fn backward(g: &mut Graph, s: &Step) -> Result<Grads> {
    let op = s.node.op.clone();
    let (y, x) = (|o| s.y(o), |i| s.x(i));
    s.each(g, |g, i, dy| {
        let last = g.value_type(x(0)).rank() - 1;
        let output_i = |g: &mut Graph, op: Op, inputs: &[Value]| -> Result<Value> {
            Ok(Value::new(g.add(op, inputs)?, i as u32))
        };
        let d = match (&op, i) {
            // dx = y·(dy - Σ dy·y).
            (Op::Softmax, _) => {
                let t = g.mul(dy, y(0))?;
                let t = g.sum(t, &[last], true)?;
                let t = g.sub(dy, t)?;
                g.mul(y(0), t)?
            }
            // dx = dy - exp(y)·Σ dy.
            (Op::LogSoftmax, _) => {
                let total = g.sum(dy, &[last], true)?;
                let probs = g.exp(y(0))?;
                let t = g.mul(probs, total)?;
                g.sub(dy, t)?
            }
            (Op::CrossEntropy { ignore_index }, 0) => {
                let backward = Op::CrossEntropyBackward {
                    ignore_index: *ignore_index,
                };
                g.add1(backward, &[x(0), x(1), y(1), dy])?
            }
            (Op::RmsNorm { .. }, _) => output_i(g, Op::RmsNormBackward, &[x(0), x(1), y(1), dy])?,
            (Op::LayerNorm { .. }, _) => {
                output_i(g, Op::LayerNormBackward, &[x(0), x(1), y(1), y(2), dy])?
            }
            // A rotation's transpose is the opposite rotation.
            (Op::Rope { inverse }, 0) => g.rope(dy, x(1), x(2), !inverse)?,
            (Op::Swiglu, _) => output_i(g, Op::SwigluBackward, &[x(0), x(1), dy])?,
            (
                Op::Attention {
                    scale,
                    causal,
                    segmented,
                },
                0..=2,
            ) => {
                let backward = Op::AttentionBackward {
                    scale: *scale,
                    causal: *causal,
                    segmented: *segmented,
                    lse_grad: s.d_lse.is_some(),
                };
                let mut inputs = vec![x(0), x(1), x(2), y(0), y(1), dy];
                if *segmented {
                    inputs.push(x(3));
                }
                inputs.extend(s.d_lse);
                output_i(g, backward, &inputs)?
            }
            // Targets, rotation tables and segment ids get no gradient.
            (Op::CrossEntropy { .. } | Op::Rope { .. } | Op::Attention { .. }, _) => {
                return Ok(None)
            }
            _ => return Err(s.not_in_family("nn")),
        };
        Ok(Some(d))
    })
}
