//! Checks that the ranks of a collective passed compatible arguments. Every rank runs them
//! on the same published inputs, so every rank reports the same mismatch.

use super::published::Published;
use crate::{Error, Result};
use std::fmt;

/// Which rank's argument a tensor is: its `x`, or `parts[i]`.
#[derive(Clone, Copy)]
pub(super) struct Source {
    pub(super) rank: usize,
    pub(super) part: Option<usize>,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.part {
            None => write!(f, "rank {}'s x", self.rank),
            Some(part) => write!(f, "rank {}'s parts[{part}]", self.rank),
        }
    }
}

/// Fails unless every tensor has the first one's dtype and, if `same_shape`, its shape.
pub(super) fn all_match<'a>(
    name: &str,
    rank: usize,
    same_shape: bool,
    tensors: impl IntoIterator<Item = (Source, &'a Published)>,
) -> Result<()> {
    let mut tensors = tensors.into_iter();
    let Some((first_source, first)) = tensors.next() else {
        return Ok(());
    };
    let first = first.tensor();
    for (source, other) in tensors {
        let other = other.tensor();
        let differs =
            other.dtype() != first.dtype() || (same_shape && other.dims() != first.dims());
        if differs {
            let kind = if same_shape {
                "dtypes and shapes"
            } else {
                "dtypes"
            };
            return Err(Error::InvalidArgument {
                op: name.to_string(),
                rank,
                message: format!(
                    "{kind} must match across ranks: {source} is {} {:?} but {first_source} is {} {:?}",
                    other.dtype(),
                    other.dims(),
                    first.dtype(),
                    first.dims()
                ),
            });
        }
    }
    Ok(())
}

/// Fails unless every rank passed one part per rank.
pub(super) fn part_counts(
    name: &str,
    rank: usize,
    size: usize,
    parts: &[&Vec<Published>],
) -> Result<()> {
    match parts.iter().position(|p| p.len() != size) {
        None => Ok(()),
        Some(peer) => Err(Error::InvalidArgument {
            op: name.to_string(),
            rank,
            message: format!(
                "rank {peer} passed {} parts but the group has {size} ranks (one part per rank)",
                parts[peer].len()
            ),
        }),
    }
}
