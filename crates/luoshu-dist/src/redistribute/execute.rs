//! [`execute`]: running a planned [`Redistribution`] on one rank.

use super::{numel, AxisGroup, Collective, Exchange, Redistribution, Step};
use crate::{shard_range, Error, Result};
use luoshu_backend::{Backend, Ops};
use luoshu_comm::{Communicator, ReduceOp};
use luoshu_tensor::Tensor;
use std::ops::Range;
use std::sync::Arc;

/// Tag of the point-to-point messages of an exchange. Each exchange sends at most one
/// message per pair of ranks and waits for all of its messages, so consecutive
/// redistributions on one communicator cannot mix theirs up.
pub const EXCHANGE_TAG: u64 = 0x6c75_6f73_6875_7264;

/// Runs `plan` on this rank: `local` is this rank's piece in `plan.src` (rank `d` is device
/// `d` of the states); returns its piece in `plan.dst`, contiguous. Every rank of `comm`
/// must call it with the same plan. When no data moves, the result may share storage
/// with `local`. Kernels (concatenation, zero fill, copies) run on `backend`.
pub fn execute(
    comm: &dyn Communicator,
    plan: &Redistribution,
    local: &Tensor,
    backend: &dyn Backend,
) -> Result<Tensor> {
    let rank = comm.rank();
    if comm.size() != plan.src.devices {
        return Err(Error::CommunicatorSize {
            src: Box::new(plan.src.clone()),
            dst: Box::new(plan.dst.clone()),
            devices: plan.src.devices,
            backend: comm.backend().to_string(),
            ranks: comm.size(),
        });
    }
    let expected = plan.src.local_dims(rank, &plan.full_dims)?;
    if local.dims() != expected || local.dtype() != plan.dtype {
        return Err(Error::LocalPiece {
            src: Box::new(plan.src.clone()),
            dst: Box::new(plan.dst.clone()),
            full_dims: plan.full_dims.clone(),
            dtype: plan.dtype,
            rank,
            dims: local.dims().to_vec(),
            held_dtype: local.dtype(),
            expected,
        });
    }
    let ops = Ops::new(backend);
    let mut current = local.clone();
    for step in &plan.steps {
        current = match step {
            Step::Collective { op, group } => run_collective(comm, *op, *group, &current, ops)?,
            Step::Exchange(exchange) => run_exchange(comm, exchange, &current, ops)?,
        };
    }
    Ok(ops.contiguous(&current)?)
}

fn run_collective(
    comm: &dyn Communicator,
    op: Collective,
    group: AxisGroup,
    x: &Tensor,
    ops: Ops,
) -> Result<Tensor> {
    let rank = comm.rank();
    // The group is the whole communicator when its axis is the only one.
    let sub: Arc<dyn Communicator>;
    let members: &dyn Communicator = if group.extent == comm.size() {
        comm
    } else {
        sub = comm.split(group.color(rank), group.index(rank))?;
        &*sub
    };
    Ok(match op {
        Collective::AllReduce => members.all_reduce(x, ReduceOp::Sum)?,
        Collective::ReduceScatter { dim } => {
            members.reduce_scatter(&pieces(x, dim, group.extent)?, ReduceOp::Sum)?
        }
        Collective::AllGather { dim } => concat(ops, &members.all_gather(x)?, dim)?,
        Collective::AllToAll {
            split_dim,
            concat_dim,
        } => {
            let received = members.all_to_all(&pieces(x, split_dim, group.extent)?)?;
            concat(ops, &received, concat_dim)?
        }
    })
}

/// `x` cut along `dim` into `parts` pieces by [`shard_range`].
fn pieces(x: &Tensor, dim: usize, parts: usize) -> Result<Vec<Tensor>> {
    let len = x.dims()[dim];
    (0..parts)
        .map(|i| {
            let r = shard_range(len, parts, i);
            Ok(x.narrow(dim, r.start, r.len())?)
        })
        .collect()
}

fn concat(ops: Ops, parts: &[Tensor], dim: usize) -> Result<Tensor> {
    if let [only] = parts {
        return Ok(only.clone());
    }
    let refs: Vec<&Tensor> = parts.iter().collect();
    Ok(ops.concat(&refs, dim)?)
}

/// Sends the cells this rank owns for others (all cells for one peer flattened into one
/// message), receives its own, and assembles its target.
fn run_exchange(
    comm: &dyn Communicator,
    exchange: &Exchange,
    x: &Tensor,
    ops: Ops,
) -> Result<Tensor> {
    let rank = comm.rank();
    let held = &exchange.held[rank];
    let mut sends = Vec::new();
    for (peer, target) in exchange.targets.iter().enumerate() {
        if peer == rank {
            continue;
        }
        let owned: Vec<Tensor> = target
            .cells
            .iter()
            .filter(|c| c.owner == rank)
            .map(|c| flat(ops, &cut(x, held, &c.region)?))
            .collect::<Result<_>>()?;
        if !owned.is_empty() {
            sends.push((peer, concat(ops, &owned, 0)?));
        }
    }
    let target = &exchange.targets[rank];
    let mut sources: Vec<usize> = target
        .cells
        .iter()
        .map(|c| c.owner)
        .filter(|&o| o != rank)
        .collect();
    sources.sort_unstable();
    sources.dedup();
    let received = if sends.is_empty() && sources.is_empty() {
        Vec::new()
    } else {
        comm.batched_send_recv(&sends, &sources, EXCHANGE_TAG)?
    };
    let region_dims = dims_of(&target.region);
    if target.cells.is_empty() {
        return Ok(ops.alloc(x.dtype(), &region_dims)?);
    }
    let mut consumed = vec![0; sources.len()];
    let mut cells = Vec::with_capacity(target.cells.len());
    for cell in &target.cells {
        if cell.owner == rank {
            cells.push(cut(x, held, &cell.region)?);
            continue;
        }
        let from = sources.binary_search(&cell.owner).map_err(|_| {
            Error::Redistribution(format!("rank {rank}: no message from {}", cell.owner))
        })?;
        let n = numel(&cell.region);
        let piece = received[from].narrow(0, consumed[from], n)?;
        consumed[from] += n;
        cells.push(ops.reshape(&piece, &dims_of(&cell.region))?);
    }
    assemble(ops, cells, &target.grid)
}

/// The part of `x` (which holds the box `held` of the full tensor) covering `region`.
fn cut(x: &Tensor, held: &[Range<usize>], region: &[Range<usize>]) -> Result<Tensor> {
    let mut view = x.clone();
    for (dim, (h, r)) in held.iter().zip(region).enumerate() {
        view = view.narrow(dim, r.start - h.start, r.len())?;
    }
    Ok(view)
}

fn flat(ops: Ops, x: &Tensor) -> Result<Tensor> {
    Ok(ops.reshape(x, &[x.numel()])?)
}

fn dims_of(region: &[Range<usize>]) -> Vec<usize> {
    region.iter().map(|r| r.len()).collect()
}

/// Joins cells laid out row-major on `grid` into one tensor: rows along the last dim
/// first, then those along the dim before, and so on.
fn assemble(ops: Ops, mut cells: Vec<Tensor>, grid: &[usize]) -> Result<Tensor> {
    for (dim, &count) in grid.iter().enumerate().rev() {
        cells = cells
            .chunks(count)
            .map(|row| concat(ops, row, dim))
            .collect::<Result<_>>()?;
    }
    cells
        .pop()
        .ok_or_else(|| Error::Redistribution(format!("nothing to assemble on grid {grid:?}")))
}
