//! The MPI backend (cargo feature `mpi`): ranks are the processes of an MPI job started by
//! `mpirun`, over rsmpi.
//!
//! ```no_run
//! # fn main() -> luoshu_comm::Result<()> {
//! use luoshu_comm::{mpi::MpiComm, DEFAULT_TIMEOUT};
//! let comm = MpiComm::world(DEFAULT_TIMEOUT)?;
//! comm.barrier()?;
//! drop(comm);
//! luoshu_comm::mpi::finalize()?;
//! # Ok(())
//! # }
//! ```
//!
//! MPI is initialized by the first [`MpiComm::world`] with `MPI_THREAD_SERIALIZED`, and
//! every MPI call of this backend is made under one process-wide lock, so communicators
//! can be used from any thread. MPI stays initialized until [`finalize`]. Operations never
//! block in MPI: messages and MPI's own collectives are non-blocking and polled, with a
//! back-off that starts in microseconds, until the communicator's timeout (see [`MpiComm`]
//! for the protocol).

mod backoff;
mod buffer;
mod comm;
mod native;
mod runtime;
mod transfer;
mod wire;

pub use comm::MpiComm;
pub use runtime::finalize;
