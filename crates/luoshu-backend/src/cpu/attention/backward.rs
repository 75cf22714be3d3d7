//! Attention backward, flash style: one task per (batch, kv head), owning that head's
//! `dK`/`dV` rows and the `dQ` rows of its query heads. For each key tile it walks every
//! query tile of the group, recomputes the probabilities from `q`, `k` and `lse`, and
//! accumulates `dV += Pᵀ·dO`, `dK += scale·dSᵀ·Q` and `dQ += scale·dS·K` with
//! `dS = P ∘ (dO·Vᵀ − D)`, `D = rowsum(dO ∘ O) − dlse` (`dlse`, the gradient of the
//! log-sum-exp output, is zero unless given: since `∂lse_i/∂S_ij = P_ij`, it only shifts
//! `D`).

use super::tiles::{
    input, load_rows, row_major, rows_of, vectorized, Compute, Heads, Rows, BLOCK_K, BLOCK_Q,
};
use super::visibility::{mask_outside, RowBlock, Visibility, RAGGED_ROWS};
use crate::cpu::fast_exp::ExpSlice;
use crate::cpu::matmul::{gemm_into, GemmDst};
use crate::cpu::rows::{lane_sum, output, Acc, Float};
use crate::ops::{AttentionGrads, AttentionInputs, AttentionOpts, AttentionOutputGrads};
use crate::Result;
use gemm::Parallelism;
use luoshu_tensor::Borrows;
use rayon::prelude::*;

/// The views and storages a backward task reads.
struct Inputs<'a, T> {
    q: (&'a [T], Heads),
    k: (&'a [T], Heads),
    v: (&'a [T], Heads),
    out: (&'a [T], Heads),
    grad_out: (&'a [T], Heads),
    lse: (&'a [f32], Heads),
    grad_lse: Option<(&'a [f32], Heads)>,
    group: usize,
    scale: f32,
    visibility: Visibility,
}

/// One (batch, kv head): its index and the gradient rows it owns.
struct Task<'a, T> {
    b: usize,
    kv_head: usize,
    grad_q: &'a mut [T],
    grad_k: &'a mut [T],
    grad_v: &'a mut [T],
}

pub(super) fn run<T: Float>(
    AttentionInputs { q, k, v, segments }: AttentionInputs<'_>,
    opts: AttentionOpts,
    AttentionOutputGrads {
        out,
        lse,
        grad_out,
        grad_lse,
    }: AttentionOutputGrads<'_>,
    AttentionGrads {
        q: grad_q,
        k: grad_k,
        v: grad_v,
    }: AttentionGrads<'_>,
) -> Result<()>
where
    T::Acc: Compute,
{
    let borrows = Borrows::new();
    let op = "attention_backward";
    let view = |arg, t| Heads::of(op, arg, t);
    let lse4 = lse.unsqueeze(3)?;
    let grad_lse4 = grad_lse.map(|g| g.unsqueeze(3)).transpose()?;
    let inp = Inputs {
        q: (input::<T>(&borrows, q)?, view("q", q)?),
        k: (input::<T>(&borrows, k)?, view("k", k)?),
        v: (input::<T>(&borrows, v)?, view("v", v)?),
        out: (input::<T>(&borrows, out)?, view("out", out)?),
        grad_out: (input::<T>(&borrows, grad_out)?, view("grad_out", grad_out)?),
        lse: (input::<f32>(&borrows, lse)?, view("lse", &lse4)?),
        grad_lse: match (grad_lse, &grad_lse4) {
            (Some(g), Some(g4)) => Some((input::<f32>(&borrows, g)?, view("grad_lse", g4)?)),
            _ => None,
        },
        group: q.dims()[1] / k.dims()[1].max(1),
        scale: opts.scale,
        visibility: Visibility::new(op, opts.causal, (q.dims()[2], k.dims()[2]), segments)?,
    };
    let (qv, kv, vv) = (inp.q.1, inp.k.1, inp.v.1);
    let mut rest = (
        output::<T>(&borrows, op, "grad_q", grad_q)?,
        output::<T>(&borrows, op, "grad_k", grad_k)?,
        output::<T>(&borrows, op, "grad_v", grad_v)?,
    );
    let mut tasks = Vec::new();
    for b in 0..kv.batch {
        for kv_head in 0..kv.heads {
            let (gq, gq_rest) = rest.0.split_at_mut(inp.group * qv.seq * qv.dim);
            let (gk, gk_rest) = rest.1.split_at_mut(kv.seq * kv.dim);
            let (gv, gv_rest) = rest.2.split_at_mut(vv.seq * vv.dim);
            rest = (gq_rest, gk_rest, gv_rest);
            tasks.push(Task {
                b,
                kv_head,
                grad_q: gq,
                grad_k: gk,
                grad_v: gv,
            });
        }
    }
    tasks
        .into_par_iter()
        .try_for_each_init(Scratch::default, |scratch, task| {
            vectorized(|| kv_head_task(&inp, task, scratch))
        })
}

/// Buffers reused across the tasks one worker handles: inputs converted to the compute
/// precision (bf16/f16 only; `out` and `dout` also for `D`), and the gradient work.
struct Scratch<A> {
    q: Vec<A>,
    dout: Vec<A>,
    out: Vec<A>,
    k: Vec<A>,
    v: Vec<A>,
    work: Work<A>,
}

/// A (batch, kv head) task's gradient state.
struct Work<A> {
    /// Per query row of the group: `D` and `lse`.
    delta: Vec<A>,
    lse: Vec<A>,
    /// `dQ` of the whole group, accumulated over key tiles.
    dq: Vec<A>,
    /// The key tile's `dK` and `dV`, accumulated over query rows.
    dk: Vec<A>,
    dv: Vec<A>,
    /// The current block's probabilities and `dS`.
    p: Vec<A>,
    dp: Vec<A>,
}

impl<A> Default for Scratch<A> {
    fn default() -> Self {
        Scratch {
            q: Vec::new(),
            dout: Vec::new(),
            out: Vec::new(),
            k: Vec::new(),
            v: Vec::new(),
            work: Work {
                delta: Vec::new(),
                lse: Vec::new(),
                dq: Vec::new(),
                dk: Vec::new(),
                dv: Vec::new(),
                p: Vec::new(),
                dp: Vec::new(),
            },
        }
    }
}

/// A block's operands: its query rows, their output gradients, and the key tile's keys
/// and values.
#[derive(Clone, Copy)]
struct Operands<'a, A> {
    q: Rows<'a, A>,
    dout: Rows<'a, A>,
    k: Rows<'a, A>,
    v: Rows<'a, A>,
}

#[inline(always)]
fn kv_head_task<T: Float>(
    inp: &Inputs<'_, T>,
    task: Task<'_, T>,
    s: &mut Scratch<T::Acc>,
) -> Result<()>
where
    T::Acc: Compute,
{
    let (qv, kv, vv) = (inp.q.1, inp.k.1, inp.v.1);
    let (d, dv, sq, sk) = (qv.dim, vv.dim, qv.seq, kv.seq);
    let heads = |g: usize| (task.b, task.kv_head * inp.group + g);
    let zero = T::Acc::ZERO;
    let Scratch {
        q: q_buf,
        dout: dout_buf,
        out: out_buf,
        k: k_buf,
        v: v_buf,
        work: s,
    } = s;

    // D = rowsum(dO ∘ O) − dlse and lse for every query row of the group.
    s.delta.clear();
    s.lse.clear();
    for g in 0..inp.group {
        for row0 in (0..sq).step_by(BLOCK_Q) {
            let rows = BLOCK_Q.min(sq - row0);
            load_rows(inp.out.0, &inp.out.1, heads(g), row0, rows, out_buf);
            let dout = &inp.grad_out;
            load_rows(dout.0, &dout.1, heads(g), row0, rows, dout_buf);
            for i in 0..rows {
                let (o, go) = (&out_buf[i * dv..], &dout_buf[i * dv..]);
                let at = inp.lse.1.row(heads(g).0, heads(g).1, row0 + i);
                let mut delta = lane_sum(dv, |c| o[c] * go[c]);
                if let Some((grad_lse, view)) = &inp.grad_lse {
                    let grad_at = view.row(heads(g).0, heads(g).1, row0 + i);
                    delta = delta - T::Acc::from_f32(grad_lse[grad_at]);
                }
                s.delta.push(delta);
                s.lse.push(T::Acc::from_f32(inp.lse.0[at]));
            }
        }
    }
    s.dq.clear();
    s.dq.resize(inp.group * sq * d, zero);

    let kv_at = (task.b, task.kv_head);
    for col0 in (0..sk).step_by(BLOCK_K) {
        let cols = BLOCK_K.min(sk - col0);
        let k = rows_of(inp.k.0, &kv, kv_at, (col0, cols), k_buf);
        let v = rows_of(inp.v.0, &vv, kv_at, (col0, cols), v_buf);
        s.dk.clear();
        s.dk.resize(cols * d, zero);
        s.dv.clear();
        s.dv.resize(cols * dv, zero);
        let queries = inp.visibility.queries_of(task.b, col0..col0 + cols);
        for g in 0..inp.group {
            for row0 in queries.clone().step_by(BLOCK_Q) {
                let rows = BLOCK_Q.min(queries.end - row0);
                let dout = &inp.grad_out;
                let operands = Operands {
                    q: rows_of(inp.q.0, &qv, heads(g), (row0, rows), q_buf),
                    dout: rows_of(dout.0, &dout.1, heads(g), (row0, rows), dout_buf),
                    k,
                    v,
                };
                let blocks =
                    (inp.visibility).row_blocks(task.b, (row0, rows), (col0, cols), RAGGED_ROWS);
                for block in blocks {
                    key_block(inp, s, operands, heads(g), g * sq + row0, block)?;
                }
            }
        }
        let (dk_out, dv_out) = (
            &mut task.grad_k[col0 * d..(col0 + cols) * d],
            &mut task.grad_v[col0 * dv..(col0 + cols) * dv],
        );
        for (o, &a) in dk_out.iter_mut().zip(&s.dk) {
            *o = T::store(a);
        }
        for (o, &a) in dv_out.iter_mut().zip(&s.dv) {
            *o = T::store(a);
        }
    }
    for (o, &a) in task.grad_q.iter_mut().zip(&s.dq) {
        *o = T::store(a);
    }
    Ok(())
}

/// Query rows `block.rows` of the loaded query rows (the group's rows from `group_row0`,
/// `g·sq + row`) against columns `block.cols` of the loaded key tile: recomputes their
/// probabilities and accumulates their share of `dV`, `dK` and `dQ`.
#[inline(always)]
fn key_block<T: Float>(
    inp: &Inputs<'_, T>,
    s: &mut Work<T::Acc>,
    Operands { q, dout, k, v }: Operands<'_, T::Acc>,
    head: (usize, usize),
    group_row0: usize,
    RowBlock { rows, cols, col0 }: RowBlock,
) -> Result<()>
where
    T::Acc: Compute,
{
    let qv = inp.q.1;
    let (d, dv, sq) = (qv.dim, inp.v.1.dim, qv.seq);
    let (n, width) = (rows.len(), cols.len());
    let group_row = group_row0 + rows.start;
    let row0 = group_row % sq.max(1);
    let scale = T::Acc::from_f32(inp.scale);
    let neg_inf = T::Acc::NEG_INFINITY;
    let (q, dout) = (q.skip(rows.start), dout.skip(rows.start));
    let (k, v) = (k.skip(cols.start), v.skip(cols.start));

    // P = exp(scale·Q·Kᵀ − lse), zero where masked or where the row saw nothing.
    s.p.resize(n * width, T::Acc::ZERO);
    gemm_into(
        (n, width, d),
        GemmDst::overwrite(&mut s.p, width),
        q.matrix(),
        k.transposed(),
        scale,
        Parallelism::None,
    )?;
    for (i, row) in s.p.chunks_exact_mut(width).enumerate() {
        let lse = s.lse[group_row + i];
        let live_columns = match lse == neg_inf {
            true => 0..0,
            false => (inp.visibility).live_columns(head.0, row0 + i, col0 + cols.start, width),
        };
        for x in mask_outside(row, live_columns) {
            *x = *x - lse;
        }
    }
    T::Acc::exp_in_place(&mut s.p);

    // dV += Pᵀ·dO
    gemm_into(
        (width, dv, n),
        GemmDst::accumulate(&mut s.dv[cols.start * dv..cols.end * dv], dv),
        row_major(&s.p, width, true),
        dout.matrix(),
        T::Acc::ONE,
        Parallelism::None,
    )?;
    // dS = P ∘ (dO·Vᵀ − D), in place of dP.
    s.dp.resize(n * width, T::Acc::ZERO);
    gemm_into(
        (n, width, dv),
        GemmDst::overwrite(&mut s.dp, width),
        dout.matrix(),
        v.transposed(),
        T::Acc::ONE,
        Parallelism::None,
    )?;
    for (i, (ds, p)) in
        s.dp.chunks_exact_mut(width)
            .zip(s.p.chunks_exact(width))
            .enumerate()
    {
        let delta = s.delta[group_row + i];
        for (x, &pv) in ds.iter_mut().zip(p) {
            *x = pv * (*x - delta);
        }
    }
    // dQ += scale·dS·K
    gemm_into(
        (n, d, width),
        GemmDst::accumulate(&mut s.dq[group_row * d..(group_row + n) * d], d),
        row_major(&s.dp, width, false),
        k.matrix(),
        scale,
        Parallelism::None,
    )?;
    // dK += scale·dSᵀ·Q
    gemm_into(
        (width, d, n),
        GemmDst::accumulate(&mut s.dk[cols.start * d..cols.end * d], d),
        row_major(&s.dp, width, true),
        q.matrix(),
        scale,
        Parallelism::None,
    )
}
