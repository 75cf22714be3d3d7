//! Elementwise reduction of raw tensor bytes in rank order, shared by every backend so a
//! reduction gives the same bits whichever backend ran it.
//!
//! Contributions are combined left to right (`((x0 ∘ x1) ∘ x2) ∘ …`), half types in `f32`
//! with one rounding at the end. Integer sums wrap on overflow. `Max` propagates NaN: a NaN
//! in any contribution makes that element NaN, so a diverged rank is never hidden.

use crate::{Error, ReduceOp};
use luoshu_tensor::{bf16, f16, DType, Element};

/// Why a reduction cannot run; [`ReduceError::at`] turns it into the caller's [`Error`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum ReduceError {
    #[error("reductions do not support dtype {0} (supported: f64, f32, bf16, f16, i64, i32)")]
    UnsupportedDType(DType),
    #[error("nothing to reduce: no contributions were given")]
    NoInputs,
    #[error(
        "contribution {index} has {got} bytes but the output has {expected} ({dtype} elements)"
    )]
    Length {
        index: usize,
        got: usize,
        expected: usize,
        dtype: DType,
    },
    #[error("the output has {bytes} bytes, not a whole number of {dtype} elements")]
    PartialElement { bytes: usize, dtype: DType },
}

impl ReduceError {
    /// The error as `op` on `rank` reports it.
    pub(crate) fn at(self, op: &str, rank: usize) -> Error {
        Error::InvalidArgument {
            op: op.to_string(),
            rank,
            message: self.to_string(),
        }
    }
}

/// Fails unless reductions support `dtype`.
pub(crate) fn check_reducible(dtype: DType) -> Result<(), ReduceError> {
    match dtype {
        DType::F64 | DType::F32 | DType::BF16 | DType::F16 | DType::I64 | DType::I32 => Ok(()),
        DType::U8 | DType::Bool => Err(ReduceError::UnsupportedDType(dtype)),
    }
}

/// Writes the elementwise `op` of `inputs` (one contiguous buffer of `dtype` elements per
/// rank, in rank order) into `out`. Buffers need no alignment (they may come straight off
/// the wire).
pub(crate) fn reduce_in_rank_order(
    dtype: DType,
    op: ReduceOp,
    inputs: &[&[u8]],
    out: &mut [u8],
) -> Result<(), ReduceError> {
    check_reducible(dtype)?;
    let Some((first, rest)) = inputs.split_first() else {
        return Err(ReduceError::NoInputs);
    };
    if !out.len().is_multiple_of(dtype.size_in_bytes()) {
        return Err(ReduceError::PartialElement {
            bytes: out.len(),
            dtype,
        });
    }
    if let Some((index, input)) = inputs
        .iter()
        .enumerate()
        .find(|(_, input)| input.len() != out.len())
    {
        return Err(ReduceError::Length {
            index,
            got: input.len(),
            expected: out.len(),
            dtype,
        });
    }
    match dtype {
        DType::F64 => reduce_typed::<f64>(op, first, rest, out),
        DType::F32 => reduce_typed::<f32>(op, first, rest, out),
        DType::BF16 => reduce_typed::<bf16>(op, first, rest, out),
        DType::F16 => reduce_typed::<f16>(op, first, rest, out),
        DType::I64 => reduce_typed::<i64>(op, first, rest, out),
        DType::I32 => reduce_typed::<i32>(op, first, rest, out),
        DType::U8 | DType::Bool => return Err(ReduceError::UnsupportedDType(dtype)),
    }
    Ok(())
}

/// The type a reduction accumulates in and how two values combine.
trait Accumulate: Copy + Default {
    fn sum(self, other: Self) -> Self;
    fn max(self, other: Self) -> Self;
}

macro_rules! float_accumulate {
    ($t:ty) => {
        impl Accumulate for $t {
            #[inline]
            fn sum(self, other: Self) -> Self {
                self + other
            }
            #[inline]
            fn max(self, other: Self) -> Self {
                if self.is_nan() {
                    self
                } else if other.is_nan() || other > self {
                    other
                } else {
                    self
                }
            }
        }
    };
}

macro_rules! int_accumulate {
    ($t:ty) => {
        impl Accumulate for $t {
            #[inline]
            fn sum(self, other: Self) -> Self {
                self.wrapping_add(other)
            }
            #[inline]
            fn max(self, other: Self) -> Self {
                Ord::max(self, other)
            }
        }
    };
}

float_accumulate!(f64);
float_accumulate!(f32);
int_accumulate!(i64);
int_accumulate!(i32);

/// An element type reductions support, with the type it accumulates in.
trait Reducible: Element {
    type Acc: Accumulate;
    fn widen(self) -> Self::Acc;
    fn narrow(acc: Self::Acc) -> Self;
}

macro_rules! reducible_as_itself {
    ($($t:ty),*) => {$(
        impl Reducible for $t {
            type Acc = $t;
            #[inline]
            fn widen(self) -> $t {
                self
            }
            #[inline]
            fn narrow(acc: $t) -> $t {
                acc
            }
        }
    )*};
}

reducible_as_itself!(f64, f32, i64, i32);

macro_rules! reducible_via_f32 {
    ($($t:ty),*) => {$(
        impl Reducible for $t {
            type Acc = f32;
            #[inline]
            fn widen(self) -> f32 {
                self.to_f32()
            }
            #[inline]
            fn narrow(acc: f32) -> $t {
                <$t>::from_f32(acc)
            }
        }
    )*};
}

reducible_via_f32!(bf16, f16);

/// Elements reduced per block: the accumulators of a block (at most 16 KiB) stay in L1
/// while every input streams through them, instead of a full-size accumulator making one
/// trip to memory per input.
const BLOCK_ELEMENTS: usize = 2048;

/// `reduce_in_rank_order` for one element type; lengths were checked by the caller.
fn reduce_typed<T: Reducible>(op: ReduceOp, first: &[u8], rest: &[&[u8]], out: &mut [u8]) {
    // Passing the methods themselves (not `fn` pointers) monomorphizes the loops per
    // operation, so the combine inlines and vectorizes.
    match op {
        ReduceOp::Sum => reduce_with::<T>(T::Acc::sum, first, rest, out),
        ReduceOp::Max => reduce_with::<T>(T::Acc::max, first, rest, out),
    }
}

/// `reduce_typed` with the combine fixed at compile time, one block of elements at a time.
fn reduce_with<T: Reducible>(
    combine: impl Fn(T::Acc, T::Acc) -> T::Acc + Copy,
    first: &[u8],
    rest: &[&[u8]],
    out: &mut [u8],
) {
    let width = std::mem::size_of::<T>();
    let block_bytes = BLOCK_ELEMENTS * width;
    let mut acc = vec![T::Acc::default(); BLOCK_ELEMENTS.min(out.len() / width)];
    for (index, out_block) in out.chunks_mut(block_bytes).enumerate() {
        let bytes = index * block_bytes..index * block_bytes + out_block.len();
        let acc = &mut acc[..out_block.len() / width];
        zip_widened::<T>(acc, &first[bytes.clone()], |a, x| *a = x);
        for input in rest {
            zip_widened::<T>(acc, &input[bytes.clone()], |a, x| *a = combine(*a, x));
        }
        store_narrowed::<T>(acc, out_block);
    }
}

/// Calls `f` on each accumulator with the matching element of `bytes` (same count), widened.
/// Aligned bytes are read as a slice of `T`, which vectorizes; any others element by element.
#[inline]
fn zip_widened<T: Reducible>(acc: &mut [T::Acc], bytes: &[u8], f: impl Fn(&mut T::Acc, T::Acc)) {
    match bytemuck::try_cast_slice::<u8, T>(bytes) {
        Ok(values) => {
            for (a, &x) in acc.iter_mut().zip(values) {
                f(a, x.widen());
            }
        }
        Err(_) => {
            let values = bytes
                .chunks_exact(std::mem::size_of::<T>())
                .map(|chunk| bytemuck::pod_read_unaligned::<T>(chunk).widen());
            for (a, x) in acc.iter_mut().zip(values) {
                f(a, x);
            }
        }
    }
}

/// Writes the accumulators, narrowed to `T`, into `out` (same count, any alignment).
#[inline]
fn store_narrowed<T: Reducible>(acc: &[T::Acc], out: &mut [u8]) {
    match bytemuck::try_cast_slice_mut::<u8, T>(out) {
        Ok(values) => {
            for (v, &a) in values.iter_mut().zip(acc) {
                *v = T::narrow(a);
            }
        }
        Err(_) => {
            for (chunk, &a) in out.chunks_exact_mut(std::mem::size_of::<T>()).zip(acc) {
                chunk.copy_from_slice(bytemuck::bytes_of(&T::narrow(a)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<T: Element>(values: &[T]) -> Vec<u8> {
        bytemuck::cast_slice(values).to_vec()
    }

    fn values<T: Element>(bytes: &[u8]) -> Vec<T> {
        bytes
            .chunks_exact(std::mem::size_of::<T>())
            .map(bytemuck::pod_read_unaligned)
            .collect()
    }

    fn reduce<T: Element>(op: ReduceOp, inputs: &[Vec<T>]) -> Vec<T> {
        let raw: Vec<Vec<u8>> = inputs.iter().map(|v| bytes(v)).collect();
        let views: Vec<&[u8]> = raw.iter().map(Vec::as_slice).collect();
        let mut out = vec![0u8; raw[0].len()];
        reduce_in_rank_order(T::DTYPE, op, &views, &mut out).unwrap();
        values(&out)
    }

    #[test]
    fn sums_and_maxes_in_rank_order() {
        let sum = reduce(ReduceOp::Sum, &[vec![1.0f32, -2.0], vec![0.5, 4.0]]);
        assert_eq!(sum, vec![1.5, 2.0]);
        let max = reduce(ReduceOp::Max, &[vec![3i64, -7], vec![2, -1], vec![5, -9]]);
        assert_eq!(max, vec![5, -1]);
    }

    #[test]
    fn float_sums_are_left_to_right() {
        // (1e8 + 1) + -1e8 is 0 in f32 while 1 + (1e8 + -1e8) is 1: order is observable.
        let sum = reduce(ReduceOp::Sum, &[vec![1e8f32], vec![1.0], vec![-1e8]]);
        assert_eq!(sum, vec![0.0]);
    }

    #[test]
    fn half_types_accumulate_in_f32_and_round_once() {
        // 256 + 1 + 1 is 258 in f32; bf16 steps are 2 at 256, so rounding after every add
        // (256 + 1 -> 256) would give 256.
        let x = |v: f32| vec![bf16::from_f32(v)];
        let sum = reduce(ReduceOp::Sum, &[x(256.0), x(1.0), x(1.0)]);
        assert_eq!(sum, vec![bf16::from_f32(258.0)]);
        let h = |v: f32| vec![f16::from_f32(v)];
        let sum = reduce(ReduceOp::Sum, &[h(2048.0), h(1.0), h(1.0)]);
        assert_eq!(sum, vec![f16::from_f32(2050.0)]);
    }

    #[test]
    fn max_propagates_nan_and_integer_sums_wrap() {
        let max = reduce(
            ReduceOp::Max,
            &[vec![1.0f64, f64::NAN], vec![f64::NAN, 0.0]],
        );
        assert!(max[0].is_nan() && max[1].is_nan());
        assert_eq!(
            reduce(ReduceOp::Sum, &[vec![i32::MAX], vec![1]]),
            vec![i32::MIN]
        );
    }

    #[test]
    fn unaligned_buffers_are_accepted() {
        let raw = bytes(&[1.5f64, 2.0]);
        let mut shifted = vec![0u8; raw.len() + 1];
        shifted[1..].copy_from_slice(&raw);
        let mut out = vec![0u8; raw.len() + 1];
        let inputs = [&shifted[1..], &shifted[1..]];
        reduce_in_rank_order(DType::F64, ReduceOp::Sum, &inputs, &mut out[1..]).unwrap();
        assert_eq!(values::<f64>(&out[1..]), vec![3.0, 4.0]);
    }

    /// Reduces `inputs` with the slices aligned and again shifted by one byte, and checks
    /// both against a plain left-to-right fold, over several blocks and a partial one.
    fn check_against_fold<T: Reducible>(op: ReduceOp, inputs: &[Vec<T>]) {
        let fold: Vec<T> = (0..inputs[0].len())
            .map(|i| {
                let mut acc = inputs[0][i].widen();
                for input in &inputs[1..] {
                    acc = match op {
                        ReduceOp::Sum => acc.sum(input[i].widen()),
                        ReduceOp::Max => acc.max(input[i].widen()),
                    };
                }
                T::narrow(acc)
            })
            .collect();
        let fold_bits = bytes(&fold);
        assert_eq!(bytes(&reduce(op, inputs)), fold_bits);
        let shifted: Vec<Vec<u8>> = inputs
            .iter()
            .map(|v| [&[0u8][..], &bytes(v)].concat())
            .collect();
        let views: Vec<&[u8]> = shifted.iter().map(|v| &v[1..]).collect();
        let mut out = vec![0u8; fold_bits.len() + 1];
        reduce_in_rank_order(T::DTYPE, op, &views, &mut out[1..]).unwrap();
        assert_eq!(&out[1..], &fold_bits[..]);
    }

    #[test]
    fn blocked_and_unaligned_reductions_match_a_plain_fold() {
        let len = 2 * BLOCK_ELEMENTS + 7;
        let value = |rank: usize, i: usize| {
            let x = ((i * 7919 + rank * 104_729) % 1000) as f32 - 500.0;
            if i % 97 == rank {
                f32::NAN
            } else {
                x * 1.37e-3 * 10f32.powi((i % 9) as i32 - 4)
            }
        };
        let floats: Vec<Vec<f32>> = (0..3)
            .map(|rank| (0..len).map(|i| value(rank, i)).collect())
            .collect();
        let halves: Vec<Vec<bf16>> = floats
            .iter()
            .map(|v| v.iter().map(|&x| bf16::from_f32(x)).collect())
            .collect();
        let ints: Vec<Vec<i32>> = floats
            .iter()
            .map(|v| v.iter().map(|&x| (x * 1e6) as i32 ^ 0x4000_0000).collect())
            .collect();
        for op in [ReduceOp::Sum, ReduceOp::Max] {
            check_against_fold(op, &floats);
            check_against_fold(op, &halves);
            check_against_fold(op, &ints);
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let mut out = [0u8; 2];
        let err = reduce_in_rank_order(DType::U8, ReduceOp::Sum, &[&[1, 2]], &mut out);
        assert_eq!(err, Err(ReduceError::UnsupportedDType(DType::U8)));
        assert!(err.unwrap_err().to_string().contains("u8"));
        let err = reduce_in_rank_order(DType::Bool, ReduceOp::Max, &[&[1, 0]], &mut out);
        assert_eq!(err, Err(ReduceError::UnsupportedDType(DType::Bool)));
        let mut out = [0u8; 4];
        let err = reduce_in_rank_order(DType::F32, ReduceOp::Sum, &[&[0; 4], &[0; 8]], &mut out);
        assert!(matches!(
            err,
            Err(ReduceError::Length {
                index: 1,
                got: 8,
                ..
            })
        ));
        let err = reduce_in_rank_order(DType::F32, ReduceOp::Sum, &[], &mut out);
        assert_eq!(err, Err(ReduceError::NoInputs));
        let mut out = [0u8; 3];
        let err = reduce_in_rank_order(DType::I32, ReduceOp::Sum, &[&[0; 3]], &mut out);
        assert!(matches!(
            err,
            Err(ReduceError::PartialElement { bytes: 3, .. })
        ));
    }
}
