//! The reduction engine shared by `reduce` and `argmax`. The input's kept and reduced
//! dimensions are coalesced separately; then one of two loop orders is picked:
//!
//! * **rows** — the reduced dims are innermost in memory (e.g. a last-axis sum): each
//!   output folds its contiguous runs with [`Reduction::run`] (lane-split, pairwise);
//! * **columns** — a kept dim is innermost (e.g. a bias gradient `[N, D] -> [1, D]`): a tile
//!   of adjacent outputs is accumulated together, one input row at a time, so the inner
//!   loop is a vertical, vectorizable update over contiguous memory.
//!
//! Outputs are split across rayon tasks; a reduction to very few outputs splits the reduced
//! range instead, in fixed-size pieces combined in order (deterministic).

use super::access::View;
use super::parallel::{for_blocks, PARALLEL_MIN_WORK, TASK_WORK};
use super::strided::Walker;
use rayon::prelude::*;

/// Outputs accumulated together by the column loop order.
const TILE: usize = 128;
/// With fewer outputs than this, a large reduction is parallelized over its reduced range.
const FEW_OUTPUTS: usize = 16;

/// A fold over the reduced elements of one output. `i` is an element's row-major position
/// within the reduced dims (argmax needs it).
pub(crate) trait Reduction<T>: Sync {
    type Acc: Copy + Send + Sync;
    type Out: Copy + Send;
    fn init(&self) -> Self::Acc;
    fn step(&self, acc: Self::Acc, x: T, i: usize) -> Self::Acc;
    /// Combine the fold of earlier elements `a` with that of later ones `b`.
    fn merge(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc;
    /// The fold of a contiguous run starting at position `first` (override for speed or
    /// accuracy; the result must equal folding `step` up to rounding).
    fn run(&self, xs: &[T], first: usize) -> Self::Acc
    where
        T: Copy,
    {
        xs.iter()
            .enumerate()
            .fold(self.init(), |a, (t, &x)| self.step(a, x, first + t))
    }
    fn finish(&self, acc: Self::Acc, count: usize) -> Self::Out;
}

/// Reduce `x` over `axes` into the contiguous keepdim output `out`.
pub(crate) fn reduce_into<T, R>(r: &R, x: View<'_, T>, axes: &[usize], out: &mut [R::Out])
where
    T: Copy + Sync,
    R: Reduction<T>,
{
    let split = |reduced: bool| -> (Vec<usize>, Vec<usize>) {
        (0..x.dims.len())
            .filter(|d| axes.contains(d) == reduced)
            .map(|d| (x.dims[d], x.strides[d]))
            .unzip()
    };
    let (kept_dims, kept_strides) = split(false);
    let (red_dims, red_strides) = split(true);
    let kept = Walker::new(&kept_dims, [&kept_strides]);
    let red = Walker::new(&red_dims, [&red_strides]);
    let count = red.numel();
    let [ks] = kept.inner_strides();
    let [rs] = red.inner_strides();
    if out.len() < FEW_OUTPUTS && out.len().saturating_mul(count) >= PARALLEL_MIN_WORK {
        for (o, dst) in out.iter_mut().enumerate() {
            let [base] = kept.offsets_of(o);
            *dst = r.finish(fold_split(r, x.data, base, &red), count);
        }
    } else if kept.inner_len() > 1 && ks != 0 && (red.inner_len() == 1 || ks < rs) {
        columns(r, x.data, &kept, &red, out);
    } else {
        rows(r, x.data, &kept, &red, out);
    }
}

/// Folds one output's reduced elements (at `base`) in fixed pieces on rayon.
fn fold_split<T: Copy + Sync, R: Reduction<T>>(
    r: &R,
    data: &[T],
    base: usize,
    red: &Walker<1>,
) -> R::Acc {
    let count = red.numel();
    (0..count.div_ceil(TASK_WORK))
        .into_par_iter()
        .map(|p| {
            fold_range(
                r,
                data,
                base,
                red,
                p * TASK_WORK..((p + 1) * TASK_WORK).min(count),
            )
        })
        .collect::<Vec<_>>()
        .into_iter()
        .fold(r.init(), |a, b| r.merge(a, b))
}

/// The fold of reduced positions `range` of the output whose elements start at `base`.
fn fold_range<T: Copy, R: Reduction<T>>(
    r: &R,
    data: &[T],
    base: usize,
    red: &Walker<1>,
    range: std::ops::Range<usize>,
) -> R::Acc {
    let [rs] = red.inner_strides();
    let mut acc = r.init();
    red.for_each_run(range, |pos, len, [off]| {
        let start = base + off;
        acc = if rs == 1 {
            r.merge(acc, r.run(&data[start..start + len], pos))
        } else {
            (0..len).fold(acc, |a, t| r.step(a, data[start + t * rs], pos + t))
        };
    });
    acc
}

fn rows<T: Copy + Sync, R: Reduction<T>>(
    r: &R,
    data: &[T],
    kept: &Walker<1>,
    red: &Walker<1>,
    out: &mut [R::Out],
) {
    let count = red.numel();
    let [ks] = kept.inner_strides();
    for_blocks(out, 1, count, |start, chunk| {
        kept.for_each_run(start..start + chunk.len(), |pos, len, [koff]| {
            for (j, dst) in chunk[pos - start..][..len].iter_mut().enumerate() {
                *dst = r.finish(fold_range(r, data, koff + j * ks, red, 0..count), count);
            }
        })
    });
}

fn columns<T: Copy + Sync, R: Reduction<T>>(
    r: &R,
    data: &[T],
    kept: &Walker<1>,
    red: &Walker<1>,
    out: &mut [R::Out],
) {
    let count = red.numel();
    let [ks] = kept.inner_strides();
    let [rs] = red.inner_strides();
    for_blocks(out, 1, count, |start, chunk| {
        kept.for_each_run(start..start + chunk.len(), |pos, len, [koff]| {
            let dst = &mut chunk[pos - start..][..len];
            for (tile_index, tile) in dst.chunks_mut(TILE).enumerate() {
                let w = tile.len();
                let first = koff + tile_index * TILE * ks;
                let mut acc = [r.init(); TILE];
                let acc = &mut acc[..w];
                red.for_each_run(0..count, |rpos, rlen, [roff]| {
                    for t in 0..rlen {
                        let row = first + roff + t * rs;
                        let i = rpos + t;
                        if ks == 1 {
                            for (a, &x) in acc.iter_mut().zip(&data[row..row + w]) {
                                *a = r.step(*a, x, i);
                            }
                        } else {
                            for (j, a) in acc.iter_mut().enumerate() {
                                *a = r.step(*a, data[row + j * ks], i);
                            }
                        }
                    }
                });
                for (d, &a) in tile.iter_mut().zip(acc.iter()) {
                    *d = r.finish(a, count);
                }
            }
        })
    });
}
