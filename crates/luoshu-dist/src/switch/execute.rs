//! Running a switch plan on one rank: local copies, then every message to and from this
//! rank posted together as one `batched_send_recv` (pieces for one peer fused into one
//! 1-D message), unpacked straight into the destination pieces.

use super::plan::{SwitchPlan, Transfer};
use crate::placement::Placement;
use crate::{Error, Result};
use luoshu_backend::Ops;
use luoshu_comm::Communicator;
use luoshu_tensor::{DType, Tensor};
use std::collections::BTreeMap;

/// The tensors `rank` stores for `placements`: `stored[t][k]` holds the `k`-th piece of
/// `placements[t].pieces_of(rank)`, zero-filled, with
/// [`crate::placement::Piece::stored_dims`].
pub fn allocate_pieces(
    ops: &Ops,
    placements: &[Placement],
    rank: usize,
    dtype: DType,
) -> Result<Vec<Vec<Tensor>>> {
    placements
        .iter()
        .map(|p| {
            p.pieces_of(rank)
                .iter()
                .map(|piece| Ok(ops.full(0.0, dtype, &piece.stored_dims())?))
                .collect()
        })
        .collect()
}

/// For each tensor, the slot in this rank's stored list of every holding (`None` where
/// the rank is not a holder).
fn slots(placements: &[Placement], rank: usize) -> Vec<Vec<Option<usize>>> {
    placements
        .iter()
        .map(|p| {
            let mut next = 0;
            p.holdings
                .iter()
                .map(|h| {
                    h.ranks.binary_search(&rank).ok().map(|_| {
                        next += 1;
                        next - 1
                    })
                })
                .collect()
        })
        .collect()
}

/// One rank's pieces of every tensor a switch moves, per tensor as [`allocate_pieces`]
/// lays them out.
#[derive(Clone, Copy)]
pub struct SwitchPieces<'a> {
    /// This rank's pieces in the placements switched from.
    pub src: &'a [Vec<Tensor>],
    /// This rank's pieces in the placements switched to (overwritten).
    pub dst: &'a [Vec<Tensor>],
}

/// Switches this rank's `pieces.src` (laid out for `from`) into its `pieces.dst` (laid out
/// for `to`) along `plan`. Collective over `comm` for the ranks that exchange messages;
/// every rank of the world calls it with the same plan.
pub fn execute_switch(
    plan: &SwitchPlan,
    from: &[Placement],
    to: &[Placement],
    comm: &dyn Communicator,
    ops: &Ops,
    SwitchPieces { src, dst }: SwitchPieces<'_>,
    tag: u64,
) -> Result<()> {
    let me = comm.rank();
    if comm.size() != plan.world || from.len() != to.len() || src.len() != from.len() {
        return Err(Error::Redistribution(format!(
            "a switch planned for {} ranks and {} tensors run on {} ranks with {} source and \
             {} destination tensors",
            plan.world,
            from.len(),
            comm.size(),
            src.len(),
            dst.len()
        )));
    }
    let (src_slots, dst_slots) = (slots(from, me), slots(to, me));
    let source = |t: &Transfer| -> Result<Tensor> {
        let slot = src_slots[t.tensor][t.src_holding]
            .ok_or_else(|| Error::Redistribution(format!("rank {me} does not hold {t:?}")))?;
        from[t.tensor].holdings[t.src_holding]
            .piece
            .view(&src[t.tensor][slot], &t.region)
    };
    let target = |t: &Transfer| -> Result<Tensor> {
        let slot = dst_slots[t.tensor][t.dst_holding]
            .ok_or_else(|| Error::Redistribution(format!("rank {me} does not need {t:?}")))?;
        to[t.tensor].holdings[t.dst_holding]
            .piece
            .view(&dst[t.tensor][slot], &t.region)
    };
    let dtype = message_dtype(src, dst)?;
    let mut outgoing: BTreeMap<usize, Vec<&Transfer>> = BTreeMap::new();
    let mut incoming: BTreeMap<usize, Vec<&Transfer>> = BTreeMap::new();
    for t in &plan.transfers {
        if t.from == me && t.to == me {
            copy_into_view(ops, &source(t)?, &target(t)?)?;
        } else if t.from == me {
            outgoing.entry(t.to).or_default().push(t);
        } else if t.to == me {
            incoming.entry(t.from).or_default().push(t);
        }
    }
    let mut sends = Vec::with_capacity(outgoing.len());
    for (&peer, pieces) in &outgoing {
        let total = pieces.iter().map(|t| t.region.numel()).sum();
        let message = ops.alloc(dtype, &[total])?;
        let mut offset = 0;
        for t in pieces {
            let n = t.region.numel();
            let slot = message
                .narrow(0, offset, n)?
                .reshape(t.region.dims().to_vec())?;
            ops.copy_into(&source(t)?, &slot)?;
            offset += n;
        }
        sends.push((peer, message));
    }
    let peers: Vec<usize> = incoming.keys().copied().collect();
    if sends.is_empty() && peers.is_empty() {
        return Ok(());
    }
    let received = comm.batched_send_recv(&sends, &peers, tag)?;
    for (message, pieces) in received.iter().zip(incoming.values()) {
        let expected: usize = pieces.iter().map(|t| t.region.numel()).sum();
        if message.numel() != expected {
            return Err(Error::Redistribution(format!(
                "a switch message carries {} elements, the plan expects {expected}",
                message.numel()
            )));
        }
        let mut offset = 0;
        for t in pieces {
            let n = t.region.numel();
            let slot = message
                .narrow(0, offset, n)?
                .reshape(t.region.dims().to_vec())?;
            copy_into_view(ops, &slot, &target(t)?)?;
            offset += n;
        }
    }
    Ok(())
}

/// `dst = src` where `dst` may be a strided view (a sub-box of a stored piece): the
/// operator interface writes contiguous outputs only, so a strided `dst` is written one
/// slice of its outermost non-unit dim at a time until the slices are contiguous (at the
/// latest rows of the box, whose last dim has stride 1).
fn copy_into_view(ops: &Ops, src: &Tensor, dst: &Tensor) -> Result<()> {
    if dst.is_contiguous() || dst.numel() == 0 {
        return Ok(ops.copy_into(src, dst)?);
    }
    let dim = dst
        .dims()
        .iter()
        .position(|&n| n > 1)
        .expect("a non-contiguous view has a dim longer than 1");
    for i in 0..dst.dims()[dim] {
        copy_into_view(ops, &src.narrow(dim, i, 1)?, &dst.narrow(dim, i, 1)?)?;
    }
    Ok(())
}

/// The one dtype of every stored piece (messages fuse pieces of several tensors).
fn message_dtype(src: &[Vec<Tensor>], dst: &[Vec<Tensor>]) -> Result<DType> {
    let mut dtypes = src.iter().chain(dst).flatten().map(|t| t.dtype());
    let first = dtypes.next().unwrap_or(DType::F32);
    match dtypes.find(|&d| d != first) {
        Some(other) => Err(Error::Redistribution(format!(
            "a switch moves one dtype, the pieces are {first:?} and {other:?}"
        ))),
        None => Ok(first),
    }
}
