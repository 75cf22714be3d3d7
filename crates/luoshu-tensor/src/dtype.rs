//! Element types: the [`DType`] tag a tensor carries and the [`Element`] Rust types behind it.

use half::{bf16, f16};
use std::fmt;

/// Element type of a tensor. `Bool` is stored as one byte per element (0 or 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// Used by the reference backend for gradient checks; fast backends may not support it.
    F64,
    /// 32-bit IEEE float, the dtype of master weights and of most kernels.
    F32,
    /// bfloat16: f32's exponent range with an 8-bit mantissa.
    BF16,
    /// IEEE half precision (5-bit exponent, 10-bit mantissa).
    F16,
    /// 64-bit signed integer.
    I64,
    /// 32-bit signed integer (token ids, class indices).
    I32,
    /// Unsigned byte.
    U8,
    /// Truth value, stored as one byte holding 0 or 1.
    Bool,
}

impl DType {
    /// Every dtype, in declaration order.
    pub const ALL: [DType; 8] = [
        DType::F64,
        DType::F32,
        DType::BF16,
        DType::F16,
        DType::I64,
        DType::I32,
        DType::U8,
        DType::Bool,
    ];
    /// The float dtypes every backend must support (f64 is optional, see [`DType::F64`]).
    pub const FLOATS: [DType; 3] = [DType::F32, DType::BF16, DType::F16];

    /// Bytes one element occupies in storage (`Bool` takes one).
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::BF16 | DType::F16 => 2,
            DType::I64 => 8,
            DType::U8 | DType::Bool => 1,
        }
    }

    /// True for `F64`, `F32`, `BF16` and `F16`.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F64 | DType::F32 | DType::BF16 | DType::F16)
    }

    /// True for `I64`, `I32` and `U8` (`Bool` is neither float nor integer).
    pub fn is_integer(self) -> bool {
        matches!(self, DType::I64 | DType::I32 | DType::U8)
    }

    /// The Rust type that holds this dtype's elements in memory (`Bool` is held as `u8`).
    pub fn storage_dtype(self) -> DType {
        match self {
            DType::Bool => DType::U8,
            other => other,
        }
    }

    /// Lower-case name as printed in messages (`"bf16"`, `"bool"`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F64 => "f64",
            DType::F32 => "f32",
            DType::BF16 => "bf16",
            DType::F16 => "f16",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::U8 => "u8",
            DType::Bool => "bool",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A Rust type that can be the element of a tensor.
pub trait Element: bytemuck::Pod + Send + Sync + PartialEq + fmt::Debug + 'static {
    /// The dtype whose storage holds this Rust type (`u8` is `U8`; `Bool` has no own type).
    const DTYPE: DType;
    /// Exact for every dtype except `i64` beyond 2^53.
    fn to_f64(self) -> f64;
    /// Rounds (floats) or truncates and saturates (integers) like a numeric cast.
    fn from_f64(v: f64) -> Self;
    /// Converts like an `as` cast: exact for f32, bf16, f16 and the small integers, rounded
    /// for f64 and for integers beyond 2^24.
    fn to_f32(self) -> f32;
    /// Rounds to nearest (floats) or truncates and saturates (integers) like a numeric cast.
    fn from_f32(v: f32) -> Self;
}

macro_rules! float_element {
    ($t:ty, $d:expr, $to32:expr, $from32:expr, $from64:expr) => {
        impl Element for $t {
            const DTYPE: DType = $d;
            fn to_f64(self) -> f64 {
                $to32(self) as f64
            }
            fn from_f64(v: f64) -> Self {
                $from64(v)
            }
            fn to_f32(self) -> f32 {
                $to32(self)
            }
            fn from_f32(v: f32) -> Self {
                $from32(v)
            }
        }
    };
}

impl Element for f64 {
    const DTYPE: DType = DType::F64;
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn from_f32(v: f32) -> Self {
        v as f64
    }
}

float_element!(f32, DType::F32, |x: f32| x, |x: f32| x, |x: f64| x as f32);
float_element!(
    bf16,
    DType::BF16,
    bf16::to_f32,
    bf16::from_f32,
    bf16::from_f64
);
float_element!(f16, DType::F16, f16::to_f32, f16::from_f32, f16::from_f64);

macro_rules! int_element {
    ($t:ty, $d:expr) => {
        impl Element for $t {
            const DTYPE: DType = $d;
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn to_f32(self) -> f32 {
                self as f32
            }
            fn from_f32(v: f32) -> Self {
                v as $t
            }
        }
    };
}

int_element!(i64, DType::I64);
int_element!(i32, DType::I32);
int_element!(u8, DType::U8);
