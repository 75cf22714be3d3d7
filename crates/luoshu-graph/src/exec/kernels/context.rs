//! What the family files share: the context kernels run in, and the error for an op routed
//! to the wrong family.

use crate::exec::Collectives;
use crate::{Error, Op};
use luoshu_backend::Ops;

/// What kernels run on: the operator backend, and the communicator of collective nodes
/// (absent for single-device graphs).
pub(crate) struct Context<'a> {
    pub ops: Ops<'a>,
    pub collectives: Option<&'a dyn Collectives>,
}

/// A dispatch-table bug: an op routed to the wrong family file.
pub(super) fn not_in_family(op: &Op, family: &str) -> Error {
    Error::Invalid {
        detail: format!("{} is not a {family} op", op.name()),
    }
}
