//! All-reduce in two phases, so every element is reduced once instead of once per rank:
//! rank `r` reduces chunk `r` of the elements from every rank's input into its own output,
//! then, after every rank has done so, copies the other chunks from their owners' outputs.
//! Each element is still combined in rank order, so the result has the same bits as a
//! whole-buffer reduction (and as the MPI backend's).

use super::checks::{all_match, Source};
use super::group::Group;
use super::op::Op;
use super::published::Published;
use crate::reduce::{check_reducible, reduce_in_rank_order};
use crate::{ReduceOp, Result};
use luoshu_tensor::{DType, Tensor};
use std::ops::Range;

/// A rank's all-reduce contribution: its input, and the fresh output it reduces its own
/// chunk into and its peers copy that chunk from.
struct Contribution {
    input: Published,
    output: Tensor,
}

/// The bytes of chunk `index` of `parts` nearly equal chunks of `numel` elements of
/// `width` bytes (the first `numel % parts` chunks have one element more).
fn chunk_bytes(numel: usize, width: usize, parts: usize, index: usize) -> Range<usize> {
    let (base, extra) = (numel / parts, numel % parts);
    let start = index * base + index.min(extra);
    let len = base + usize::from(index < extra);
    start * width..(start + len) * width
}

/// `all_reduce(x, op)` by rank `rank` of `group`.
pub(super) fn all_reduce(group: &Group, rank: usize, x: &Tensor, op: ReduceOp) -> Result<Tensor> {
    let contribution = Contribution {
        input: Published::new(x)?,
        output: Tensor::zeros(x.dtype(), x.shape().clone())?,
    };
    let size = group.size();
    let name = Op::AllReduce(op).name();
    let chunk = |numel: usize, width: usize, index: usize| chunk_bytes(numel, width, size, index);
    group.two_phase_collective(
        rank,
        Op::AllReduce(op),
        contribution,
        |all| {
            let sources = all.iter().enumerate().map(|(rank, c)| {
                let source = Source { rank, part: None };
                (source, &c.input)
            });
            all_match(name, rank, true, sources)?;
            let own = &all[rank];
            let dtype = own.output.dtype();
            check_reducible(dtype).map_err(|err| err.at(name, rank))?;
            let mine = chunk(own.output.numel(), dtype.size_in_bytes(), rank);
            let inputs = all
                .iter()
                .map(|c| Ok(&c.input.bytes()?[mine.clone()]))
                .collect::<Result<Vec<_>>>()?;
            // SAFETY: only this rank writes its output's chunk `rank`, and only now; peers
            // read that chunk only after the halfway wait that follows.
            let out = unsafe {
                own.output
                    .storage()
                    .region_mut::<u8>(DType::U8, mine.start, mine.len())
            }?;
            reduce_in_rank_order(dtype, op, &inputs, out).map_err(|err| err.at(name, rank))
        },
        |all, ()| {
            let own = &all[rank];
            let (numel, width) = (own.output.numel(), own.output.dtype().size_in_bytes());
            for (peer, theirs) in all.iter().enumerate().filter(|&(peer, _)| peer != rank) {
                let bytes = chunk(numel, width, peer);
                // SAFETY: `peer` finished writing its chunk before the halfway wait and
                // nobody writes it after; and no one but this rank touches the chunks of
                // its own output other than its own chunk `rank`, which peers only read.
                let (from, to) = unsafe {
                    let storage = theirs.output.storage();
                    let from = storage.region::<u8>(DType::U8, bytes.start, bytes.len())?;
                    let storage = own.output.storage();
                    let to = storage.region_mut::<u8>(DType::U8, bytes.start, bytes.len())?;
                    (from, to)
                };
                to.copy_from_slice(from);
            }
            Ok(own.output.clone())
        },
    )
}

#[cfg(test)]
mod tests {
    use super::chunk_bytes;

    #[test]
    fn chunks_tile_the_buffer_nearly_equally() {
        for (numel, parts) in [(10, 4), (3, 4), (0, 2), (8, 1), (4097, 3)] {
            let chunks: Vec<_> = (0..parts)
                .map(|i| chunk_bytes(numel, 2, parts, i))
                .collect();
            assert_eq!(chunks[0].start, 0);
            assert_eq!(chunks[parts - 1].end, numel * 2);
            for pair in chunks.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
                assert!(pair[0].len() >= pair[1].len() && pair[0].len() - pair[1].len() <= 2);
            }
        }
    }
}
