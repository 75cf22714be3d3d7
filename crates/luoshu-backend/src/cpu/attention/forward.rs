//! Attention forward: one task per (batch, query head, query tile); keys stream through in
//! tiles with an online softmax (running max and sum), so no score matrix wider than a
//! tile ever exists.

use super::tiles::{
    input, lane_max, load_rows, row_major, vectorized, Compute, Heads, BLOCK_K, BLOCK_Q,
};
use super::visibility::{mask_outside, Visibility};
use crate::cpu::fast_exp::ExpSlice;
use crate::cpu::matmul::gemm_into;
use crate::cpu::rows::{lane_sum, output, Acc, Float};
use crate::ops::AttentionOpts;
use crate::Result;
use gemm::Parallelism;
use luoshu_tensor::{Borrows, Tensor};
use rayon::prelude::*;

/// One query tile's work: where it is and the output rows it owns.
struct Task<'a, T> {
    b: usize,
    h: usize,
    row0: usize,
    out: &'a mut [T],
    lse: &'a mut [f32],
}

/// Buffers reused across the tiles one worker handles.
struct Scratch<A> {
    q: Vec<A>,
    k: Vec<A>,
    v: Vec<A>,
    scores: Vec<A>,
    acc: Vec<A>,
    max: Vec<A>,
    sum: Vec<A>,
}

impl<A> Default for Scratch<A> {
    fn default() -> Self {
        Scratch {
            q: Vec::new(),
            k: Vec::new(),
            v: Vec::new(),
            scores: Vec::new(),
            acc: Vec::new(),
            max: Vec::new(),
            sum: Vec::new(),
        }
    }
}

pub(super) fn run<T: Float>(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    segments: Option<&Tensor>,
    opts: AttentionOpts,
    out: &Tensor,
    lse: &Tensor,
) -> Result<()>
where
    T::Acc: Compute,
{
    let borrows = Borrows::new();
    let op = "attention";
    let (qv, kv, vv) = (
        Heads::of(op, "q", q)?,
        Heads::of(op, "k", k)?,
        Heads::of(op, "v", v)?,
    );
    let (qd, kd, vd) = (
        input::<T>(&borrows, q)?,
        input::<T>(&borrows, k)?,
        input::<T>(&borrows, v)?,
    );
    let out_data = output::<T>(&borrows, op, "out", out)?;
    let lse_data = output::<f32>(&borrows, op, "lse", lse)?;

    let mut tasks = Vec::new();
    let (mut out_rest, mut lse_rest) = (out_data, lse_data);
    for b in 0..qv.batch {
        for h in 0..qv.heads {
            for row0 in (0..qv.seq).step_by(BLOCK_Q) {
                let rows = BLOCK_Q.min(qv.seq - row0);
                let (o, o_rest) = out_rest.split_at_mut(rows * vv.dim);
                let (l, l_rest) = lse_rest.split_at_mut(rows);
                (out_rest, lse_rest) = (o_rest, l_rest);
                tasks.push(Task {
                    b,
                    h,
                    row0,
                    out: o,
                    lse: l,
                });
            }
        }
    }
    let group = qv.heads / kv.heads.max(1);
    let inputs = Inputs {
        q: (qd, qv),
        k: (kd, kv),
        v: (vd, vv),
        group,
        scale: opts.scale,
        visibility: Visibility::new(op, opts.causal, (qv.seq, kv.seq), segments)?,
    };
    tasks
        .into_par_iter()
        .try_for_each_init(Scratch::default, |scratch, task| {
            vectorized(|| query_tile(&inputs, task, scratch))
        })
}

struct Inputs<'a, T> {
    q: (&'a [T], Heads),
    k: (&'a [T], Heads),
    v: (&'a [T], Heads),
    /// Query heads per kv head.
    group: usize,
    scale: f32,
    visibility: Visibility,
}

#[inline(always)]
fn query_tile<T: Float>(
    inp: &Inputs<'_, T>,
    task: Task<'_, T>,
    s: &mut Scratch<T::Acc>,
) -> Result<()>
where
    T::Acc: Compute,
{
    let (qv, kv, vv) = (inp.q.1, inp.k.1, inp.v.1);
    let (d, dv) = (qv.dim, vv.dim);
    let rows = task.lse.len();
    let kv_head = (task.b, task.h / inp.group);
    let scale = <T::Acc as Acc>::from_f32(inp.scale);

    load_rows(inp.q.0, &qv, (task.b, task.h), task.row0, rows, &mut s.q);
    s.acc.clear();
    s.acc.resize(rows * dv, T::Acc::ZERO);
    s.max.clear();
    s.max.resize(rows, T::Acc::NEG_INFINITY);
    s.sum.clear();
    s.sum.resize(rows, T::Acc::ZERO);

    let keys = inp.visibility.keys_of(task.b, task.row0..task.row0 + rows);
    for col0 in keys.clone().step_by(BLOCK_K) {
        let cols = BLOCK_K.min(keys.end - col0);
        load_rows(inp.k.0, &kv, kv_head, col0, cols, &mut s.k);
        load_rows(inp.v.0, &vv, kv_head, col0, cols, &mut s.v);
        s.scores.resize(rows * cols, T::Acc::ZERO);
        gemm_into(
            (rows, cols, d),
            &mut s.scores,
            cols,
            false,
            row_major(&s.q, d, false),
            row_major(&s.k, d, true),
            scale,
            Parallelism::None,
        )?;
        // Per row: mask, new running max, and shift the scores by it before `exp`.
        let mut rescale = [T::Acc::ZERO; BLOCK_Q];
        for (i, row) in s.scores.chunks_exact_mut(cols).enumerate() {
            let live_columns = inp
                .visibility
                .live_columns(task.b, task.row0 + i, col0, cols);
            let live = mask_outside(row, live_columns);
            let tile_max = lane_max(live);
            let new_max = Acc::max(s.max[i], tile_max);
            if new_max == T::Acc::NEG_INFINITY {
                // Nothing visible yet: the row stays empty.
                live.fill(T::Acc::NEG_INFINITY);
                rescale[i] = T::Acc::ONE;
                continue;
            }
            for x in live.iter_mut() {
                *x = *x - new_max;
            }
            rescale[i] = s.max[i] - new_max;
            s.max[i] = new_max;
        }
        T::Acc::exp_in_place(&mut s.scores);
        T::Acc::exp_in_place(&mut rescale[..rows]);
        for (i, row) in s.scores.chunks_exact(cols).enumerate() {
            let r = rescale[i];
            s.sum[i] = s.sum[i] * r + lane_sum(cols, |j| row[j]);
            for o in &mut s.acc[i * dv..(i + 1) * dv] {
                *o = *o * r;
            }
        }
        gemm_into(
            (rows, dv, cols),
            &mut s.acc,
            dv,
            true,
            row_major(&s.scores, cols, false),
            row_major(&s.v, dv, false),
            T::Acc::ONE,
            Parallelism::None,
        )?;
    }

    for i in 0..rows {
        let (sum, out_row) = (s.sum[i], &mut task.out[i * dv..(i + 1) * dv]);
        let acc_row = &s.acc[i * dv..(i + 1) * dv];
        if sum > T::Acc::ZERO {
            let inv = T::Acc::ONE / sum;
            for (o, &a) in out_row.iter_mut().zip(acc_row) {
                *o = T::store(a * inv);
            }
            task.lse[i] = (s.max[i] + sum.ln()).to_f32();
        } else {
            out_row.fill(T::store(T::Acc::ZERO));
            task.lse[i] = f32::NEG_INFINITY;
        }
    }
    Ok(())
}
