//! CPU kernels: SwiGLU `silu(gate) * up` and its backward, elementwise in fixed chunks.

use super::rows::{input, output, with_float, Acc, Float, ELEMS_PER_TASK};
use crate::Result;
use luoshu_tensor::Tensor;
use rayon::prelude::*;

pub(crate) fn swiglu(gate: &Tensor, up: &Tensor, out: &Tensor) -> Result<()> {
    with_float!("swiglu", gate.dtype(), |T| forward::<T>(gate, up, out))
}

pub(crate) fn swiglu_backward(
    gate: &Tensor,
    up: &Tensor,
    grad_out: &Tensor,
    grad_gate: &Tensor,
    grad_up: &Tensor,
) -> Result<()> {
    with_float!("swiglu_backward", gate.dtype(), |T| backward::<T>(
        gate, up, grad_out, grad_gate, grad_up
    ))
}

fn sigmoid<A: Acc>(x: A) -> A {
    A::ONE / (A::ONE + (-x).exp())
}

fn forward<T: Float>(gate: &Tensor, up: &Tensor, out: &Tensor) -> Result<()> {
    const OP: &str = "swiglu";
    let (gate, up) = (input::<T>(OP, "gate", gate)?, input::<T>(OP, "up", up)?);
    let out = output::<T>(OP, "out", out)?;
    out.par_chunks_mut(ELEMS_PER_TASK)
        .zip(gate.par_chunks(ELEMS_PER_TASK))
        .zip(up.par_chunks(ELEMS_PER_TASK))
        .for_each(|((out, gate), up)| {
            for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
                let g = g.load();
                *o = T::store(g * sigmoid(g) * u.load());
            }
        });
    Ok(())
}

fn backward<T: Float>(
    gate: &Tensor,
    up: &Tensor,
    grad_out: &Tensor,
    grad_gate: &Tensor,
    grad_up: &Tensor,
) -> Result<()> {
    const OP: &str = "swiglu_backward";
    let (gate, up) = (input::<T>(OP, "gate", gate)?, input::<T>(OP, "up", up)?);
    let grad_out = input::<T>(OP, "grad_out", grad_out)?;
    let grad_gate = output::<T>(OP, "grad_gate", grad_gate)?;
    let grad_up = output::<T>(OP, "grad_up", grad_up)?;
    grad_gate
        .par_chunks_mut(ELEMS_PER_TASK)
        .zip(grad_up.par_chunks_mut(ELEMS_PER_TASK))
        .enumerate()
        .for_each(|(task, (gg, gu))| {
            let start = task * ELEMS_PER_TASK;
            for (i, (gg, gu)) in gg.iter_mut().zip(gu).enumerate() {
                let (g, u) = (gate[start + i].load(), up[start + i].load());
                let go = grad_out[start + i].load();
                let sig = sigmoid(g);
                *gg = T::store(go * u * sig * (T::Acc::ONE + g * (T::Acc::ONE - sig)));
                *gu = T::store(go * g * sig);
            }
        });
    Ok(())
}
