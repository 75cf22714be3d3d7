//! Models, optimizers and the data pipeline of luoshu.

pub mod data;
mod error;

pub use error::{Error, Result};
