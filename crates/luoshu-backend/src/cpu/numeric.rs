//! Scalar arithmetic the primitive kernels share: the transcendental functions of the float
//! compute types, NaN-propagating extrema, wrapping integer arithmetic, and numeric casts
//! with Rust `as` semantics extended to bf16/f16.

use super::rows::Acc;
use half::{bf16, f16};
use luoshu_tensor::Element;

/// The functions unary kernels need, in a float compute precision (f32 or f64).
pub(crate) trait Math: Acc {
    const HALF: Self;
    const FRAC_1_SQRT_2: Self;
    fn abs(self) -> Self;
    fn sin(self) -> Self;
    fn cos(self) -> Self;
    fn tanh(self) -> Self;
    fn erf(self) -> Self;
    fn powf(self, e: Self) -> Self;
    fn is_nan(self) -> bool;
}

impl Math for f32 {
    const HALF: Self = 0.5;
    const FRAC_1_SQRT_2: Self = std::f32::consts::FRAC_1_SQRT_2;
    fn abs(self) -> Self {
        f32::abs(self)
    }
    fn sin(self) -> Self {
        f32::sin(self)
    }
    fn cos(self) -> Self {
        f32::cos(self)
    }
    fn tanh(self) -> Self {
        f32::tanh(self)
    }
    fn erf(self) -> Self {
        libm::erff(self)
    }
    fn powf(self, e: Self) -> Self {
        f32::powf(self, e)
    }
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
}

impl Math for f64 {
    const HALF: Self = 0.5;
    const FRAC_1_SQRT_2: Self = std::f64::consts::FRAC_1_SQRT_2;
    fn abs(self) -> Self {
        f64::abs(self)
    }
    fn sin(self) -> Self {
        f64::sin(self)
    }
    fn cos(self) -> Self {
        f64::cos(self)
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    fn erf(self) -> Self {
        libm::erf(self)
    }
    fn powf(self, e: Self) -> Self {
        f64::powf(self, e)
    }
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
}

/// The larger of `a` and `b`, NaN if either is NaN (`a`'s NaN first).
#[inline]
pub(crate) fn nan_max<C: Math>(a: C, b: C) -> C {
    if a.is_nan() || a >= b {
        a
    } else {
        b
    }
}

/// The smaller of `a` and `b`, NaN if either is NaN (`a`'s NaN first).
#[inline]
pub(crate) fn nan_min<C: Math>(a: C, b: C) -> C {
    if a.is_nan() || a <= b {
        a
    } else {
        b
    }
}

/// Integer element types with wrapping arithmetic.
pub(crate) trait Int: Element + Ord {
    const MIN: Self;
    const MAX: Self;
    const ZERO: Self;
    fn wrapping_add(self, o: Self) -> Self;
    fn wrapping_sub(self, o: Self) -> Self;
    fn wrapping_mul(self, o: Self) -> Self;
    fn wrapping_neg(self) -> Self;
    fn wrapping_abs(self) -> Self;
}

macro_rules! int_impl {
    ($t:ty, $abs:expr) => {
        impl Int for $t {
            const MIN: Self = <$t>::MIN;
            const MAX: Self = <$t>::MAX;
            const ZERO: Self = 0;
            fn wrapping_add(self, o: Self) -> Self {
                <$t>::wrapping_add(self, o)
            }
            fn wrapping_sub(self, o: Self) -> Self {
                <$t>::wrapping_sub(self, o)
            }
            fn wrapping_mul(self, o: Self) -> Self {
                <$t>::wrapping_mul(self, o)
            }
            fn wrapping_neg(self) -> Self {
                <$t>::wrapping_neg(self)
            }
            fn wrapping_abs(self) -> Self {
                $abs(self)
            }
        }
    };
}
int_impl!(i64, i64::wrapping_abs);
int_impl!(i32, i32::wrapping_abs);
int_impl!(u8, |x: u8| x);

/// Index element types (`I64`, `I32`).
pub(crate) trait IndexInt: Element {
    fn to_i64(self) -> i64;
}
impl IndexInt for i64 {
    fn to_i64(self) -> i64 {
        self
    }
}
impl IndexInt for i32 {
    fn to_i64(self) -> i64 {
        self as i64
    }
}

/// A numeric conversion: Rust `as` between primitives (floats to integers truncate and
/// saturate), round-to-nearest-even into bf16/f16, exact widening out of them.
pub(crate) trait CastTo<O> {
    fn cast_to(self) -> O;
}

macro_rules! as_casts {
    ($from:ty => $($to:ty),*) => {
        $(impl CastTo<$to> for $from {
            #[inline]
            fn cast_to(self) -> $to {
                self as $to
            }
        })*
        impl CastTo<bf16> for $from {
            #[inline]
            fn cast_to(self) -> bf16 {
                bf16::from_f64(self as f64)
            }
        }
        impl CastTo<f16> for $from {
            #[inline]
            fn cast_to(self) -> f16 {
                f16::from_f64(self as f64)
            }
        }
    };
}
as_casts!(f64 => f64, f32, i64, i32, u8);
as_casts!(f32 => f64, f32, i64, i32, u8);
as_casts!(i64 => f64, f32, i64, i32, u8);
as_casts!(i32 => f64, f32, i64, i32, u8);
as_casts!(u8 => f64, f32, i64, i32, u8);

macro_rules! half_casts {
    ($half:ty) => {
        impl<O> CastTo<O> for $half
        where
            f32: CastTo<O>,
        {
            #[inline]
            fn cast_to(self) -> O {
                self.to_f32().cast_to()
            }
        }
    };
}
half_casts!(bf16);
half_casts!(f16);
