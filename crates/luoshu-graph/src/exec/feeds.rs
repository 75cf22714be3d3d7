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
    let tensor = feeds.get(name).ok_or_else(|| Error::Invalid {
        detail: format!(
            "missing feed for {kind} `{name}` ({dtype}{dims:?}); add it to the feeds by that name"
        ),
    })?;
    if tensor.dims() != dims || tensor.dtype() != dtype {
        return Err(Error::Invalid {
            detail: format!(
                "feed for {kind} `{name}` is {}{:?} but the graph expects {dtype}{dims:?}",
                tensor.dtype(),
                tensor.dims()
            ),
        });
    }
    Ok(tensor.clone())
}
