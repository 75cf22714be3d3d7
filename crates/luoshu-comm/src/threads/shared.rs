//! Ranks read their peers' tensors and write their own outputs while peers read other
//! regions of them. Each function claims exactly the byte range it touches (a
//! [`Borrows`] scope), so ranks touching disjoint chunks of one buffer proceed at once; the
//! rendezvous of `group.rs` (every rank has published, every rank has passed the halfway
//! point, every rank has finished) is what keeps the claims from conflicting, and a
//! conflict would be an error rather than a data race.

use crate::reduce::reduce_in_rank_order;
use crate::{ReduceOp, Result};
use luoshu_tensor::{Borrows, DType, Tensor};
use std::ops::Range;

/// Bytes reduced per step: the block of every input and the block's result stay in L1/L2
/// between reading and writing.
const BLOCK_BYTES: usize = 32 << 10;

/// The name claims of the threads collectives carry in conflict errors.
const CLAIM: &str = "threads collective";

/// Elements of `U8` covering bytes `range` (counted from the first element) of contiguous
/// `t`.
fn byte_elements(t: &Tensor, range: Range<usize>) -> Range<usize> {
    let start = t.layout().offset() * t.dtype().size_in_bytes();
    start + range.start..start + range.end
}

/// Bytes `range` of contiguous `t`, claimed for reading by `op` in `borrows`.
pub(super) fn bytes<'s, 'a>(
    borrows: &'s Borrows<'a>,
    op: &'static str,
    t: &'a Tensor,
    range: Range<usize>,
) -> Result<&'s [u8]> {
    Ok(borrows.read(op, t.storage(), DType::U8, byte_elements(t, range))?)
}

/// Bytes `range` of contiguous `t`, claimed for writing by `op` in `borrows`.
fn bytes_mut<'s, 'a>(
    borrows: &'s Borrows<'a>,
    op: &'static str,
    t: &'a Tensor,
    range: Range<usize>,
) -> Result<&'s mut [u8]> {
    Ok(borrows.write(op, t.storage(), DType::U8, byte_elements(t, range))?)
}

/// Writes bytes `range` of the rank-order reduction of `inputs` (contiguous, one per rank,
/// `dtype` elements) into the same bytes of contiguous `out`, block by block. `out` may be
/// one of the inputs (an in-place all-reduce): each block is reduced into a scratch block
/// before it is written. Errors name `op_name` and `rank`; a peer touching `range`
/// meanwhile (a broken rendezvous) is an [`Error::BorrowConflict`](luoshu_tensor::Error).
pub(super) fn reduce_region(
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
            // The input claims end before `out` (which may be an input) is claimed below.
            let borrows = Borrows::new();
            let sources = inputs
                .iter()
                .map(|x| bytes(&borrows, CLAIM, x, block.clone()))
                .collect::<Result<Vec<_>>>()?;
            reduce_in_rank_order(dtype, op, &sources, result)
                .map_err(|err| err.at(op_name, rank))?;
        }
        let borrows = Borrows::new();
        bytes_mut(&borrows, CLAIM, out, block.clone())?.copy_from_slice(result);
        start = block.end;
    }
    Ok(())
}

/// Copies bytes `range` of contiguous `from` into the same bytes of contiguous `to`.
pub(super) fn copy_region(from: &Tensor, to: &Tensor, range: Range<usize>) -> Result<()> {
    let borrows = Borrows::new();
    let src = bytes(&borrows, CLAIM, from, range.clone())?;
    bytes_mut(&borrows, CLAIM, to, range)?.copy_from_slice(src);
    Ok(())
}
