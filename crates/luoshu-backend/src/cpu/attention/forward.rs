//! Attention forward: one task per (batch, query head, query tile); keys stream through in
//! tiles with an online softmax (running max and sum), so no score matrix wider than a
//! tile ever exists.

use super::tiles::{
    input, lane_max, row_major, rows_of, vectorized, Compute, Heads, Rows, BLOCK_K, BLOCK_Q,
};
use super::visibility::{mask_outside, RowBlock, Visibility, RAGGED_ROWS};
use crate::cpu::fast_exp::ExpSlice;
use crate::cpu::matmul::{gemm_into, GemmDst};
use crate::cpu::rows::{lane_sum, output, Acc, Float};
use crate::ops::{AttentionInputs, AttentionOpts};
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

/// Buffers reused across the tiles one worker handles: inputs converted to the compute
/// precision (bf16/f16 only) and the query tile's running softmax.
struct Scratch<A> {
    q: Vec<A>,
    k: Vec<A>,
    v: Vec<A>,
    state: Softmax<A>,
}

impl<A> Default for Scratch<A> {
    fn default() -> Self {
        Scratch {
            q: Vec::new(),
            k: Vec::new(),
            v: Vec::new(),
            state: Softmax {
                scores: Vec::new(),
                acc: Vec::new(),
                max: Vec::new(),
                sum: Vec::new(),
            },
        }
    }
}

/// A query tile's online softmax: the current key block's scores, and per row the
/// unnormalized output, running max and running sum.
struct Softmax<A> {
    scores: Vec<A>,
    acc: Vec<A>,
    max: Vec<A>,
    sum: Vec<A>,
}

pub(super) fn run<T: Float>(
    AttentionInputs { q, k, v, segments }: AttentionInputs<'_>,
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
    let dv = vv.dim;
    let rows = task.lse.len();
    let kv_head = (task.b, task.h / inp.group);
    let Scratch { q, k, v, state } = s;

    let q = rows_of(inp.q.0, &qv, (task.b, task.h), (task.row0, rows), q);
    state.acc.clear();
    state.acc.resize(rows * dv, T::Acc::ZERO);
    state.max.clear();
    state.max.resize(rows, T::Acc::NEG_INFINITY);
    state.sum.clear();
    state.sum.resize(rows, T::Acc::ZERO);

    let keys = inp.visibility.keys_of(task.b, task.row0..task.row0 + rows);
    for col0 in keys.clone().step_by(BLOCK_K) {
        let cols = BLOCK_K.min(keys.end - col0);
        let k = rows_of(inp.k.0, &kv, kv_head, (col0, cols), k);
        let v = rows_of(inp.v.0, &vv, kv_head, (col0, cols), v);
        let blocks =
            (inp.visibility).row_blocks(task.b, (task.row0, rows), (col0, cols), RAGGED_ROWS);
        for block in blocks {
            key_block(inp, state, Operands { q, k, v }, (task.b, task.row0), block)?;
        }
    }

    for i in 0..rows {
        let (sum, out_row) = (state.sum[i], &mut task.out[i * dv..(i + 1) * dv]);
        let acc_row = &state.acc[i * dv..(i + 1) * dv];
        if sum > T::Acc::ZERO {
            let inv = T::Acc::ONE / sum;
            for (o, &a) in out_row.iter_mut().zip(acc_row) {
                *o = T::store(a * inv);
            }
            task.lse[i] = (state.max[i] + sum.ln()).to_f32();
        } else {
            out_row.fill(T::store(T::Acc::ZERO));
            task.lse[i] = f32::NEG_INFINITY;
        }
    }
    Ok(())
}

/// A block's operands: the query tile's rows and the key tile's keys and values.
#[derive(Clone, Copy)]
struct Operands<'a, A> {
    q: Rows<'a, A>,
    k: Rows<'a, A>,
    v: Rows<'a, A>,
}

/// Query rows `rows` of a tile (offsets within it) against the key tile's columns `cols`
/// (offsets within the key tile, `col0` its first key): scores, mask, the online softmax
/// update and `acc += P·V` for those rows.
#[inline(always)]
fn key_block<T: Float>(
    inp: &Inputs<'_, T>,
    st: &mut Softmax<T::Acc>,
    Operands { q, k, v }: Operands<'_, T::Acc>,
    (b, row0): (usize, usize),
    RowBlock { rows, cols, col0 }: RowBlock,
) -> Result<()>
where
    T::Acc: Compute,
{
    let (d, dv) = (inp.q.1.dim, inp.v.1.dim);
    let (n, width) = (rows.len(), cols.len());
    let scale = <T::Acc as Acc>::from_f32(inp.scale);
    st.scores.resize(n * width, T::Acc::ZERO);
    gemm_into(
        (n, width, d),
        GemmDst::overwrite(&mut st.scores, width),
        q.skip(rows.start).matrix(),
        k.skip(cols.start).transposed(),
        scale,
        Parallelism::None,
    )?;
    // Per row: mask, new running max, and shift the scores by it before `exp`.
    let mut rescale = [T::Acc::ZERO; BLOCK_Q];
    for (i, row) in st.scores.chunks_exact_mut(width).enumerate() {
        let r = rows.start + i;
        let live_columns = inp
            .visibility
            .live_columns(b, row0 + r, col0 + cols.start, width);
        let live = mask_outside(row, live_columns);
        let tile_max = lane_max(live);
        let new_max = Acc::max(st.max[r], tile_max);
        if new_max == T::Acc::NEG_INFINITY {
            // Nothing visible yet: the row stays empty.
            live.fill(T::Acc::NEG_INFINITY);
            rescale[i] = T::Acc::ONE;
            continue;
        }
        for x in live.iter_mut() {
            *x = *x - new_max;
        }
        rescale[i] = st.max[r] - new_max;
        st.max[r] = new_max;
    }
    T::Acc::exp_in_place(&mut st.scores);
    T::Acc::exp_in_place(&mut rescale[..n]);
    for (i, row) in st.scores.chunks_exact(width).enumerate() {
        let (r, factor) = (rows.start + i, rescale[i]);
        st.sum[r] = st.sum[r] * factor + lane_sum(width, |j| row[j]);
        for o in &mut st.acc[r * dv..(r + 1) * dv] {
            *o = *o * factor;
        }
    }
    gemm_into(
        (n, dv, width),
        GemmDst::accumulate(&mut st.acc[rows.start * dv..rows.end * dv], dv),
        row_major(&st.scores, width, false),
        v.skip(cols.start).matrix(),
        T::Acc::ONE,
        Parallelism::None,
    )
}
