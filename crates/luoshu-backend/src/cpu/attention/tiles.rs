//! Shared pieces of the attention kernels: head-major views of strided inputs, tile loads
//! into the compute precision, the tile sizes, and a vectorized `exp`.

use crate::cpu::matmul::{GemmScalar, Strided};
use crate::cpu::rows::{Acc, Float};
use crate::{Error, Result};
use luoshu_tensor::Tensor;

/// Query rows per tile.
pub(super) const BLOCK_Q: usize = 128;
/// Key rows per tile.
pub(super) const BLOCK_K: usize = 128;

/// The precision attention computes in (f32, or f64 for f64 inputs): gemm-capable, with a
/// slice `exp` that vectorizes.
pub(super) trait Compute: GemmScalar {
    /// `x[i] = exp(x[i])`, with `exp(-inf) = 0` exactly (masked scores).
    fn exp_in_place(x: &mut [Self]);
}

impl Compute for f64 {
    fn exp_in_place(x: &mut [f64]) {
        for v in x {
            *v = v.exp();
        }
    }
}

impl Compute for f32 {
    fn exp_in_place(x: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features `exp_avx2` is compiled for.
            return unsafe { exp_avx2(x) };
        }
        exp_f32_slice(x)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_avx2(x: &mut [f32]) {
    exp_f32_slice(x)
}

/// Cephes-style `expf` (about 1 ulp): `2^n · p(r)` with `x = n·ln2 + r`, `|r| <= ln2/2`.
/// Branch-free so the loop vectorizes; below the f32 range it returns exactly 0.
#[inline(always)]
fn exp_f32_slice(x: &mut [f32]) {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // 1.5·2^23: adding it rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const LOWEST: f32 = -87.336_55;
    const HIGHEST: f32 = 88.376_26;
    for v in x {
        let clamped = v.clamp(LOWEST, HIGHEST);
        let t = clamped * LOG2E + ROUND;
        let n = t - ROUND;
        let r = clamped - n * LN2_HI - n * LN2_LO;
        let mut p = 1.987_569_1e-4;
        p = p * r + 1.398_199_9e-3;
        p = p * r + 8.333_452e-3;
        p = p * r + 4.166_579_6e-2;
        p = p * r + 1.666_666_5e-1;
        p = p * r + 0.5;
        let poly = p * r * r + r + 1.0;
        let pow2n =
            f32::from_bits(t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23);
        let e = poly * pow2n;
        *v = if *v < LOWEST { 0.0 } else { e };
    }
}

/// Runs `f` compiled for AVX2+FMA when the CPU has them: `f` is inlined into a function
/// built with those features, so the tile loops around the gemm calls use 8-wide vectors.
#[inline(always)]
pub(super) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features `with_avx2` is compiled for.
        return unsafe { with_avx2(f) };
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// The largest element (`-inf` for none), over independent lanes so the loop vectorizes.
pub(super) fn lane_max<A: Acc>(x: &[A]) -> A {
    const LANES: usize = 8;
    let mut lanes = [A::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = if v > *lane { v } else { *lane };
        }
    }
    lanes
        .iter()
        .chain(tail)
        .fold(A::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// A `[batch, heads, seq, dim]` tensor whose last dimension is contiguous, as strides.
#[derive(Clone, Copy, Debug)]
pub(super) struct Heads {
    pub batch: usize,
    pub heads: usize,
    pub seq: usize,
    pub dim: usize,
    strides: [usize; 3],
    offset: usize,
}

impl Heads {
    pub fn of(op: &'static str, arg: &'static str, t: &Tensor) -> Result<Heads> {
        let (dims, strides) = (t.dims(), t.layout().strides());
        if dims.len() != 4 || (dims[3] > 1 && strides[3] != 1) {
            return Err(Error::BadLayout {
                op,
                arg,
                requirement: "a [batch, heads, seq, dim] view with a contiguous last dim",
                dims: dims.to_vec(),
                strides: strides.to_vec(),
            });
        }
        Ok(Heads {
            batch: dims[0],
            heads: dims[1],
            seq: dims[2],
            dim: dims[3],
            strides: [strides[0], strides[1], strides[2]],
            offset: t.layout().offset(),
        })
    }

    /// Storage index of element `[b, h, s, 0]`.
    pub fn row(&self, b: usize, h: usize, s: usize) -> usize {
        self.offset + b * self.strides[0] + h * self.strides[1] + s * self.strides[2]
    }
}

/// The storage of an input tensor, read-only.
pub(super) fn input<T: Float>(t: &Tensor) -> Result<&[T]> {
    // SAFETY: attention only reads its inputs, and `Ops` checked that no output of the
    // call overlaps them, so no mutable slice of these regions exists meanwhile.
    Ok(unsafe { t.storage().typed::<T>(t.dtype())? })
}

/// Rows `s0..s0 + rows` of head `(b, h)` into `dst` (row-major, `view.dim` wide),
/// converted to the compute precision.
pub(super) fn load_rows<T: Float>(
    data: &[T],
    view: &Heads,
    (b, h): (usize, usize),
    s0: usize,
    rows: usize,
    dst: &mut Vec<T::Acc>,
) {
    dst.clear();
    for s in s0..s0 + rows {
        let start = view.row(b, h, s);
        dst.extend(data[start..start + view.dim].iter().map(|&x| x.load()));
    }
}

/// A row-major `cols`-wide matrix in a slice, as a gemm operand (`transposed` reads it as
/// its transpose).
pub(super) fn row_major<A>(data: &[A], cols: usize, transposed: bool) -> Strided<'_, A> {
    let (rs, cs) = if transposed { (1, cols) } else { (cols, 1) };
    Strided {
        data,
        offset: 0,
        rs,
        cs,
    }
}

/// Last key a query row sees (exclusive bound), for causal masking aligned at the end.
pub(super) fn visible_keys(causal: bool, row: usize, seq_q: usize, seq_k: usize) -> usize {
    if causal {
        (row + 1 + seq_k).saturating_sub(seq_q).min(seq_k)
    } else {
        seq_k
    }
}

#[cfg(test)]
mod tests {
    use super::Compute;

    #[test]
    fn fast_exp_matches_std() {
        let xs: Vec<f32> = (-2000..=880).map(|i| i as f32 * 0.1 + 0.013).collect();
        let mut ys = xs.clone();
        f32::exp_in_place(&mut ys);
        for (x, y) in xs.iter().zip(&ys) {
            let want = x.exp();
            let tol = 4.0 * f32::EPSILON * want + f32::MIN_POSITIVE;
            assert!((y - want).abs() <= tol, "exp({x}) = {y}, want {want}");
        }
        let mut edge = [f32::NEG_INFINITY, 0.0, -100.0];
        f32::exp_in_place(&mut edge);
        assert_eq!(edge, [0.0, 1.0, 0.0]);
    }
}
