//! [`MpiComm`]: the [`Communicator`] over MPI processes.

use super::native::{self, Bytes, InFlight};
use super::runtime::{self, MpiLock, PendingSend};
use super::transfer::{mpi_rank, receive_all};
use super::wire::{self, Envelope, Op, TensorDesc, WireTensor, NO_CACHED_SPLIT};
use crate::reduce::{check_reducible, reduce_in_rank_order, ReduceError};
use crate::{Communicator, Error, ReduceOp, Result};
use luoshu_tensor::{Borrows, DType, Tensor};
use mpi::topology::{Color, Communicator as _, SimpleCommunicator};
use mpi::Tag;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// MPI guarantees tags up to 32767 (`MPI_TAG_UB` may be larger but need not be).
const MAX_TAG: u64 = 32767;

/// A group of MPI processes.
///
/// Every collective starts with a complete exchange of small messages: each rank sends one
/// to every other rank carrying "I arrived at collective #seq" and the shapes of all its
/// arguments, and receives one from each (non-blocking, polled until the timeout). So every
/// rank sees every rank's arguments and reports a mismatch identically, and a rank whose
/// message never came is named in [`Error::Timeout`]. Then the data moves through MPI's own
/// non-blocking collectives on the tensors' storage, polled with a back-off that starts in
/// microseconds until they complete or the timeout passes (every rank arrived, so only a
/// rank dying mid-transfer can stall them; the timeout then names every peer, since MPI
/// does not say which one is late):
///
/// - all-gather: one `MPI_Ibcast` per rank, straight into each result's fresh storage
///   (uneven sizes, any dtype); broadcast: one `MPI_Ibcast`;
/// - reduce-scatter: `MPI_Ialltoallv` delivers part `p` of every rank to rank `p` (read in
///   place from the input, into a scratch buffer kept between calls), which reduces them in
///   rank order with the reduction code every backend shares;
/// - all-reduce: that reduce-scatter over nearly equal chunks, then one `MPI_Ibcast` per
///   chunk from the rank that reduced it.
///
/// So reductions combine contributions in rank order, `((x0 + x1) + x2) + …`, in every
/// dtype: results are bit-identical across runs and to the threads backend. (MPI's own
/// `MPI_Allreduce`/`MPI_Iallreduce` are not in rank order for 4 ranks and more — OpenMPI
/// 4.1 gave other bits for 22 % of order-sensitive f32 sums on 4 ranks — and `MPI_MAX`
/// drops NaN; see `examples/mpi_allreduce_bench.rs` and docs/benchmarks.md.) All-to-all,
/// and reductions of dtypes reductions reject, use the exchange itself to carry the data.
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
    /// Communicators `split` created, by this rank's `(color, key)`, with the collective
    /// number of the split that created them: a later split with the same arguments on every
    /// rank returns the same communicator instead of calling `MPI_Comm_split` again.
    splits: Mutex<HashMap<(usize, usize), CachedSplit>>,
    /// Where reductions receive the contributions they reduce, kept between calls.
    scratch: Mutex<Option<Bytes>>,
}

/// A communicator `split` made, with the number of the collective that made it.
type CachedSplit = (u64, Arc<MpiComm>);

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
            splits: Mutex::new(HashMap::new()),
            scratch: Mutex::new(None),
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
        self.numbered_collective(name, op, descs, payload_for)
            .map(|(call, _, envelopes)| (call, envelopes))
    }

    /// [`MpiComm::collective`], also returning the collective's number.
    fn numbered_collective(
        &self,
        name: &'static str,
        op: Op,
        descs: &[TensorDesc],
        payload_for: impl Fn(usize) -> Vec<Tensor>,
    ) -> Result<(Call<'_>, u64, Vec<Envelope>)> {
        let call = self.begin(name, false)?;
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        match call.exchange(seq, op, descs, payload_for) {
            Ok(envelopes) => Ok((call, seq, envelopes)),
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

    /// Fails unless a message of `bytes` bytes fits MPI's `int` counts.
    fn check_message_size(&self, bytes: usize) -> Result<()> {
        if native::count(bytes).is_none() {
            return Err(self.invalid(format!(
                "a message of {bytes} bytes exceeds MPI's limit of 2^31 - 1 bytes"
            )));
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

/// The one tensor a rank described (all-gather's `x`, broadcast's root's `x`).
fn single_desc(call: &Call, envelope: Envelope) -> Result<TensorDesc> {
    let count = envelope.descs.len();
    let mut descs = envelope.descs.into_iter();
    match (descs.next(), descs.next()) {
        (Some(desc), None) => Ok(desc),
        _ => Err(call.invalid(format!(
            "a rank described {count} tensors instead of 1 (the root must pass its tensor)"
        ))),
    }
}

/// Elements of chunk `index` of `parts` nearly equal chunks of `numel` elements (the first
/// `numel % parts` chunks have one element more).
fn chunk(numel: usize, parts: usize, index: usize) -> std::ops::Range<usize> {
    let (base, extra) = (numel / parts, numel % parts);
    let start = index * base + index.min(extra);
    start..start + base + usize::from(index < extra)
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
        let cached = self.cached_split(color, key);
        let cached_seq = cached.as_ref().map_or(NO_CACHED_SPLIT, |(seq, _)| *seq);
        let op = Op::Split {
            color,
            key,
            cached: cached_seq,
        };
        let (call, seq, envelopes) = self.numbered_collective(NAME, op, &[], |_| Vec::new())?;
        let mut every_rank_cached = cached_seq != NO_CACHED_SPLIT;
        for (p, e) in envelopes.iter().enumerate() {
            if let Op::Split { color, key, cached } = e.op {
                if i32::try_from(color).is_err() || i32::try_from(key).is_err() {
                    return Err(call.invalid(format!(
                        "rank {p} passed color {color} and key {key}; MPI needs both below 2^31"
                    )));
                }
                every_rank_cached &= cached == cached_seq;
            }
        }
        // Every rank holds a usable communicator from the same earlier split, made with the
        // arguments each passes now: that split made exactly the groups asked for.
        if every_rank_cached {
            if let Some((_, comm)) = cached {
                return Ok(comm);
            }
        }
        // Everyone arrived, so the blocking MPI_Comm_split and MPI_Comm_dup cannot hang.
        let comm = {
            let _mpi = runtime::lock(NAME)?;
            let group = call
                .comm
                .split_by_color_with_key(Color::with_value(color as i32), key as i32)
                .ok_or_else(|| Error::Mpi(format!("{NAME}: MPI returned no communicator")))?;
            let p2p = group.duplicate();
            Arc::new(MpiComm::new(group, p2p, self.timeout))
        };
        self.splits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((color, key), (seq, comm.clone()));
        Ok(comm)
    }

    fn all_reduce(&self, x: &Tensor, op: ReduceOp) -> Result<Tensor> {
        const NAME: &str = "all_reduce";
        let width = x.dtype().size_in_bytes();
        let native =
            check_reducible(x.dtype()).is_ok() && native::count(x.numel() * width).is_some();
        // The native path exchanges only descriptions; the generic one (which reports
        // unsupported dtypes and oversized messages) also the data. Ranks decide alike
        // whenever their descriptions agree, which is checked before either.
        let (call, envelopes) =
            self.collective(NAME, Op::AllReduce(op), &[TensorDesc::of(x)], |_| {
                if native {
                    Vec::new()
                } else {
                    vec![x.clone()]
                }
            })?;
        call.check_agreement(&envelopes, "shapes and dtypes must match", same_desc)?;
        if !native {
            return reduce(&call, &single_payloads(&call, envelopes)?, op);
        }
        // Reduce-scatter of nearly equal chunks (rank p reduces chunk p), then every rank
        // broadcasts its reduced chunk: each element is reduced once, in rank order.
        let input = Bytes::of(x)?;
        let chunks: Vec<(usize, usize)> = (0..self.size)
            .map(|p| {
                let elements = chunk(x.numel(), self.size, p);
                (elements.start * width, elements.len() * width)
            })
            .collect();
        let output = Bytes::fresh(input.len());
        let (start, len) = chunks[self.rank];
        self.reduce_pieces(
            &call,
            &input,
            &chunks,
            &output.range(start, len),
            x.dtype(),
            op,
        )?;
        self.run_native(&call, |mpi, flight| {
            for (root, &(start, len)) in chunks.iter().enumerate() {
                flight.broadcast(mpi, call.comm, &output.range(start, len), root)?;
            }
            Ok(())
        })?;
        output.into_tensor(x.dtype(), x.dims())
    }

    fn all_gather(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        const NAME: &str = "all_gather";
        let (call, envelopes) =
            self.collective(NAME, Op::AllGather, &[TensorDesc::of(x)], |_| Vec::new())?;
        call.check_agreement(&envelopes, "dtypes must match", same_dtype)?;
        // One broadcast per rank, each into a fresh buffer of its own (results own their
        // storage); this rank's own part is a local copy.
        let descs = envelopes
            .into_iter()
            .map(|e| single_desc(&call, e))
            .collect::<Result<Vec<_>>>()?;
        let input = Bytes::of(x)?;
        let buffers: Vec<Bytes> = descs
            .iter()
            .enumerate()
            .map(|(p, desc)| {
                if p == self.rank {
                    input.clone()
                } else {
                    Bytes::fresh(desc.bytes())
                }
            })
            .collect();
        for desc in &descs {
            call.check_message_size(desc.bytes())?;
        }
        // This rank's result: a copy of its input (which its broadcast reads).
        let mut own = Some(Bytes::copy_of(&input)?);
        self.run_native(&call, |mpi, flight| {
            for (root, buffer) in buffers.iter().enumerate() {
                flight.broadcast(mpi, call.comm, buffer, root)?;
            }
            Ok(())
        })?;
        drop(input);
        buffers
            .into_iter()
            .zip(descs)
            .enumerate()
            .map(|(p, (buffer, desc))| {
                let own = if p == self.rank { own.take() } else { None };
                let buffer = own.unwrap_or(buffer);
                buffer.into_tensor(desc.dtype, &desc.dims)
            })
            .collect()
    }

    fn reduce_scatter(&self, parts: &[Tensor], op: ReduceOp) -> Result<Tensor> {
        const NAME: &str = "reduce_scatter";
        let descs: Vec<TensorDesc> = parts.iter().map(TensorDesc::of).collect();
        let total: usize = descs.iter().map(TensorDesc::bytes).sum();
        let native = parts.iter().all(|p| check_reducible(p.dtype()).is_ok())
            && native::count(total).is_some();
        // As in all_reduce: agreeing descriptions mean agreeing decisions. With a wrong part
        // count nothing is delivered; the check below fails everywhere.
        let (call, envelopes) = self.collective(NAME, Op::ReduceScatter(op), &descs, |p| {
            if native {
                Vec::new()
            } else {
                parts.get(p).cloned().into_iter().collect()
            }
        })?;
        call.check_part_count(&envelopes)?;
        call.check_agreement(&envelopes, "shapes and dtypes must match", same_desc)?;
        if !native {
            return reduce(&call, &single_payloads(&call, envelopes)?, op);
        }
        let input = Bytes::concatenated(parts)?;
        let mut start = 0;
        let pieces: Vec<(usize, usize)> = descs
            .iter()
            .map(|d| {
                let piece = (start, d.bytes());
                start += d.bytes();
                piece
            })
            .collect();
        let mine = &parts[self.rank];
        let output = Bytes::fresh(descs[self.rank].bytes());
        self.reduce_pieces(&call, &input, &pieces, &output, mine.dtype(), op)?;
        output.into_tensor(mine.dtype(), mine.dims())
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
            self.collective(NAME, Op::Broadcast { root }, &descs, |_| Vec::new())?;
        call.check_rank("root", root)?;
        let desc = single_desc(&call, envelopes.swap_remove(root))?;
        call.check_message_size(desc.bytes())?;
        if is_root {
            let input = Bytes::of(x)?;
            let own = Bytes::copy_of(&input)?;
            self.run_native(&call, |mpi, flight| {
                flight.broadcast(mpi, call.comm, &input, root)
            })?;
            drop(input);
            return own.into_tensor(desc.dtype, &desc.dims);
        }
        let output = Bytes::fresh(desc.bytes());
        self.run_native(&call, |mpi, flight| {
            flight.broadcast(mpi, call.comm, &output, root)
        })?;
        output.into_tensor(desc.dtype, &desc.dims)
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
    /// Runs the non-blocking MPI collectives `start` posts and waits for them with a fresh
    /// timeout. Every rank arrived (the exchange before showed it), so a timeout here means
    /// a peer died or stalled mid-transfer: it names every peer and breaks the communicator.
    fn run_native(
        &self,
        call: &Call,
        start: impl FnOnce(&MpiLock, &mut InFlight) -> Result<()>,
    ) -> Result<()> {
        let mut flight = InFlight::default();
        {
            let mpi = runtime::lock(call.name)?;
            start(&mpi, &mut flight)?;
        }
        let deadline = Instant::now() + self.timeout;
        if flight.wait(call.name, deadline)? {
            return Ok(());
        }
        let error = Error::Timeout {
            op: call.name.into(),
            rank: self.rank,
            size: self.size,
            missing: (0..self.size).filter(|&p| p != self.rank).collect(),
            timeout: self.timeout,
        };
        let _ = self.broken.set(error.clone());
        Err(error)
    }

    /// Sends piece `p` of `send` (`pieces[p]` = (start, length) in bytes) to rank `p`
    /// (`MPI_Ialltoallv`, into this communicator's scratch buffer), then reduces the pieces
    /// every rank sent this one in rank order into `out`.
    fn reduce_pieces(
        &self,
        call: &Call,
        send: &Bytes,
        pieces: &[(usize, usize)],
        out: &Bytes,
        dtype: DType,
        op: ReduceOp,
    ) -> Result<()> {
        let mine = pieces[self.rank].1;
        let whole = self.take_scratch(mine * self.size);
        let scratch = whole.range(0, mine * self.size);
        // Sizes were checked to fit an int (the total is at most the input's size).
        let int = |n: usize| native::count(n).unwrap_or(i32::MAX);
        let send_counts = pieces.iter().map(|&(_, len)| int(len)).collect();
        let send_displs = pieces.iter().map(|&(start, _)| int(start)).collect();
        let recv_counts = vec![int(mine); self.size];
        let recv_displs = (0..self.size).map(|p| int(p * mine)).collect();
        self.run_native(call, |mpi, flight| {
            flight.all_to_all(
                mpi,
                call.comm,
                (send, send_counts, send_displs),
                (&scratch, recv_counts, recv_displs),
            )
        })?;
        let borrows = Borrows::new();
        let received = scratch.read(&borrows)?;
        let inputs: Vec<&[u8]> = (0..self.size)
            .map(|p| &received[p * mine..(p + 1) * mine])
            .collect();
        let out = out.write(&borrows)?;
        reduce_in_rank_order(dtype, op, &inputs, out).map_err(|e| e.at(call.name, call.rank))?;
        drop(borrows);
        drop(scratch);
        self.put_scratch(whole);
        Ok(())
    }

    /// A scratch buffer of at least `len` bytes: the one kept from the last call if large
    /// enough (fresh megabytes cost a page fault per 4 KiB on every call), else a new one.
    fn take_scratch(&self, len: usize) -> Bytes {
        let kept = self
            .scratch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        kept.filter(|b| b.len() >= len)
            .unwrap_or_else(|| Bytes::fresh(len))
    }

    /// Keeps `scratch` for the next call (only once MPI is done with it).
    fn put_scratch(&self, scratch: Bytes) {
        *self.scratch.lock().unwrap_or_else(PoisonError::into_inner) = Some(scratch);
    }

    /// The communicator an earlier `split(color, key)` made, with the number of that split,
    /// if it is still usable.
    fn cached_split(&self, color: usize, key: usize) -> Option<CachedSplit> {
        let splits = self.splits.lock().unwrap_or_else(PoisonError::into_inner);
        splits
            .get(&(color, key))
            .filter(|(_, comm)| comm.broken.get().is_none())
            .cloned()
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
