//! The executor's view of communication. The graph layer sits below the communication
//! layer, so it only names what a collective node needs; `luoshu-dist` implements it over a
//! communicator.

use crate::{CollectiveReduce, Result};
use luoshu_tensor::Tensor;

/// Runs the collective nodes of a graph for one rank. `group` is the name the node carries
/// (e.g. `tp`); `out` is a contiguous tensor of the node's output shape to write into.
pub trait Collectives: Send + Sync {
    /// Writes the elementwise `op` of every rank's `x` into `out` (same shape as `x`).
    fn all_reduce(&self, group: &str, op: CollectiveReduce, x: &Tensor, out: &Tensor)
        -> Result<()>;

    /// Writes every rank's `x` concatenated along `dim` in rank order into `out`.
    fn all_gather(&self, group: &str, dim: usize, x: &Tensor, out: &Tensor) -> Result<()>;

    /// Sums every rank's `x` and writes this rank's piece of the sum (the `i`-th of equal
    /// pieces along `dim` for rank `i`) into `out`.
    fn reduce_scatter(&self, group: &str, dim: usize, x: &Tensor, out: &Tensor) -> Result<()>;

    /// Sends `x` to the rank `offset` places after this one in the group's ring and writes
    /// what the rank `offset` places before sent into `out`.
    fn ring_shift(&self, group: &str, offset: usize, x: &Tensor, out: &Tensor) -> Result<()>;
}
