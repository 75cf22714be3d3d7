//! The steps of a stage's pipeline schedule, in a file of their own so that the crate's
//! errors can name them without a module cycle.

/// One step of a stage's pipeline schedule, on the micro-batch of that index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PipelineAction {
    /// The forward pass of the stage's layers on a micro-batch.
    Forward(usize),
    /// The backward pass of the stage's layers on a micro-batch.
    Backward(usize),
}
