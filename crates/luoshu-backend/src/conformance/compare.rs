//! Tolerances per op class and dtype, and the elementwise comparison against the oracle.
use luoshu_tensor::DType;

/// An element passes when `|got - want| <= atol + rtol * |want|`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tol {
    /// Absolute part of the allowed error.
    pub atol: f64,
    /// Relative part, a multiple of `|want|`.
    pub rtol: f64,
}

impl Tol {
    /// No error allowed at all.
    pub const EXACT: Tol = Tol {
        atol: 0.0,
        rtol: 0.0,
    };
}

/// How much numerical freedom an op has, from "must be bit-exact" to "long fused chains".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Data movement, comparisons, max/min, integer arithmetic: no rounding at all.
    Exact,
    /// One correctly rounded float operation (add, mul, div, sqrt, cast of a sum...).
    Rounding,
    /// exp, log, sin, tanh, gelu, pow...: libm-quality results differ in the last bits.
    Transcendental,
    /// Sums whose order of accumulation is free (reductions, index_add, scatter_add).
    Accumulate,
    /// Matrix products: sums of products in a blocked, free order.
    Matmul,
    /// Fused composites (softmax, norms, cross-entropy, rope, swiglu, adamw).
    Fused,
    /// Attention: two matmuls and a softmax with online rescaling.
    Attention,
}

/// The tolerance of `class` for outputs of `dtype`.
pub fn tolerance(class: Class, dtype: DType) -> Tol {
    if class == Class::Exact || !dtype.is_float() {
        return Tol::EXACT;
    }
    // One unit in the last place, relative, for each float dtype (f16/bf16 results are
    // rounded from a wider accumulator, so they may differ from the oracle by one ulp).
    let ulp = match dtype {
        DType::F64 => 1e-12,
        DType::F32 => 1e-6,
        DType::F16 => 1e-3,
        _ => 8e-3,
    };
    let wide = matches!(dtype, DType::F64 | DType::F32);
    let factor = match (class, wide) {
        (Class::Rounding, true) => 2.0,
        (Class::Transcendental, true) => 10.0,
        (Class::Accumulate, true) => 50.0,
        (Class::Matmul, true) => 50.0,
        (Class::Fused, true) => 100.0,
        (Class::Attention, true) => 200.0,
        (Class::Rounding | Class::Transcendental, false) => 1.1,
        (Class::Accumulate | Class::Matmul, false) => 2.0,
        (Class::Fused, false) => 3.0,
        _ => 4.0,
    };
    Tol {
        atol: ulp * factor,
        rtol: ulp * factor,
    }
}

/// Where one element went furthest outside its tolerance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ElementError {
    pub index: usize,
    pub got: f64,
    pub want: f64,
    pub abs: f64,
    pub rel: f64,
    /// Error over allowed error.
    pub ratio: f64,
}

/// The result of comparing one output with the oracle's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    pub elements: usize,
    /// Elements that may be outside tolerance: none under [`Tol::EXACT`], else 0.1 %.
    pub allowed_exceeded: usize,
    /// Elements outside tolerance (a NaN/Inf that the oracle also has is not counted).
    pub exceeded: usize,
    /// First element that is NaN/Inf where the oracle's is finite: always a failure.
    pub spurious_nonfinite: Option<ElementError>,
    pub worst: Option<ElementError>,
}

impl Comparison {
    /// At most `allowed_exceeded` elements out of tolerance and no spurious NaN/Inf.
    pub fn passed(&self) -> bool {
        self.spurious_nonfinite.is_none() && self.exceeded <= self.allowed_exceeded
    }
}

fn element_error(index: usize, got: f64, want: f64, tol: Tol) -> ElementError {
    let abs = (got - want).abs();
    let allowed = tol.atol + tol.rtol * want.abs();
    let ratio = if abs == 0.0 || got == want {
        0.0
    } else if allowed == 0.0 || !abs.is_finite() {
        f64::INFINITY
    } else {
        abs / allowed
    };
    let rel = if want == 0.0 {
        if abs == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        abs / want.abs()
    };
    ElementError {
        index,
        got,
        want,
        abs,
        rel,
        ratio,
    }
}

/// True when `got` is `want` bit for bit (any NaN matches any NaN): what an exact op
/// must give, down to the sign of a zero.
fn identical(got: f64, want: f64) -> bool {
    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan())
}

/// Compare `got` with the oracle's `want` (same length) elementwise. Under [`Tol::EXACT`]
/// every element must be identical (a zero of the other sign counts as wrong); otherwise
/// 0.1 % of the elements may be outside `tol`.
pub fn compare(got: &[f64], want: &[f64], tol: Tol) -> Comparison {
    let exact = tol == Tol::EXACT;
    let mut result = Comparison {
        elements: want.len(),
        allowed_exceeded: if exact { 0 } else { want.len() / 1000 },
        exceeded: 0,
        spurious_nonfinite: None,
        worst: None,
    };
    for (index, (&g, &w)) in got.iter().zip(want).enumerate() {
        let same_nonfinite = (w.is_nan() && g.is_nan()) || (w.is_infinite() && g == w);
        if same_nonfinite {
            continue;
        }
        let mut e = element_error(index, g, w, tol);
        if exact && !identical(g, w) {
            e.ratio = f64::INFINITY;
        }
        if w.is_finite() && !g.is_finite() {
            result.spurious_nonfinite.get_or_insert(e);
        }
        if e.ratio > 1.0 {
            result.exceeded += 1;
        }
        if result.worst.is_none_or(|worst| e.ratio > worst.ratio) {
            result.worst = Some(e);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_is_relative_plus_absolute() {
        let tol = Tol {
            atol: 0.1,
            rtol: 0.1,
        };
        assert!(compare(&[2.29], &[2.0], tol).passed());
        assert!(!compare(&[2.31], &[2.0], tol).passed());
    }

    #[test]
    fn spurious_nan_fails_but_matching_nan_passes() {
        let tol = tolerance(Class::Fused, DType::F32);
        assert!(compare(&[f64::NAN], &[f64::NAN], tol).passed());
        assert!(compare(&[f64::NEG_INFINITY], &[f64::NEG_INFINITY], tol).passed());
        let mut big = vec![1.0; 5000];
        let want = big.clone();
        big[3] = f64::INFINITY;
        let c = compare(&big, &want, tol);
        assert_eq!(c.exceeded, 1);
        assert!(
            !c.passed(),
            "a spurious Inf fails even within the 0.1 % budget"
        );
    }

    #[test]
    fn one_in_a_thousand_may_exceed_a_rounding_tolerance() {
        let tol = tolerance(Class::Rounding, DType::F32);
        let want = vec![1.0; 2000];
        let mut got = want.clone();
        got[0] = 2.0;
        got[1] = 2.0;
        assert!(compare(&got, &want, tol).passed());
        got[2] = 2.0;
        assert!(!compare(&got, &want, tol).passed());
    }

    #[test]
    fn exact_comparisons_allow_no_wrong_element_not_even_a_zero_of_the_other_sign() {
        let tol = tolerance(Class::Exact, DType::F32);
        assert_eq!(tol, Tol::EXACT);
        assert_eq!(tolerance(Class::Accumulate, DType::I64), Tol::EXACT);
        let want = vec![1.0; 100_000];
        let mut got = want.clone();
        assert!(compare(&got, &want, tol).passed());
        got[70_000] = 1.0 + f64::EPSILON;
        let c = compare(&got, &want, tol);
        assert_eq!((c.exceeded, c.allowed_exceeded), (1, 0));
        assert!(!c.passed());
        assert!(!compare(&[-0.0], &[0.0], tol).passed());
        assert!(compare(&[f64::NAN, -0.0], &[-f64::NAN, -0.0], tol).passed());
    }
}
