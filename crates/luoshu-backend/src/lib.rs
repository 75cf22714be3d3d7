//! The operator interface of luoshu (after DeepLink's DIOPI): the [`Backend`] trait a device
//! implements once, validated access through [`Ops`], default decompositions of composite
//! ops, the fast [`cpu::CpuBackend`], the plain [`reference::ReferenceBackend`] used as the
//! oracle, and the [`conformance`] suite any backend can be run against.

#![deny(missing_docs)]

mod api;
mod backend;
pub mod composite;
pub mod conformance;
pub mod cpu;
mod error;
pub mod ops;
pub mod profiled;
pub mod reference;

pub use api::Ops;
pub use backend::Backend;
pub use error::{Error, Result};
pub use luoshu_tensor::{DType, Shape, Tensor};

use std::sync::Arc;

/// Backends selectable at run time by name.
pub const BACKEND_NAMES: [&str; 2] = ["cpu", "reference"];

/// The backend called `name` (see [`BACKEND_NAMES`]).
pub fn backend_by_name(name: &str) -> Result<Arc<dyn Backend>> {
    match name {
        "cpu" => Ok(Arc::new(cpu::CpuBackend::new())),
        "reference" => Ok(Arc::new(reference::ReferenceBackend)),
        other => Err(Error::invalid(
            "backend",
            format!(
                "unknown backend `{other}`; available: {}",
                BACKEND_NAMES.join(", ")
            ),
        )),
    }
}
