//! A vectorizing slice `exp` (about 1 ulp in f32) and a wrapper that compiles a closure for
//! AVX2+FMA when the CPU has them: the exp-heavy row kernels (attention, cross-entropy,
//! SwiGLU) would otherwise spend most of their time in scalar libm calls.

use super::rows::Acc;

/// A compute precision with an in-place slice `exp`.
pub(crate) trait ExpSlice: Acc {
    /// `x[i] = exp(x[i])`, with `exp(-inf) = 0` exactly (masked scores).
    fn exp_in_place(x: &mut [Self]);
}

impl ExpSlice for f64 {
    fn exp_in_place(x: &mut [f64]) {
        for v in x {
            *v = v.exp();
        }
    }
}

impl ExpSlice for f32 {
    fn exp_in_place(x: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports the features `exp_avx512` is compiled for.
            return unsafe { exp_avx512(x) };
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features `exp_avx2` is compiled for.
            return unsafe { exp_avx2(x) };
        }
        exp_f32_slice(x)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn exp_avx512(x: &mut [f32]) {
    exp_f32_slice(x)
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
/// built with those features, so the loops inside it use 8-wide vectors.
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
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

#[cfg(test)]
mod tests {
    use super::ExpSlice;

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
