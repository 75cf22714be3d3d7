//! The graph executor's collective nodes run over communicators, one per group name.

use luoshu_backend::{Backend, Ops};
use luoshu_comm::{Communicator, ReduceOp};
use luoshu_graph::{CollectiveReduce, Collectives};
use luoshu_tensor::Tensor;
use std::collections::HashMap;
use std::sync::Arc;

/// Collectives of a rank's plans: group name (as collective nodes carry it) → communicator.
pub struct CommCollectives {
    groups: HashMap<String, Arc<dyn Communicator>>,
    backend: Arc<dyn Backend>,
}

impl CommCollectives {
    /// Collectives over `groups`, with tensors built on `backend`.
    pub fn new(groups: HashMap<String, Arc<dyn Communicator>>, backend: Arc<dyn Backend>) -> Self {
        CommCollectives { groups, backend }
    }

    fn group(&self, name: &str) -> luoshu_graph::Result<&Arc<dyn Communicator>> {
        self.groups
            .get(name)
            .ok_or_else(|| luoshu_graph::Error::Invalid {
                detail: format!(
                    "collective over unknown group `{name}` (known: {:?})",
                    self.groups.keys().collect::<Vec<_>>()
                ),
            })
    }

    /// Copy `parts` into consecutive pieces of `out` along `dim`.
    fn concat_into(&self, parts: &[Tensor], dim: usize, out: &Tensor) -> luoshu_graph::Result<()> {
        let refs: Vec<&Tensor> = parts.iter().collect();
        Ok(Ops::new(self.backend.as_ref()).concat_into(&refs, dim, out)?)
    }
}

fn comm_error(e: luoshu_comm::Error) -> luoshu_graph::Error {
    luoshu_graph::Error::Collective(e.to_string())
}

impl Collectives for CommCollectives {
    fn all_reduce(
        &self,
        group: &str,
        op: CollectiveReduce,
        x: &Tensor,
        out: &Tensor,
    ) -> luoshu_graph::Result<()> {
        let op = match op {
            CollectiveReduce::Sum => ReduceOp::Sum,
            CollectiveReduce::Max => ReduceOp::Max,
        };
        let reduced = self.group(group)?.all_reduce(x, op).map_err(comm_error)?;
        Ok(Ops::new(self.backend.as_ref()).copy_into(&reduced, out)?)
    }

    fn all_gather(
        &self,
        group: &str,
        dim: usize,
        x: &Tensor,
        out: &Tensor,
    ) -> luoshu_graph::Result<()> {
        let parts = self.group(group)?.all_gather(x).map_err(comm_error)?;
        self.concat_into(&parts, dim, out)
    }

    fn reduce_scatter(
        &self,
        group: &str,
        dim: usize,
        x: &Tensor,
        out: &Tensor,
    ) -> luoshu_graph::Result<()> {
        let comm = self.group(group)?;
        let piece = out.dims()[dim];
        let parts = (0..comm.size())
            .map(|i| x.narrow(dim, i * piece, piece))
            .collect::<luoshu_tensor::Result<Vec<_>>>()?;
        let mine = comm
            .reduce_scatter(&parts, ReduceOp::Sum)
            .map_err(comm_error)?;
        Ok(Ops::new(self.backend.as_ref()).copy_into(&mine, out)?)
    }

    fn ring_shift(
        &self,
        group: &str,
        offset: usize,
        x: &Tensor,
        out: &Tensor,
    ) -> luoshu_graph::Result<()> {
        let comm = self.group(group)?;
        let (rank, size) = (comm.rank(), comm.size());
        let ops = Ops::new(self.backend.as_ref());
        if offset.is_multiple_of(size) {
            return Ok(ops.copy_into(x, out)?);
        }
        let to = (rank + offset) % size;
        let from = (rank + size - offset % size) % size;
        let received = comm
            .batched_send_recv(&[(to, x.clone())], &[from], RING_SHIFT_TAG)
            .map_err(comm_error)?;
        Ok(ops.copy_into(&received[0], out)?)
    }
}

/// The tag of ring-shift messages. Shifts over one group run in the same order on every
/// rank and messages between a pair of ranks with one tag arrive in order, so one tag
/// serves every shift.
const RING_SHIFT_TAG: u64 = 0x6c75_6f73_6872_696e;
