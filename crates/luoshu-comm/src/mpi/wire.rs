//! The bytes of one message between ranks: which operation (and its sequence number) the
//! sender is in, the shapes of the tensors it passed (so every rank can check every rank's
//! arguments), and the tensors it delivers to this receiver.
//!
//! Layout (little endian): magic `LSH2`, seq u64, op code u8, three op arguments u64, the
//! described tensors (count u32, each dtype u8, ndim u32, dims u64…), then the delivered
//! tensors (count u32, each described the same way followed by its bytes, row-major).

use crate::{Error, ReduceOp, Result};
use luoshu_tensor::{Borrows, DType, Layout, Storage, Tensor};
use std::fmt;
use std::sync::Arc;

const MAGIC: &[u8; 4] = b"LSH2";

/// [`Op::Split`]'s `cached` when the rank has no reusable communicator for its arguments.
pub(super) const NO_CACHED_SPLIT: u64 = u64::MAX;

/// The operation a message belongs to, with the arguments every rank must agree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    /// Creating a communicator over `MPI_COMM_WORLD`.
    Connect,
    Barrier,
    AllReduce(ReduceOp),
    AllGather,
    ReduceScatter(ReduceOp),
    AllToAll,
    Broadcast {
        root: usize,
    },
    Split {
        color: usize,
        key: usize,
        /// The collective number at which the parent created the cached communicator this
        /// rank would reuse for `(color, key)`, or [`NO_CACHED_SPLIT`].
        cached: u64,
    },
    PointToPoint {
        tag: u64,
    },
}

impl Op {
    /// True if two ranks passing `self` and `other` are in the same collective call
    /// (split colors and keys may differ per rank; everything else must match).
    pub(super) fn same_call(&self, other: &Op) -> bool {
        match (self, other) {
            (Op::Split { .. }, Op::Split { .. }) => true,
            _ => self == other,
        }
    }

    fn to_code(self) -> (u8, u64, u64, u64) {
        let reduce_code = |op: ReduceOp| match op {
            ReduceOp::Sum => 0,
            ReduceOp::Max => 1,
        };
        match self {
            Op::Connect => (0, 0, 0, 0),
            Op::Barrier => (1, 0, 0, 0),
            Op::AllReduce(op) => (2, reduce_code(op), 0, 0),
            Op::AllGather => (3, 0, 0, 0),
            Op::ReduceScatter(op) => (4, reduce_code(op), 0, 0),
            Op::AllToAll => (5, 0, 0, 0),
            Op::Broadcast { root } => (6, root as u64, 0, 0),
            Op::Split { color, key, cached } => (7, color as u64, key as u64, cached),
            Op::PointToPoint { tag } => (8, tag, 0, 0),
        }
    }

    fn from_code(code: u8, a: u64, b: u64, c: u64) -> Result<Op> {
        let reduce_op = |a: u64| match a {
            0 => Ok(ReduceOp::Sum),
            1 => Ok(ReduceOp::Max),
            other => Err(malformed(format!("unknown reduce op code {other}"))),
        };
        let index = |v: u64| usize::try_from(v).map_err(|_| malformed(format!("index {v}")));
        Ok(match code {
            0 => Op::Connect,
            1 => Op::Barrier,
            2 => Op::AllReduce(reduce_op(a)?),
            3 => Op::AllGather,
            4 => Op::ReduceScatter(reduce_op(a)?),
            5 => Op::AllToAll,
            6 => Op::Broadcast { root: index(a)? },
            7 => Op::Split {
                color: index(a)?,
                key: index(b)?,
                cached: c,
            },
            8 => Op::PointToPoint { tag: a },
            other => return Err(malformed(format!("unknown operation code {other}"))),
        })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Connect => f.write_str("connect"),
            Op::Barrier => f.write_str("barrier"),
            Op::AllReduce(op) => write!(f, "all_reduce({op:?})"),
            Op::AllGather => f.write_str("all_gather"),
            Op::ReduceScatter(op) => write!(f, "reduce_scatter({op:?})"),
            Op::AllToAll => f.write_str("all_to_all"),
            Op::Broadcast { root } => write!(f, "broadcast(root {root})"),
            Op::Split { .. } => f.write_str("split"),
            Op::PointToPoint { tag } => write!(f, "send(tag {tag})"),
        }
    }
}

/// Dtype and shape of a tensor, as announced to the other ranks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TensorDesc {
    pub dtype: DType,
    pub dims: Vec<usize>,
}

impl TensorDesc {
    /// Size of the described tensor's elements in bytes (saturating: an absurd shape fails
    /// the message-size checks instead of overflowing).
    pub(super) fn bytes(&self) -> usize {
        self.dims
            .iter()
            .fold(self.dtype.size_in_bytes(), |n, &d| n.saturating_mul(d))
    }

    pub(super) fn of(x: &Tensor) -> TensorDesc {
        TensorDesc {
            dtype: x.dtype(),
            dims: x.dims().to_vec(),
        }
    }
}

impl fmt::Display for TensorDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:?}", self.dtype, self.dims)
    }
}

/// A decoded message.
#[derive(Debug)]
pub(super) struct Envelope {
    pub seq: u64,
    pub op: Op,
    /// The sender's arguments, described.
    pub descs: Vec<TensorDesc>,
    /// The tensors delivered to the receiver.
    pub payload: Vec<WireTensor>,
}

/// A tensor as it travels: description and row-major bytes.
#[derive(Debug)]
pub(super) struct WireTensor {
    pub desc: TensorDesc,
    pub bytes: Vec<u8>,
}

impl WireTensor {
    /// A copy of `x`'s elements (any layout).
    pub(super) fn of(x: &Tensor) -> Result<WireTensor> {
        let mut bytes = Vec::with_capacity(x.numel() * x.dtype().size_in_bytes());
        put_tensor_bytes(&mut bytes, x)?;
        Ok(WireTensor {
            desc: TensorDesc::of(x),
            bytes,
        })
    }

    /// A tensor with fresh storage holding these elements.
    pub(super) fn into_tensor(self) -> Result<Tensor> {
        tensor_from_bytes(self.desc, &self.bytes)
    }
}

/// A contiguous tensor of `desc` with fresh storage holding `bytes` (row-major).
pub(super) fn tensor_from_bytes(desc: TensorDesc, bytes: &[u8]) -> Result<Tensor> {
    let layout = Layout::contiguous(desc.dims)?;
    let expected = layout.numel().checked_mul(desc.dtype.size_in_bytes());
    if expected != Some(bytes.len()) {
        return Err(malformed(format!(
            "{} bytes for a {} tensor of {} elements",
            bytes.len(),
            desc.dtype,
            layout.numel()
        )));
    }
    let storage = Arc::new(Storage::from_slice(bytes));
    Ok(Tensor::from_storage(storage, layout, desc.dtype)?)
}

/// Encodes a message; `payload` tensors may have any layout.
pub(super) fn encode(
    seq: u64,
    op: Op,
    descs: &[TensorDesc],
    payload: &[Tensor],
) -> Result<Vec<u8>> {
    let payload_bytes: usize = payload
        .iter()
        .map(|t| t.numel() * t.dtype().size_in_bytes())
        .sum();
    let mut out = Vec::with_capacity(64 + payload_bytes);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&seq.to_le_bytes());
    let (code, a, b, c) = op.to_code();
    out.push(code);
    for arg in [a, b, c] {
        out.extend_from_slice(&arg.to_le_bytes());
    }
    put_len(&mut out, descs.len());
    for desc in descs {
        put_desc(&mut out, desc);
    }
    put_len(&mut out, payload.len());
    for tensor in payload {
        put_desc(&mut out, &TensorDesc::of(tensor));
        put_tensor_bytes(&mut out, tensor)?;
    }
    Ok(out)
}

/// Decodes a message produced by [`encode`].
pub(super) fn decode(bytes: &[u8]) -> Result<Envelope> {
    let mut r = Reader { bytes, pos: 0 };
    if r.take(4)? != MAGIC {
        return Err(malformed("not a luoshu message (bad magic)".into()));
    }
    let seq = r.u64()?;
    let code = r.u8()?;
    let (a, b, c) = (r.u64()?, r.u64()?, r.u64()?);
    let op = Op::from_code(code, a, b, c)?;
    let descs = (0..r.u32()?)
        .map(|_| r.desc())
        .collect::<Result<Vec<_>>>()?;
    let payload = (0..r.u32()?)
        .map(|_| r.tensor())
        .collect::<Result<Vec<_>>>()?;
    if r.pos != bytes.len() {
        return Err(malformed(format!("{} trailing bytes", bytes.len() - r.pos)));
    }
    Ok(Envelope {
        seq,
        op,
        descs,
        payload,
    })
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Counts are numbers of tensors or dims, far below u32::MAX.
    out.extend_from_slice(&(len as u32).to_le_bytes());
}

fn put_desc(out: &mut Vec<u8>, desc: &TensorDesc) {
    let code = DType::ALL
        .iter()
        .position(|&d| d == desc.dtype)
        .unwrap_or_default();
    out.push(code as u8);
    put_len(out, desc.dims.len());
    for &d in &desc.dims {
        out.extend_from_slice(&(d as u64).to_le_bytes());
    }
}

fn put_tensor_bytes(out: &mut Vec<u8>, x: &Tensor) -> Result<()> {
    let x = if x.is_contiguous() {
        x.clone()
    } else {
        x.to_contiguous()?
    };
    let size = x.dtype().size_in_bytes();
    let start = x.layout().offset() * size;
    let borrows = Borrows::new();
    let bytes = start..start + x.numel() * size;
    out.extend_from_slice(borrows.read::<u8>("send", x.storage(), DType::U8, bytes)?);
    Ok(())
}

fn malformed(what: String) -> Error {
    Error::Mpi(format!("malformed luoshu message: {what}"))
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| {
                malformed(format!(
                    "needs {n} bytes at offset {} of {}",
                    self.pos,
                    self.bytes.len()
                ))
            })?;
        let taken = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        let mut le = [0; 4];
        le.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(le))
    }

    fn u64(&mut self) -> Result<u64> {
        let mut le = [0; 8];
        le.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(le))
    }

    fn desc(&mut self) -> Result<TensorDesc> {
        let code = self.u8()?;
        let dtype = *DType::ALL
            .get(usize::from(code))
            .ok_or_else(|| malformed(format!("unknown dtype code {code}")))?;
        let dims = (0..self.u32()?)
            .map(|_| {
                let d = self.u64()?;
                usize::try_from(d).map_err(|_| malformed(format!("dimension {d}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TensorDesc { dtype, dims })
    }

    fn tensor(&mut self) -> Result<WireTensor> {
        let desc = self.desc()?;
        let len = desc
            .dims
            .iter()
            .try_fold(desc.dtype.size_in_bytes(), |n, &d| n.checked_mul(d))
            .ok_or_else(|| malformed(format!("tensor {desc} overflows")))?;
        let bytes = self.take(len)?.to_vec();
        Ok(WireTensor { desc, bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn messages_round_trip_every_dtype_and_layout() {
        let x = Tensor::from_f64(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], DType::F32, vec![2, 3])
            .and_then(|t| t.transpose(0, 1))
            .unwrap();
        let mut payload = vec![x.clone()];
        for dtype in DType::ALL {
            payload.push(Tensor::from_f64(&[1.0, 0.0, 3.0], dtype, vec![3]).unwrap());
        }
        payload.push(Tensor::zeros(DType::BF16, vec![0, 4]).unwrap());
        let descs = vec![TensorDesc::of(&x), TensorDesc::of(&payload[2])];
        let op = Op::Split {
            color: 3,
            key: 9,
            cached: 17,
        };
        let bytes = encode(42, op, &descs, &payload).unwrap();
        let env = decode(&bytes).unwrap();
        assert_eq!((env.seq, env.op), (42, op));
        assert_eq!(env.descs, descs);
        assert_eq!(env.payload.len(), payload.len());
        for (got, want) in env.payload.into_iter().zip(&payload) {
            let got = got.into_tensor().unwrap();
            assert_eq!(got.dtype(), want.dtype());
            assert_eq!(got.dims(), want.dims());
            assert_eq!(got.to_f64_vec(), want.to_f64_vec());
        }
    }

    #[test]
    fn every_operation_round_trips() {
        let ops = [
            Op::Connect,
            Op::Barrier,
            Op::AllReduce(ReduceOp::Sum),
            Op::AllReduce(ReduceOp::Max),
            Op::AllGather,
            Op::ReduceScatter(ReduceOp::Max),
            Op::AllToAll,
            Op::Broadcast { root: 7 },
            Op::Split {
                color: 1,
                key: 2,
                cached: NO_CACHED_SPLIT,
            },
            Op::PointToPoint { tag: 32767 },
        ];
        for op in ops {
            let env = decode(&encode(3, op, &[], &[]).unwrap()).unwrap();
            assert_eq!(env.op, op);
        }
        let split = |color, key, cached| Op::Split { color, key, cached };
        assert!(split(0, 1, 5).same_call(&split(2, 0, NO_CACHED_SPLIT)));
        assert!(!Op::Broadcast { root: 0 }.same_call(&Op::Broadcast { root: 1 }));
        assert!(!Op::AllReduce(ReduceOp::Sum).same_call(&Op::AllReduce(ReduceOp::Max)));
    }

    #[test]
    fn truncated_and_foreign_messages_are_errors() {
        let bytes = encode(1, Op::Barrier, &[], &[Tensor::scalar(1.5f32)]).unwrap();
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(b"nope").is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }

    /// A message with every part the decoder reads: an op with arguments, described
    /// tensors, and delivered tensors of two dtypes.
    fn sample_message() -> Vec<u8> {
        let a = Tensor::from_f64(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], DType::F32, vec![2, 3]).unwrap();
        let b = Tensor::from_f64(&[7.0, 8.0], DType::BF16, vec![2]).unwrap();
        let descs = [TensorDesc::of(&a), TensorDesc::of(&b)];
        let op = Op::Split {
            color: 1,
            key: 2,
            cached: 5,
        };
        encode(9, op, &descs, &[a, b]).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        /// Whatever arrives, decoding never panics: a damaged message is either still a
        /// well-formed one (a flipped sequence number or value byte) whose tensors can be
        /// built, or it is refused as a malformed luoshu message saying what is wrong.
        #[test]
        fn mutated_messages_never_panic_and_every_rejection_is_clear(
            edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6)
        ) {
            let good = sample_message();
            let damaged = luoshu_tensor::fuzz::mutate(&good, &edits);
            match decode(&damaged) {
                Ok(envelope) => {
                    for tensor in envelope.payload {
                        let desc = tensor.desc.clone();
                        prop_assert!(
                            tensor.into_tensor().is_ok(),
                            "a decoded {} tensor could not be built", desc
                        );
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    prop_assert!(
                        message.contains("malformed luoshu message: ") && message.len() > 40,
                        "unclear rejection: {}", message
                    );
                }
            }
        }
    }
}
