//! Every pass that runs on a graph alone, by name: for command lines, pipelines and tests.
//! `recompute` is not here: it also needs a policy, so its callers run it directly.

use super::{dce, fold, fuse_elementwise, fuse_patterns, simplify, Pass};
use crate::{Error, Result};

pub(super) const FOLD: Pass = Pass {
    name: "fold",
    run: fold,
};
pub(super) const SIMPLIFY: Pass = Pass {
    name: "simplify",
    run: simplify,
};
pub(super) const DCE: Pass = Pass {
    name: "dce",
    run: dce,
};
pub(super) const FUSE_PATTERNS: Pass = Pass {
    name: "fuse_patterns",
    run: fuse_patterns,
};
pub(super) const FUSE_ELEMENTWISE: Pass = Pass {
    name: "fuse_elementwise",
    run: fuse_elementwise,
};

/// Every registered pass, in default pipeline order.
pub const ALL_PASSES: &[Pass] = &[FOLD, SIMPLIFY, DCE, FUSE_PATTERNS, FUSE_ELEMENTWISE];

/// The pass called `name`; an unknown name is an error listing the known ones.
pub fn pass_by_name(name: &str) -> Result<Pass> {
    if let Some(pass) = ALL_PASSES.iter().find(|p| p.name == name) {
        return Ok(*pass);
    }
    let known: Vec<&str> = ALL_PASSES.iter().map(|p| p.name).collect();
    let suggestion = closest(name, &known)
        .map(|k| format!("did you mean `{k}`? "))
        .unwrap_or_default();
    Err(Error::UnknownPass {
        name: name.to_string(),
        suggestion,
        known: known.join(", "),
    })
}

/// The entry of `known` fewest edits from a misspelt `name`, if it is a plausible typo
/// (at most a third of the name's length off, or two for short names) or `name` is its
/// prefix (`a800` for `a800-node`): "did you mean".
pub fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|&k| (edit_distance(name, k), k))
        .filter(|&(distance, k)| distance <= (name.len() / 3).max(2) || k.starts_with(name))
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance (insertions, deletions and substitutions of characters).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substituted = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substituted.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}
