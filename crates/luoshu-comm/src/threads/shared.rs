//! The only `unsafe` of the threads backend: ranks read their peers' tensors and write
//! their own outputs while peers read other regions of them. Each function states the
//! region it touches; the rendezvous of `group.rs` (every rank has published, every rank
//! has passed the halfway point, every rank has finished) is what makes the caller's
//! promise true, and each call site says which point it relies on.

use crate::reduce::reduce_in_rank_order;
use crate::{ReduceOp, Result};
use luoshu_tensor::{DType, Tensor};
use std::ops::Range;

/// Bytes reduced per step: the block of every input and the block's result stay in L1/L2
/// between reading and writing.
const BLOCK_BYTES: usize = 32 << 10;

/// Bytes `range` (counted from the first element) of contiguous `t`.
///
/// # Safety
/// Nobody writes that region while the slice lives.
pub(super) unsafe fn bytes(t: &Tensor, range: Range<usize>) -> Result<&[u8]> {
    let start = t.layout().offset() * t.dtype().size_in_bytes() + range.start;
    // SAFETY: no writer of the region while the slice lives (the caller's promise); the
    // storage checks the bounds.
    Ok(unsafe { t.storage().region::<u8>(DType::U8, start, range.len())? })
}

/// Mutable twin of [`bytes`].
///
/// # Safety
/// Nobody else reads or writes that region while the slice lives.
#[allow(clippy::mut_from_ref)]
unsafe fn bytes_mut(t: &Tensor, range: Range<usize>) -> Result<&mut [u8]> {
    let start = t.layout().offset() * t.dtype().size_in_bytes() + range.start;
    // SAFETY: exclusive access to the region (the caller's promise); bounds checked.
    Ok(unsafe {
        t.storage()
            .region_mut::<u8>(DType::U8, start, range.len())?
    })
}

/// Writes bytes `range` of the rank-order reduction of `inputs` (contiguous, one per rank,
/// `dtype` elements) into the same bytes of contiguous `out`, block by block. `out` may be
/// one of the inputs (an in-place all-reduce): each block is reduced into a scratch block
/// before it is written. Errors name `op_name` and `rank`.
///
/// # Safety
/// While the call runs nobody but this call writes `range` of any input or of `out`, and
/// nobody else reads `range` of `out`.
pub(super) unsafe fn reduce_region(
    dtype: DType,
    op: ReduceOp,
    inputs: &[&Tensor],
    out: &Tensor,
    range: Range<usize>,
    (op_name, rank): (&str, usize),
) -> Result<()> {
    let width = dtype.size_in_bytes();
    let step = BLOCK_BYTES - BLOCK_BYTES % width;
    let mut scratch = vec![0u8; step.min(range.len())];
    let mut start = range.start;
    while start < range.end {
        let block = start..(start + step).min(range.end);
        let result = &mut scratch[..block.len()];
        {
            // SAFETY: nobody writes `range` of the inputs meanwhile (the caller's promise);
            // these slices end before this call writes `out` below.
            let sources = inputs
                .iter()
                .map(|x| unsafe { bytes(x, block.clone()) })
                .collect::<Result<Vec<_>>>()?;
            reduce_in_rank_order(dtype, op, &sources, result)
                .map_err(|err| err.at(op_name, rank))?;
        }
        // SAFETY: only this call touches `range` of `out` (the caller's promise), and no
        // slice of an input's block (which `out` may be) is alive any more.
        unsafe { bytes_mut(out, block.clone())? }.copy_from_slice(result);
        start = block.end;
    }
    Ok(())
}

/// Copies bytes `range` of contiguous `from` into the same bytes of contiguous `to`.
///
/// # Safety
/// Nobody writes `range` of `from` while the call runs, and nobody else reads or writes
/// `range` of `to`; the two regions do not overlap.
pub(super) unsafe fn copy_region(from: &Tensor, to: &Tensor, range: Range<usize>) -> Result<()> {
    // SAFETY: as promised by the caller.
    let (src, dst) = unsafe { (bytes(from, range.clone())?, bytes_mut(to, range)?) };
    dst.copy_from_slice(src);
    Ok(())
}
