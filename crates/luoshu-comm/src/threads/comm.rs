use super::all_reduce::{all_reduce, all_reduce_in_place};
use super::checks::{all_match, part_counts, Source};
use super::group::Group;
use super::op::Op;
use super::published::{reduce_published, Published};
use crate::{Communicator, Error, ReduceOp, Result};
use luoshu_tensor::Tensor;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// One rank of a [`Group`]. Dropping it makes the rank leave the group.
pub(super) struct ThreadComm {
    group: Arc<Group>,
    rank: usize,
}

/// A rank's `split` arguments, plus an empty slot for the new group: the members of a
/// color all use the slot of their new rank 0, and whichever member gets there first fills
/// it.
struct SplitRequest {
    color: usize,
    key: usize,
    subgroup: Arc<OnceLock<Arc<Group>>>,
}

impl ThreadComm {
    pub(super) fn new(group: Arc<Group>, rank: usize) -> Self {
        ThreadComm { group, rank }
    }

    fn invalid(&self, op: &str, message: String) -> Error {
        Error::InvalidArgument {
            op: op.to_string(),
            rank: self.rank,
            message,
        }
    }

    /// Fails unless `peer` (named `role` in the message) is a rank of the group.
    fn check_peer(&self, op: &str, role: &str, peer: usize) -> Result<()> {
        if peer < self.size() {
            return Ok(());
        }
        Err(self.invalid(
            op,
            format!(
                "{role} {peer} is out of range for a group of {} ranks",
                self.size()
            ),
        ))
    }

    fn published_parts(parts: &[Tensor]) -> Result<Vec<Published>> {
        parts.iter().map(Published::new).collect()
    }
}

impl Communicator for ThreadComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.group.size()
    }

    fn backend(&self) -> &'static str {
        "threads"
    }

    fn timeout(&self) -> Duration {
        self.group.timeout()
    }

    fn split(&self, color: usize, key: usize) -> Result<Arc<dyn Communicator>> {
        let request = SplitRequest {
            color,
            key,
            subgroup: Arc::new(OnceLock::new()),
        };
        self.group
            .collective(self.rank, Op::Split, request, |requests| {
                let members = || {
                    requests
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.color == color)
                        .map(|(old_rank, r)| ((r.key, old_rank), *r))
                };
                let me = (key, self.rank);
                let size = members().count();
                let new_rank = members().filter(|(order, _)| *order < me).count();
                let leader = members()
                    .min_by_key(|(order, _)| *order)
                    .map_or(requests[self.rank], |(_, r)| r);
                let group = leader
                    .subgroup
                    .get_or_init(|| Group::new(size, self.timeout()))
                    .clone();
                Ok(Arc::new(ThreadComm::new(group, new_rank)) as Arc<dyn Communicator>)
            })
    }

    fn all_reduce(&self, x: &Tensor, op: ReduceOp) -> Result<Tensor> {
        all_reduce(&self.group, self.rank, x, op)
    }

    fn all_reduce_in_place(&self, x: &Tensor, op: ReduceOp) -> Result<()> {
        all_reduce_in_place(&self.group, self.rank, x, op)
    }

    fn all_gather(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let x = Published::new(x)?;
        self.group
            .collective(self.rank, Op::AllGather, x, |inputs| {
                let sources = inputs.iter().enumerate().map(|(rank, &x)| {
                    let source = Source { rank, part: None };
                    (source, x)
                });
                all_match(Op::AllGather.name(), self.rank, false, sources)?;
                inputs.iter().map(|x| x.copy()).collect()
            })
    }

    fn reduce_scatter(&self, parts: &[Tensor], op: ReduceOp) -> Result<Tensor> {
        let parts = Self::published_parts(parts)?;
        let name = Op::ReduceScatter(op).name();
        self.group
            .collective(self.rank, Op::ReduceScatter(op), parts, |inputs| {
                part_counts(name, self.rank, self.size(), inputs)?;
                let every_part = inputs.iter().enumerate().flat_map(|(rank, parts)| {
                    parts.iter().enumerate().map(move |(part, x)| {
                        let source = Source {
                            rank,
                            part: Some(part),
                        };
                        (source, x)
                    })
                });
                all_match(name, self.rank, false, every_part)?;
                for part in 0..self.size() {
                    let column = inputs.iter().enumerate().map(|(rank, parts)| {
                        let source = Source {
                            rank,
                            part: Some(part),
                        };
                        (source, &parts[part])
                    });
                    all_match(name, self.rank, true, column)?;
                }
                let mine: Vec<&Published> = inputs.iter().map(|p| &p[self.rank]).collect();
                reduce_published(name, self.rank, mine[self.rank].tensor(), &mine, op)
            })
    }

    fn all_to_all(&self, parts: &[Tensor]) -> Result<Vec<Tensor>> {
        let parts = Self::published_parts(parts)?;
        let name = Op::AllToAll.name();
        self.group
            .collective(self.rank, Op::AllToAll, parts, |inputs| {
                part_counts(name, self.rank, self.size(), inputs)?;
                inputs.iter().map(|parts| parts[self.rank].copy()).collect()
            })
    }

    fn broadcast(&self, x: &Tensor, root: usize) -> Result<Tensor> {
        let op = Op::Broadcast { root };
        let x = if self.rank == root {
            Some(Published::new(x)?)
        } else {
            None
        };
        self.group.collective(self.rank, op, x, |inputs| {
            self.check_peer(op.name(), "root", root)?;
            match inputs[root] {
                Some(x) => x.copy(),
                None => Err(self.invalid(op.name(), format!("root {root} published no tensor"))),
            }
        })
    }

    fn send(&self, x: &Tensor, dst: usize, tag: u64) -> Result<()> {
        self.check_peer("send", "destination", dst)?;
        self.group
            .post("send", self.rank, dst, tag, x.to_contiguous()?)
    }

    fn recv(&self, src: usize, tag: u64) -> Result<Tensor> {
        self.check_peer("recv", "source", src)?;
        self.group
            .receive("recv", self.rank, src, tag, self.group.deadline())
    }

    fn batched_send_recv(
        &self,
        sends: &[(usize, Tensor)],
        recv_from: &[usize],
        tag: u64,
    ) -> Result<Vec<Tensor>> {
        const NAME: &str = "batched_send_recv";
        for (dst, _) in sends {
            self.check_peer(NAME, "destination", *dst)?;
        }
        for &src in recv_from {
            self.check_peer(NAME, "source", src)?;
        }
        let deadline = self.group.deadline();
        for (dst, x) in sends {
            self.group
                .post(NAME, self.rank, *dst, tag, x.to_contiguous()?)?;
        }
        recv_from
            .iter()
            .map(|&src| self.group.receive(NAME, self.rank, src, tag, deadline))
            .collect()
    }

    fn barrier(&self) -> Result<()> {
        self.group
            .collective(self.rank, Op::Barrier, (), |_| Ok(()))
    }
}

impl Drop for ThreadComm {
    fn drop(&mut self) {
        let reason = if std::thread::panicking() {
            "its thread panicked"
        } else {
            "its communicator was dropped"
        };
        self.group.depart(self.rank, reason.to_string());
    }
}
