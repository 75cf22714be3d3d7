//! The tensor core of luoshu: element types, shapes, strided layouts (zero-copy views),
//! host storage, host tensors and the counter-based random number generator that every
//! backend shares so random tensors do not depend on which backend or shard made them.

#![deny(missing_docs)]

mod borrow_mode;
mod claims;
mod dtype;
mod error;
pub mod fuzz;
mod layout;
pub mod rng;
mod shape;
mod storage;
mod tensor;

pub use borrow_mode::BorrowMode;
pub use dtype::{DType, Element};
pub use error::{Error, Result};
pub use half::{bf16, f16};
pub use layout::Layout;
pub use shape::{broadcast_shapes, Shape};
pub use storage::{Borrows, ForeignClaim, Storage};
pub use tensor::Tensor;
