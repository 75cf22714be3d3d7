//! All-reduce in two phases, so every element is reduced once instead of once per rank:
//! rank `r` reduces chunk `r` of the elements, reading every rank's input in place, into
//! its own output, then, after every rank has done so, copies the other chunks from their
//! owners' outputs. Each element is still combined in rank order, so the result has the
//! same bits as a whole-buffer reduction (and as the MPI backend's).
//!
//! The output is a fresh tensor ([`all_reduce`]) or the input itself
//! ([`all_reduce_in_place`]): then nothing is allocated, and each rank reads `S` and
//! writes `S` bytes of its own buffer plus reads `S (n-1)/n` of its peers'.

use super::checks::{all_match, Source};
use super::group::Group;
use super::op::Op;
use super::published::Published;
use super::shared::{copy_region, reduce_region};
use crate::communicator::check_in_place;
use crate::reduce::check_reducible;
use crate::{ReduceOp, Result};
use luoshu_tensor::Tensor;
use std::ops::Range;

/// A rank's all-reduce contribution: its input, and the output (fresh, or the input
/// itself) it reduces its own chunk into and its peers copy that chunk from.
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

/// `all_reduce(x, op)` by rank `rank` of `group`, into a fresh tensor.
pub(super) fn all_reduce(group: &Group, rank: usize, x: &Tensor, op: ReduceOp) -> Result<Tensor> {
    let output = Tensor::zeros(x.dtype(), x.shape().clone())?;
    let contribution = Contribution {
        input: Published::new(x)?,
        output: output.clone(),
    };
    two_phase(group, rank, op, contribution)?;
    Ok(output)
}

/// `all_reduce_in_place(x, op)` by rank `rank` of `group`: the result overwrites `x`.
pub(super) fn all_reduce_in_place(
    group: &Group,
    rank: usize,
    x: &Tensor,
    op: ReduceOp,
) -> Result<()> {
    check_in_place(x, rank)?;
    let contribution = Contribution {
        input: Published::new(x)?,
        output: x.clone(),
    };
    two_phase(group, rank, op, contribution)
}

fn two_phase(group: &Group, rank: usize, op: ReduceOp, contribution: Contribution) -> Result<()> {
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
            let inputs: Vec<&Tensor> = all.iter().map(|c| c.input.tensor()).collect();
            // In this phase every rank `p` reads chunk `p` of the inputs and writes chunk `p`
            // of its own output only, so the ranks' claims are disjoint.
            reduce_region(dtype, op, &inputs, &own.output, mine, (name, rank))
        },
        |all, ()| {
            let own = &all[rank];
            let (numel, width) = (own.output.numel(), own.output.dtype().size_in_bytes());
            for (peer, theirs) in all.iter().enumerate().filter(|&(peer, _)| peer != rank) {
                // `peer` wrote chunk `peer` of its output before the halfway wait and nobody
                // writes it after; in this phase each rank writes only the other ranks'
                // chunks of its own output, which no one else reads.
                copy_region(&theirs.output, &own.output, chunk(numel, width, peer))?;
            }
            Ok(())
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
