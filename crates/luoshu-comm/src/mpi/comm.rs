//! [`MpiComm`]: the [`Communicator`] over MPI processes.

use super::runtime::{self, MpiLock, PendingSend};
use super::transfer::{mpi_rank, receive_all};
use super::wire::{self, Envelope, Op, TensorDesc, WireTensor};
use crate::reduce::{reduce_in_rank_order, ReduceError};
use crate::{Communicator, Error, ReduceOp, Result};
use luoshu_tensor::Tensor;
use mpi::topology::{Color, Communicator as _, SimpleCommunicator};
use mpi::Tag;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// MPI guarantees tags up to 32767 (`MPI_TAG_UB` may be larger but need not be).
const MAX_TAG: u64 = 32767;

/// A group of MPI processes.
///
/// Every collective is a complete exchange: each rank sends one message to every other rank
/// carrying "I arrived at collective #seq", the shapes of all its arguments and the data
/// that rank needs, and receives one from each (non-blocking, polled until the timeout).
/// So every rank sees every rank's arguments and reports a mismatch identically, and a
/// rank whose message never came is named in [`Error::Timeout`]. Reductions gather the
/// contributions and reduce them locally in rank order, bit-identical to the threads
/// backend. The cost, fine at a handful of ranks: `size - 1` messages per rank per
/// collective, and an all-reduce moves `size - 1` copies of the tensor into every rank
/// (a ring would move about 2).
///
/// After a collective times out the communicator is unusable (messages of the abandoned
/// operation may still arrive and would pair with later ones): later operations fail with
/// [`Error::Mpi`]. A receive that times out leaves it usable (the message can still be
/// received later) unless the message was already half received.
///
/// Creating a communicator ([`MpiComm::world`], `split`) ends with a blocking
/// `MPI_Comm_dup`/`MPI_Comm_split`, entered only once the exchange showed that every rank
/// arrived; only a rank timing out at the very instant the others complete could leave
/// them blocked there. Messages are limited to 2^31 - 1 bytes (MPI counts are `int`), and
/// point-to-point tags to `0..=32767` (the `MPI_TAG_UB` every MPI guarantees).
pub struct MpiComm {
    handles: Handles,
    rank: usize,
    size: usize,
    timeout: Duration,
    /// Number of the next collective (messages are tagged with it).
    next_seq: AtomicU64,
    /// Set by the first timeout: the error that broke the communicator.
    broken: OnceLock<Error>,
}

/// The MPI communicators of an [`MpiComm`]: one for collectives and one for point-to-point
/// messages, so user tags never collide with collective tags. `None` once freed.
struct Handles {
    collective: Option<SimpleCommunicator>,
    p2p: Option<SimpleCommunicator>,
}

// SAFETY: the handles are plain identifiers, valid in any thread; MPI is initialized with
// MPI_THREAD_SERIALIZED and every MPI call on them is made under the process-wide MPI lock
// (`runtime::lock`), so no two threads call MPI at once.
unsafe impl Send for Handles {}
// SAFETY: as for `Send`.
unsafe impl Sync for Handles {}

impl MpiComm {
    /// All processes of the MPI job (`MPI_COMM_WORLD`), rank and size as given by
    /// `mpirun`. Initializes MPI on first use; MPI then stays initialized until
    /// [`super::finalize`], which an MPI program calls before it exits. Collective: every
    /// process must call it (it fails with [`Error::Timeout`] naming the processes that do
    /// not within `timeout`).
    pub fn world(timeout: Duration) -> Result<Arc<dyn Communicator>> {
        let (world, rank, size) = {
            let _mpi = runtime::initialize()?;
            let world = SimpleCommunicator::world();
            let (rank, size) = (world.rank() as usize, world.size() as usize);
            (world, rank, size)
        };
        let call = Call {
            name: "mpi world",
            comm: &world,
            rank,
            size,
            timeout,
        };
        // Everyone arrived, so the blocking MPI_Comm_dup calls below cannot hang.
        call.exchange(0, Op::Connect, &[], |_| Vec::new())?;
        let _mpi = runtime::lock("mpi world")?;
        Ok(Arc::new(MpiComm::new(
            world.duplicate(),
            world.duplicate(),
            timeout,
        )))
    }

    fn new(collective: SimpleCommunicator, p2p: SimpleCommunicator, timeout: Duration) -> Self {
        MpiComm {
            rank: collective.rank() as usize,
            size: collective.size() as usize,
            handles: Handles {
                collective: Some(collective),
                p2p: Some(p2p),
            },
            timeout,
            next_seq: AtomicU64::new(0),
            broken: OnceLock::new(),
        }
    }

    /// Starts operation `name`: fails if an earlier timeout broke the communicator.
    fn begin(&self, name: &'static str, p2p: bool) -> Result<Call<'_>> {
        if let Some(cause) = self.broken.get() {
            return Err(Error::Mpi(format!(
                "{name} on rank {}: the communicator is unusable after an earlier failure: {cause}",
                self.rank
            )));
        }
        let comm = if p2p {
            &self.handles.p2p
        } else {
            &self.handles.collective
        };
        let comm = comm
            .as_ref()
            .ok_or_else(|| Error::Mpi(format!("{name}: communicator already freed")))?;
        Ok(Call {
            name,
            comm,
            rank: self.rank,
            size: self.size,
            timeout: self.timeout,
        })
    }

    /// Runs collective `op` (see [`Call::exchange`]) and returns the call (for checking
    /// the envelopes) with every rank's envelope. A timeout breaks the communicator.
    fn collective(
        &self,
        name: &'static str,
        op: Op,
        descs: &[TensorDesc],
        payload_for: impl Fn(usize) -> Vec<Tensor>,
    ) -> Result<(Call<'_>, Vec<Envelope>)> {
        let call = self.begin(name, false)?;
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        match call.exchange(seq, op, descs, payload_for) {
            Ok(envelopes) => Ok((call, envelopes)),
            Err(e) => {
                if matches!(e, Error::Timeout { .. }) {
                    let _ = self.broken.set(e.clone());
                }
                Err(e)
            }
        }
    }
}

impl Drop for MpiComm {
    fn drop(&mut self) {
        let handles = [self.handles.collective.take(), self.handles.p2p.take()];
        match runtime::try_lock_running() {
            // MPI_Comm_free, under the lock.
            Some(_mpi) => drop(handles),
            // After MPI_Finalize the handles are gone with MPI; freeing them is an error.
            None => std::mem::forget(handles),
        }
    }
}

/// An error of [`Call::receive`], and whether it leaves the communicator unusable.
struct Failure {
    error: Error,
    breaks_communicator: bool,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            error,
            breaks_communicator: false,
        }
    }
}

/// One operation in progress on one MPI communicator.
struct Call<'a> {
    name: &'static str,
    comm: &'a SimpleCommunicator,
    rank: usize,
    size: usize,
    timeout: Duration,
}

impl Call<'_> {
    fn invalid(&self, message: String) -> Error {
        Error::InvalidArgument {
            op: self.name.into(),
            rank: self.rank,
            message,
        }
    }

    fn p2p_tag(&self, tag: u64) -> Result<Tag> {
        if tag > MAX_TAG {
            return Err(self.invalid(format!(
                "tag {tag} exceeds {MAX_TAG}, the largest tag every MPI supports"
            )));
        }
        Ok(tag as Tag)
    }

    /// Posts a non-blocking send of `bytes` to `dst` (completed later by the runtime).
    fn post(&self, mpi: &mut MpiLock, dst: usize, tag: Tag, bytes: Vec<u8>) -> Result<()> {
        if i32::try_from(bytes.len()).is_err() {
            return Err(self.invalid(format!(
                "a message of {} bytes to rank {dst} exceeds MPI's limit of 2^31 - 1 bytes",
                bytes.len()
            )));
        }
        PendingSend::post(mpi, self.comm, mpi_rank(dst), tag, bytes);
        Ok(())
    }

    fn check_rank(&self, what: &str, rank: usize) -> Result<()> {
        if rank >= self.size {
            return Err(self.invalid(format!(
                "{what} rank {rank} is outside the group of {} ranks",
                self.size
            )));
        }
        Ok(())
    }

    /// Receives one message with `tag` from each of `sources`, or fails with a timeout
    /// naming the sources that did not deliver (and whether a message was lost midway).
    fn receive(&self, sources: &[usize], tag: Tag) -> std::result::Result<Vec<Envelope>, Failure> {
        let deadline = Instant::now() + self.timeout;
        match receive_all(self.name, self.comm, sources, tag, deadline)? {
            Ok(messages) => Ok(messages
                .iter()
                .map(|m| wire::decode(m))
                .collect::<Result<_>>()?),
            Err(missing) => Err(Failure {
                error: Error::Timeout {
                    op: self.name.into(),
                    rank: self.rank,
                    size: self.size,
                    missing: missing.ranks,
                    timeout: self.timeout,
                },
                breaks_communicator: missing.abandoned_transfer,
            }),
        }
    }

    /// The complete exchange behind every collective (see [`MpiComm`]): sends each other
    /// rank `p` one message with `descs` and the tensors `payload_for(p)`, receives one
    /// from each, and checks that all ranks are in the same call. Returns every rank's
    /// envelope in rank order; this rank's payload is a fresh copy of `payload_for(rank)`.
    fn exchange(
        &self,
        seq: u64,
        op: Op,
        descs: &[TensorDesc],
        payload_for: impl Fn(usize) -> Vec<Tensor>,
    ) -> Result<Vec<Envelope>> {
        let tag = (seq % (MAX_TAG + 1)) as Tag;
        let peers: Vec<usize> = (0..self.size).filter(|&p| p != self.rank).collect();
        let messages = peers
            .iter()
            .map(|&p| wire::encode(seq, op, descs, &payload_for(p)))
            .collect::<Result<Vec<_>>>()?;
        {
            let mut mpi = runtime::lock(self.name)?;
            for (&p, bytes) in peers.iter().zip(messages) {
                self.post(&mut mpi, p, tag, bytes)?;
            }
        }
        // A collective that timed out leaves its messages behind: always fatal.
        let mut received = self.receive(&peers, tag).map_err(|f| f.error)?.into_iter();
        let mut envelopes = Vec::with_capacity(self.size);
        for p in 0..self.size {
            let envelope = if p == self.rank {
                Envelope {
                    seq,
                    op,
                    descs: descs.to_vec(),
                    payload: payload_for(p)
                        .iter()
                        .map(WireTensor::of)
                        .collect::<Result<_>>()?,
                }
            } else {
                received
                    .next()
                    .ok_or_else(|| Error::Mpi(format!("{}: lost a message", self.name)))?
            };
            if envelope.seq != seq || !envelope.op.same_call(&op) {
                return Err(self.invalid(format!(
                    "rank {p} called {} as collective #{} while this rank called {op} as #{seq}; \
                     every rank must call the same collectives in the same order",
                    envelope.op, envelope.seq
                )));
            }
            envelopes.push(envelope);
        }
        Ok(envelopes)
    }

    /// Checks that every rank described as many tensors as rank 0, each agreeing with rank
    /// 0's by `same`; the error names the first rank that differs.
    fn check_agreement(
        &self,
        envelopes: &[Envelope],
        what: &str,
        same: impl Fn(&TensorDesc, &TensorDesc) -> bool,
    ) -> Result<()> {
        let Some(first) = envelopes.first() else {
            return Ok(());
        };
        for (p, envelope) in envelopes.iter().enumerate() {
            if envelope.descs.len() != first.descs.len() {
                return Err(self.invalid(format!(
                    "rank {p} passed {} tensors but rank 0 passed {}",
                    envelope.descs.len(),
                    first.descs.len()
                )));
            }
            for (i, (a, b)) in first.descs.iter().zip(&envelope.descs).enumerate() {
                if !same(a, b) {
                    return Err(self.invalid(format!(
                        "{what}: rank {p} passed {b} at position {i} but rank 0 passed {a}"
                    )));
                }
            }
        }
        Ok(())
    }

    fn check_part_count(&self, envelopes: &[Envelope]) -> Result<()> {
        for (p, envelope) in envelopes.iter().enumerate() {
            if envelope.descs.len() != self.size {
                return Err(self.invalid(format!(
                    "rank {p} passed {} parts for a group of {} ranks",
                    envelope.descs.len(),
                    self.size
                )));
            }
        }
        Ok(())
    }
}

/// The one tensor an envelope must deliver.
fn single_payload(call: &Call, rank: usize, envelope: Envelope) -> Result<WireTensor> {
    let count = envelope.payload.len();
    let mut payload = envelope.payload.into_iter();
    match (payload.next(), payload.next()) {
        (Some(t), None) => Ok(t),
        _ => Err(Error::Mpi(format!(
            "{}: rank {rank} delivered {count} tensors instead of 1",
            call.name
        ))),
    }
}

fn single_payloads(call: &Call, envelopes: Vec<Envelope>) -> Result<Vec<WireTensor>> {
    envelopes
        .into_iter()
        .enumerate()
        .map(|(p, e)| single_payload(call, p, e))
        .collect()
}

fn into_tensors(parts: Vec<WireTensor>) -> Result<Vec<Tensor>> {
    parts.into_iter().map(WireTensor::into_tensor).collect()
}

/// Reduces one contribution per rank (agreeing in shape and dtype) in rank order with the
/// reduction code every backend shares.
fn reduce(call: &Call, contributions: &[WireTensor], op: ReduceOp) -> Result<Tensor> {
    let Some(first) = contributions.first() else {
        return Err(ReduceError::NoInputs.at(call.name, call.rank));
    };
    let inputs: Vec<&[u8]> = contributions.iter().map(|c| c.bytes.as_slice()).collect();
    let mut out = vec![0u8; first.bytes.len()];
    reduce_in_rank_order(first.desc.dtype, op, &inputs, &mut out)
        .map_err(|e| e.at(call.name, call.rank))?;
    wire::tensor_from_bytes(first.desc.clone(), &out)
}

fn same_desc(a: &TensorDesc, b: &TensorDesc) -> bool {
    a == b
}

fn same_dtype(a: &TensorDesc, b: &TensorDesc) -> bool {
    a.dtype == b.dtype
}

impl Communicator for MpiComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn backend(&self) -> &'static str {
        "mpi"
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn split(&self, color: usize, key: usize) -> Result<Arc<dyn Communicator>> {
        const NAME: &str = "split";
        let (call, envelopes) =
            self.collective(NAME, Op::Split { color, key }, &[], |_| Vec::new())?;
        for (p, e) in envelopes.iter().enumerate() {
            if let Op::Split { color, key } = e.op {
                if i32::try_from(color).is_err() || i32::try_from(key).is_err() {
                    return Err(call.invalid(format!(
                        "rank {p} passed color {color} and key {key}; MPI needs both below 2^31"
                    )));
                }
            }
        }
        // Everyone arrived, so the blocking MPI_Comm_split and MPI_Comm_dup cannot hang.
        let _mpi = runtime::lock(NAME)?;
        let group = call
            .comm
            .split_by_color_with_key(Color::with_value(color as i32), key as i32)
            .ok_or_else(|| Error::Mpi(format!("{NAME}: MPI returned no communicator")))?;
        let p2p = group.duplicate();
        Ok(Arc::new(MpiComm::new(group, p2p, self.timeout)))
    }

    fn all_reduce(&self, x: &Tensor, op: ReduceOp) -> Result<Tensor> {
        const NAME: &str = "all_reduce";
        let (call, envelopes) =
            self.collective(NAME, Op::AllReduce(op), &[TensorDesc::of(x)], |_| {
                vec![x.clone()]
            })?;
        call.check_agreement(&envelopes, "shapes and dtypes must match", same_desc)?;
        reduce(&call, &single_payloads(&call, envelopes)?, op)
    }

    fn all_gather(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        const NAME: &str = "all_gather";
        let (call, envelopes) =
            self.collective(NAME, Op::AllGather, &[TensorDesc::of(x)], |_| {
                vec![x.clone()]
            })?;
        call.check_agreement(&envelopes, "dtypes must match", same_dtype)?;
        into_tensors(single_payloads(&call, envelopes)?)
    }

    fn reduce_scatter(&self, parts: &[Tensor], op: ReduceOp) -> Result<Tensor> {
        const NAME: &str = "reduce_scatter";
        let descs: Vec<TensorDesc> = parts.iter().map(TensorDesc::of).collect();
        // With a wrong part count nothing is delivered; the check below fails everywhere.
        let (call, envelopes) = self.collective(NAME, Op::ReduceScatter(op), &descs, |p| {
            parts.get(p).cloned().into_iter().collect()
        })?;
        call.check_part_count(&envelopes)?;
        call.check_agreement(&envelopes, "shapes and dtypes must match", same_desc)?;
        reduce(&call, &single_payloads(&call, envelopes)?, op)
    }

    fn all_to_all(&self, parts: &[Tensor]) -> Result<Vec<Tensor>> {
        const NAME: &str = "all_to_all";
        let descs: Vec<TensorDesc> = parts.iter().map(TensorDesc::of).collect();
        let (call, envelopes) = self.collective(NAME, Op::AllToAll, &descs, |p| {
            parts.get(p).cloned().into_iter().collect()
        })?;
        call.check_part_count(&envelopes)?;
        into_tensors(single_payloads(&call, envelopes)?)
    }

    fn broadcast(&self, x: &Tensor, root: usize) -> Result<Tensor> {
        const NAME: &str = "broadcast";
        let is_root = self.rank == root;
        let descs = if is_root {
            vec![TensorDesc::of(x)]
        } else {
            vec![]
        };
        let (call, mut envelopes) =
            self.collective(NAME, Op::Broadcast { root }, &descs, |_| {
                if is_root {
                    vec![x.clone()]
                } else {
                    Vec::new()
                }
            })?;
        call.check_rank("root", root)?;
        single_payload(&call, root, envelopes.swap_remove(root))?.into_tensor()
    }

    fn send(&self, x: &Tensor, dst: usize, tag: u64) -> Result<()> {
        let call = self.begin("send", true)?;
        call.check_rank("destination", dst)?;
        let mpi_tag = call.p2p_tag(tag)?;
        let bytes = wire::encode(0, Op::PointToPoint { tag }, &[], std::slice::from_ref(x))?;
        let mut mpi = runtime::lock(call.name)?;
        mpi.reap();
        call.post(&mut mpi, dst, mpi_tag, bytes)
    }

    fn recv(&self, src: usize, tag: u64) -> Result<Tensor> {
        let mut received = self.batched_receive("recv", &[src], tag)?;
        received
            .pop()
            .ok_or_else(|| Error::Mpi("recv: lost a message".into()))
    }

    fn batched_send_recv(
        &self,
        sends: &[(usize, Tensor)],
        recv_from: &[usize],
        tag: u64,
    ) -> Result<Vec<Tensor>> {
        const NAME: &str = "batched_send_recv";
        let call = self.begin(NAME, true)?;
        let mpi_tag = call.p2p_tag(tag)?;
        for &(dst, _) in sends {
            call.check_rank("destination", dst)?;
        }
        let messages = sends
            .iter()
            .map(|(dst, x)| {
                let bytes =
                    wire::encode(0, Op::PointToPoint { tag }, &[], std::slice::from_ref(x))?;
                Ok((*dst, bytes))
            })
            .collect::<Result<Vec<_>>>()?;
        {
            let mut mpi = runtime::lock(NAME)?;
            for (dst, bytes) in messages {
                call.post(&mut mpi, dst, mpi_tag, bytes)?;
            }
        }
        self.batched_receive(NAME, recv_from, tag)
    }

    fn barrier(&self) -> Result<()> {
        self.collective("barrier", Op::Barrier, &[], |_| Vec::new())
            .map(drop)
    }
}

impl MpiComm {
    /// Receives one point-to-point message from each of `sources` with `tag`.
    fn batched_receive(
        &self,
        name: &'static str,
        sources: &[usize],
        tag: u64,
    ) -> Result<Vec<Tensor>> {
        let call = self.begin(name, true)?;
        let mpi_tag = call.p2p_tag(tag)?;
        for &src in sources {
            call.check_rank("source", src)?;
        }
        let envelopes = call.receive(sources, mpi_tag).map_err(|failure| {
            if failure.breaks_communicator {
                let _ = self.broken.set(failure.error.clone());
            }
            failure.error
        })?;
        envelopes
            .into_iter()
            .zip(sources)
            .map(|(envelope, &src)| {
                if envelope.op != (Op::PointToPoint { tag }) {
                    return Err(call.invalid(format!(
                        "expected a tensor sent by rank {src} with tag {tag}, got a message of {}",
                        envelope.op
                    )));
                }
                single_payload(&call, src, envelope)?.into_tensor()
            })
            .collect()
    }
}
