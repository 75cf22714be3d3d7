//! The parameter store: tensors by name, in the model's fixed parameter order.

use crate::{Error, Result};
use luoshu_backend::Ops;
use luoshu_tensor::Tensor;
use std::collections::HashMap;

/// Named tensors in insertion order (the order of [`crate::param_specs`]), with lookup by
/// name. Used for parameters and for each optimizer moment.
#[derive(Debug, Clone, Default)]
pub struct ParamStore {
    names: Vec<String>,
    tensors: Vec<Tensor>,
    index: HashMap<String, usize>,
}

impl ParamStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append `tensor` under a new `name`.
    pub fn insert(&mut self, name: &str, tensor: Tensor) -> Result<()> {
        if self.index.contains_key(name) {
            return Err(Error::State(format!("parameter `{name}` is stored twice")));
        }
        self.index.insert(name.to_string(), self.names.len());
        self.names.push(name.to_string());
        self.tensors.push(tensor);
        Ok(())
    }

    /// The tensor stored under `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// Number of tensors stored.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The names, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The tensors, in the order of [`ParamStore::names`].
    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }

    /// `(name, tensor)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.names.iter().map(String::as_str).zip(&self.tensors)
    }

    /// Total number of elements.
    pub fn numel(&self) -> usize {
        self.tensors.iter().map(Tensor::numel).sum()
    }

    /// A copy with its own buffers (tensors share storage, and the optimizer updates in
    /// place, so a snapshot must not alias the live tensors).
    pub fn deep_copy(&self, ops: &Ops) -> Result<ParamStore> {
        let mut out = ParamStore::new();
        for (name, t) in self.iter() {
            let copy = ops.alloc(t.dtype(), t.dims())?;
            ops.copy_into(t, &copy)?;
            out.insert(name, copy)?;
        }
        Ok(out)
    }

    /// Check that `self` has exactly `other`'s names, shapes and dtypes, in order.
    pub fn check_matches(&self, other: &ParamStore, what: &str) -> Result<()> {
        if self.names != other.names {
            return Err(Error::State(format!(
                "{what} holds tensors {:?} but the model has {:?}",
                self.names, other.names
            )));
        }
        for ((name, a), b) in self.iter().zip(other.tensors()) {
            if a.dims() != b.dims() || a.dtype() != b.dtype() {
                return Err(Error::State(format!(
                    "{what}: `{name}` is {}{:?} but the model needs {}{:?}",
                    a.dtype(),
                    a.dims(),
                    b.dtype(),
                    b.dims()
                )));
            }
        }
        Ok(())
    }
}
