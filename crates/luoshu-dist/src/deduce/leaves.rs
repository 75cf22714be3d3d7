//! Leaves have no inputs to deduce from: the strategy chooses their states.

use super::rule::RuleResult;
use luoshu_graph::Op;

pub(super) fn deduce(op: &Op) -> RuleResult {
    Err(format!(
        "{} is a leaf: it has no inputs, so its state is chosen by the strategy, not deduced",
        op.name()
    ))
}
