use crate::Result;
use luoshu_tensor::{Borrows, DType, Tensor};
use std::sync::Arc;
use std::time::Duration;

/// How long an operation waits for its peers before failing with [`crate::Error::Timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Elementwise reduction of a collective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Elementwise sum (gradients, losses).
    Sum,
    /// Elementwise maximum (the slowest rank's time, a flag any rank raised).
    Max,
}

/// A group of ranks that exchange tensors.
///
/// Tensors may have any layout (backends copy non-contiguous inputs) and any dtype of
/// `luoshu_tensor::DType`; reductions support `F64`, `F32`, `BF16`, `F16`, `I64`, `I32`
/// (half types accumulate in `f32`, then round). Every returned tensor owns its storage
/// exclusively, so the caller may update it in place. Sizes may differ per rank where an
/// operation says so ("uneven"); everything else must match across ranks and a mismatch is
/// an [`crate::Error::InvalidArgument`] on every rank.
///
/// Reductions combine contributions in rank order (0, 1, …), so results are bit-identical
/// across runs and across backends.
pub trait Communicator: Send + Sync {
    /// This rank's index in `0..size()`.
    fn rank(&self) -> usize;
    /// Number of ranks in the group.
    fn size(&self) -> usize;
    /// Backend name (`threads`, `mpi`) for logs and errors.
    fn backend(&self) -> &'static str;
    /// How long operations wait for peers.
    fn timeout(&self) -> Duration;

    /// Collective: ranks passing the same `color` form a new group, ordered by `(key,
    /// old rank)`. Every rank gets the communicator of its own color.
    fn split(&self, color: usize, key: usize) -> Result<Arc<dyn Communicator>>;

    /// Elementwise reduction of every rank's `x` (same shape and dtype everywhere); every
    /// rank gets the result.
    fn all_reduce(&self, x: &Tensor, op: ReduceOp) -> Result<Tensor>;

    /// [`Communicator::all_reduce`] whose result overwrites `x` (contiguous, any offset;
    /// the caller neither reads nor writes it until the call returns), so a buffer reduced
    /// again and again (gradients) costs no fresh allocation. Same bits as `all_reduce`.
    /// The default runs `all_reduce` and copies the result into `x`.
    fn all_reduce_in_place(&self, x: &Tensor, op: ReduceOp) -> Result<()> {
        check_in_place(x, self.rank())?;
        let result = self.all_reduce(x, op)?;
        overwrite(x, &result)
    }

    /// Every rank's `x`, in rank order (uneven: shapes may differ, dtypes may not).
    fn all_gather(&self, x: &Tensor) -> Result<Vec<Tensor>>;

    /// `parts[i]` of every rank reduced elementwise and delivered to rank `i` (uneven:
    /// `parts[i]` may differ in shape for different `i`, but must have the same shape on
    /// every rank). `parts.len()` must equal `size()`.
    fn reduce_scatter(&self, parts: &[Tensor], op: ReduceOp) -> Result<Tensor>;

    /// `parts[i]` is sent to rank `i`; returns what every rank sent to this one, in rank
    /// order (uneven: any shapes).
    fn all_to_all(&self, parts: &[Tensor]) -> Result<Vec<Tensor>>;

    /// `root`'s `x` on every rank; other ranks' `x` is ignored (pass anything, e.g. an
    /// empty tensor).
    fn broadcast(&self, x: &Tensor, root: usize) -> Result<Tensor>;

    /// Point-to-point: deliver `x` to `dst` with `tag`. May return before `dst` receives.
    fn send(&self, x: &Tensor, dst: usize, tag: u64) -> Result<()>;

    /// Point-to-point: the tensor `src` sent with `tag` (shape and dtype travel with it).
    fn recv(&self, src: usize, tag: u64) -> Result<Tensor>;

    /// Point-to-point, posted together so no ordering can deadlock: sends every
    /// `(dst, tensor)` of `sends` and returns the tensors from every rank of `recv_from`, in
    /// that order. Not collective: only the ranks named take part. All messages use `tag`.
    fn batched_send_recv(
        &self,
        sends: &[(usize, Tensor)],
        recv_from: &[usize],
        tag: u64,
    ) -> Result<Vec<Tensor>>;

    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<()>;
}

/// Fails unless `x` can be overwritten in place by a collective: it must be contiguous.
pub(crate) fn check_in_place(x: &Tensor, rank: usize) -> Result<()> {
    if x.is_contiguous() {
        return Ok(());
    }
    Err(crate::Error::InvalidArgument {
        op: "all_reduce_in_place".into(),
        rank,
        message: format!(
            "the tensor must be contiguous to be overwritten in place (dims {:?}, strides \
             {:?}); pass a contiguous buffer, or use all_reduce",
            x.dims(),
            x.layout().strides()
        ),
    })
}

/// Copies the bytes of `from` (a collective's fresh contiguous result) over contiguous `x`
/// of the same dtype and element count.
fn overwrite(x: &Tensor, from: &Tensor) -> Result<()> {
    let width = x.dtype().size_in_bytes();
    let len = x.numel() * width;
    let bytes = |t: &Tensor| {
        let start = t.layout().offset() * width;
        start..start + len
    };
    let borrows = Borrows::new();
    let src: &[u8] = borrows.read("overwrite", from.storage(), DType::U8, bytes(from))?;
    let dst: &mut [u8] = borrows.write("overwrite", x.storage(), DType::U8, bytes(x))?;
    dst.copy_from_slice(src);
    Ok(())
}
