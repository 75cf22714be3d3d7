//! The graph layer of luoshu: a functional, hash-consed IR with symbolic dimensions, shape
//! and dtype inference, `verify`, and (in submodules) autodiff, compiler passes, the memory
//! planner and the executor.

mod dim;
mod error;
mod graph;
pub mod infer;
mod op;

pub use dim::{eval_shape, fixed_shape, numel, Bindings, Dim};
pub use error::{Error, Result};
pub use graph::{Graph, Node, NodeId, TensorType, Value};
pub use op::{ConstData, Distribution, Float, Op};
