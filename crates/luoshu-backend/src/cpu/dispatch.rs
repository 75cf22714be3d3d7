//! Dtype dispatch, once per kernel call: each macro binds a type name to the Rust type of a
//! dtype and runs a body that is generic over it.

/// Binds `$T` to the element type of a float or integer dtype (not `Bool`).
macro_rules! with_numeric {
    ($op:expr, $dtype:expr, |$T:ident| $body:expr) => {
        match $dtype {
            luoshu_tensor::DType::I64 => {
                type $T = i64;
                $body
            }
            luoshu_tensor::DType::I32 => {
                type $T = i32;
                $body
            }
            luoshu_tensor::DType::U8 => {
                type $T = u8;
                $body
            }
            other => $crate::cpu::rows::with_float!($op, other, |$T| $body),
        }
    };
}
pub(crate) use with_numeric;

/// Binds `$T` to the element type of any dtype (`Bool` as `u8`).
macro_rules! with_any {
    ($op:expr, $dtype:expr, |$T:ident| $body:expr) => {
        match $dtype {
            luoshu_tensor::DType::Bool => {
                type $T = u8;
                $body
            }
            other => $crate::cpu::dispatch::with_numeric!($op, other, |$T| $body),
        }
    };
}
pub(crate) use with_any;

/// Binds `$T` to a plain type as wide as one element of `$dtype`, for kernels that only
/// move elements (copy, select, gather).
macro_rules! with_width {
    ($dtype:expr, |$T:ident| $body:expr) => {
        match $dtype.size_in_bytes() {
            1 => {
                type $T = u8;
                $body
            }
            2 => {
                type $T = u16;
                $body
            }
            4 => {
                type $T = u32;
                $body
            }
            _ => {
                type $T = u64;
                $body
            }
        }
    };
}
pub(crate) use with_width;

/// Binds `$I` to the element type of an index dtype (`I64` or `I32`).
macro_rules! with_index {
    ($op:expr, $dtype:expr, |$I:ident| $body:expr) => {
        match $dtype {
            luoshu_tensor::DType::I64 => {
                type $I = i64;
                $body
            }
            luoshu_tensor::DType::I32 => {
                type $I = i32;
                $body
            }
            other => Err($crate::Error::UnsupportedDType {
                op: $op,
                dtype: other,
                supported: "i64, i32 (indices)",
            }),
        }
    };
}
pub(crate) use with_index;
