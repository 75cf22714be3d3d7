//! Fixed-size splitting of outputs into rayon tasks. Task boundaries depend only on sizes,
//! never on the thread count, so results are the same on every machine.

use rayon::prelude::*;

/// Below this many elements of work a kernel runs on the calling thread.
pub(crate) const PARALLEL_MIN_WORK: usize = 1 << 16;
/// Elements of work one rayon task handles.
pub(crate) const TASK_WORK: usize = 1 << 14;

/// Calls `f(first_block, blocks)` over `out` seen as blocks of `block_len` elements, in
/// groups of whole blocks; each block costs about `work_per_block` element operations.
pub(crate) fn for_blocks<T: Send>(
    out: &mut [T],
    block_len: usize,
    work_per_block: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    let block_len = block_len.max(1);
    let blocks = out.len() / block_len;
    let work = blocks.saturating_mul(work_per_block.max(1));
    if work < PARALLEL_MIN_WORK || blocks < 2 {
        f(0, out);
        return;
    }
    let per_task = (TASK_WORK / work_per_block.max(1)).max(1);
    out.par_chunks_mut(per_task * block_len)
        .enumerate()
        .for_each(|(i, chunk)| f(i * per_task, chunk));
}

/// Calls `f(start, chunk)` over `out` split into chunks of elements (one unit of work each).
pub(crate) fn for_chunks<T: Send>(out: &mut [T], f: impl Fn(usize, &mut [T]) + Sync + Send) {
    for_blocks(out, 1, 1, f)
}
