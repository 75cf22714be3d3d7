//! Communication for distributed training: the [`Communicator`] trait and its backends.
//!
//! - [`threads`]: N ranks as threads of one process, the embedded default (tests,
//!   `luoshu train --devices N`).
//! - `mpi` (cargo feature `mpi`): ranks as MPI processes launched by `mpirun`.
//!
//! Every operation is collective over the communicator's group unless it says otherwise,
//! must be called by every rank in the same order, and fails with [`Error::Timeout`]
//! naming the operation and the ranks that never arrived instead of hanging.

#![deny(missing_docs)]

pub mod bench;
mod communicator;
pub mod conformance;
mod error;
#[cfg(feature = "mpi")]
pub mod mpi;
pub(crate) mod reduce;
pub mod threads;

pub use communicator::{Communicator, ReduceOp, DEFAULT_TIMEOUT};
pub use error::{Error, Result};
