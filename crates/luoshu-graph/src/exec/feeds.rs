use crate::{Error, Op, Result};
use luoshu_tensor::Tensor;
use std::collections::HashMap;

/// The fed tensor for an `Input`/`Parameter` leaf, checked against the shape (under the
/// bindings) and dtype the graph declares.
pub(crate) fn bind_feed(
    op: &Op,
    dims: &[usize],
    feeds: &HashMap<String, Tensor>,
) -> Result<Tensor> {
    let (kind, name, dtype) = match op {
        Op::Input { name, dtype, .. } => ("input", name, *dtype),
        Op::Parameter { name, dtype, .. } => ("parameter", name, *dtype),
        other => {
            return Err(Error::Invalid {
                detail: format!("{} is not fed by name", other.name()),
            })
        }
    };
    let tensor = feeds.get(name).ok_or_else(|| Error::MissingFeed {
        kind,
        name: name.clone(),
        dtype,
        dims: dims.to_vec(),
    })?;
    if tensor.dims() != dims || tensor.dtype() != dtype {
        return Err(Error::FeedMismatch {
            kind,
            name: name.clone(),
            fed_dtype: tensor.dtype(),
            fed_dims: tensor.dims().to_vec(),
            dtype,
            dims: dims.to_vec(),
        });
    }
    Ok(tensor.clone())
}
