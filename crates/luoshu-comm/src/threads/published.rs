//! Tensors as ranks publish them to their peers, and the one copy each peer makes.

use super::shared;
use crate::reduce::check_reducible;
use crate::{ReduceOp, Result};
use luoshu_tensor::{Borrows, Layout, Storage, Tensor};
use std::sync::Arc;

/// A rank's input as its peers read it: always contiguous (strided views are copied once
/// when published), so peers can copy or reduce it as one byte range.
pub(super) struct Published(Tensor);

impl Published {
    /// `x` itself if contiguous (peers read the caller's storage directly), else a
    /// contiguous copy.
    pub(super) fn new(x: &Tensor) -> Result<Self> {
        if x.is_contiguous() {
            Ok(Published(x.clone()))
        } else {
            Ok(Published(x.to_contiguous()?))
        }
    }

    pub(super) fn tensor(&self) -> &Tensor {
        &self.0
    }

    /// A fresh contiguous copy that owns its storage, made while the tensor is published.
    pub(super) fn copy(&self) -> Result<Tensor> {
        let x = &self.0;
        // Published inputs are only read while published: the owning rank is blocked in the
        // collective until every peer has finished reading (the completion wait).
        let borrows = Borrows::new();
        let all = 0..x.numel() * x.dtype().size_in_bytes();
        let bytes = shared::bytes(&borrows, "publish", x, all)?;
        let storage = Arc::new(Storage::from_slice(bytes));
        let layout = Layout::contiguous(self.0.shape().clone())?;
        Ok(Tensor::from_storage(storage, layout, self.0.dtype())?)
    }
}

/// The elementwise `op` of `inputs` (one per rank, in rank order, all of the same dtype and
/// shape as `like`) into a fresh tensor.
pub(super) fn reduce_published(
    name: &str,
    rank: usize,
    like: &Tensor,
    inputs: &[&Published],
    op: ReduceOp,
) -> Result<Tensor> {
    let dtype = like.dtype();
    check_reducible(dtype).map_err(|err| err.at(name, rank))?;
    let out = Tensor::zeros(dtype, like.shape().clone())?;
    let tensors: Vec<&Tensor> = inputs.iter().map(|input| input.tensor()).collect();
    let all = 0..out.numel() * dtype.size_in_bytes();
    shared::reduce_region(dtype, op, &tensors, &out, all, (name, rank))?;
    Ok(out)
}
