//! The graph layer of luoshu: a functional, hash-consed IR with symbolic dimensions, shape
//! and dtype inference, `verify`, and (in submodules) autodiff, compiler passes, the memory
//! planner and the executor.

#![deny(missing_docs)]

pub mod autodiff;
mod builder;
pub mod cost;
mod dim;
pub mod dump;
mod error;
pub mod exec;
mod graph;
pub mod infer;
pub mod memory;
mod op;
pub mod passes;
pub mod schedule;
mod tensor_type;
mod value;

pub use autodiff::grad;
pub use dim::{eval_shape, fixed_shape, numel, Bindings, Dim};
pub use error::{Error, Result};
pub use exec::{compile, evaluate, evaluate_with, Collectives, CompileOptions, Plan};
pub use graph::{Graph, Node};
pub use op::{CollectiveReduce, ConstData, Distribution, Float, Op};
pub use tensor_type::TensorType;
pub use value::{NodeId, Value};
