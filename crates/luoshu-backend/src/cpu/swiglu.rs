//! CPU kernels: SwiGLU `silu(gate) * up` and its backward, elementwise in fixed chunks, with
//! the sigmoids from the vectorized slice `exp`.

use super::fast_exp::{vectorized, ExpSlice};
use super::rows::{input, output, with_float, Acc, Float, ELEMS_PER_TASK};
use crate::Result;
use luoshu_tensor::{Borrows, Tensor};
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

/// Elements whose sigmoids one pass computes into a stack buffer.
const SIGMOID_BLOCK: usize = 256;

/// Calls `f(offset, sigmoid(gate[offset..offset + len]))` over `gate` in blocks, with the
/// sigmoids computed by the vectorized slice `exp`.
#[inline(always)]
fn for_sigmoid_blocks<T: Float>(gate: &[T], mut f: impl FnMut(usize, &[T::Acc]))
where
    T::Acc: ExpSlice,
{
    let mut sig = [T::Acc::ZERO; SIGMOID_BLOCK];
    for (b, gate) in gate.chunks(SIGMOID_BLOCK).enumerate() {
        let sig = &mut sig[..gate.len()];
        for (s, &g) in sig.iter_mut().zip(gate) {
            *s = -g.load();
        }
        T::Acc::exp_in_place(sig);
        for s in sig.iter_mut() {
            *s = T::Acc::ONE / (T::Acc::ONE + *s);
        }
        f(b * SIGMOID_BLOCK, sig);
    }
}

fn forward<T: Float>(gate: &Tensor, up: &Tensor, out: &Tensor) -> Result<()>
where
    T::Acc: ExpSlice,
{
    const OP: &str = "swiglu";
    let borrows = Borrows::new();
    let (gate, up) = (
        input::<T>(&borrows, OP, "gate", gate)?,
        input::<T>(&borrows, OP, "up", up)?,
    );
    let out = output::<T>(&borrows, OP, "out", out)?;
    out.par_chunks_mut(ELEMS_PER_TASK)
        .zip(gate.par_chunks(ELEMS_PER_TASK))
        .zip(up.par_chunks(ELEMS_PER_TASK))
        .for_each(|((out, gate), up)| {
            vectorized(|| {
                for_sigmoid_blocks(gate, |start, sig| {
                    let n = sig.len();
                    let (out, gate, up) = (
                        &mut out[start..start + n],
                        &gate[start..start + n],
                        &up[start..start + n],
                    );
                    for (((o, &g), &u), &s) in out.iter_mut().zip(gate).zip(up).zip(sig) {
                        *o = T::store(g.load() * s * u.load());
                    }
                })
            })
        });
    Ok(())
}

fn backward<T: Float>(
    gate: &Tensor,
    up: &Tensor,
    grad_out: &Tensor,
    grad_gate: &Tensor,
    grad_up: &Tensor,
) -> Result<()>
where
    T::Acc: ExpSlice,
{
    const OP: &str = "swiglu_backward";
    let borrows = Borrows::new();
    let (gate, up) = (
        input::<T>(&borrows, OP, "gate", gate)?,
        input::<T>(&borrows, OP, "up", up)?,
    );
    let grad_out = input::<T>(&borrows, OP, "grad_out", grad_out)?;
    let grad_gate = output::<T>(&borrows, OP, "grad_gate", grad_gate)?;
    let grad_up = output::<T>(&borrows, OP, "grad_up", grad_up)?;
    grad_gate
        .par_chunks_mut(ELEMS_PER_TASK)
        .zip(grad_up.par_chunks_mut(ELEMS_PER_TASK))
        .enumerate()
        .for_each(|(task, (gg, gu))| {
            let base = task * ELEMS_PER_TASK;
            let gate = &gate[base..base + gg.len()];
            vectorized(|| {
                for_sigmoid_blocks(gate, |start, sig| {
                    for (i, &sig) in sig.iter().enumerate() {
                        let j = start + i;
                        let (g, u) = (gate[j].load(), up[base + j].load());
                        let go = grad_out[base + j].load();
                        gg[j] = T::store(go * u * sig * (T::Acc::ONE + g * (T::Acc::ONE - sig)));
                        gu[j] = T::store(go * g * sig);
                    }
                })
            })
        });
    Ok(())
}
