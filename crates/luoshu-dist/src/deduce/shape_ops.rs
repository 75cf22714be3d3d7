//! Views and layout: splits follow the dims they cut; partial and duplicate axes pass
//! through (every view is linear).

use super::rule::{aligned_dim, divisible, is_broadcast, per_axis, RuleResult};
use crate::{Axis, DState};
use luoshu_graph::{Dim, Op, TensorType};
use std::ops::Range;

pub(super) fn deduce(
    op: &Op,
    (x, state): (&TensorType, &DState),
    output: &TensorType,
) -> RuleResult {
    let split_to = |to: &dyn Fn(usize, usize) -> Result<usize, String>| {
        per_axis(&[state], 1, |extent, roles| match roles[0] {
            Axis::Split(d) => Ok(vec![Axis::Split(to(d, extent)?)]),
            other => Ok(vec![other]),
        })
    };
    match op {
        Op::Reshape { shape } => {
            let groups = reshape_groups(&x.shape, shape)
                .ok_or_else(|| format!("cannot match the dims of {:?} to {shape:?}", x.shape))?;
            split_to(&|d, parts| reshaped_split(&x.shape, shape, &groups, d, parts))
        }
        Op::Permute { perm } => split_to(&|d, _| {
            perm.iter()
                .position(|&p| p == d)
                .ok_or_else(|| format!("dim {d} is not in the permutation {perm:?}"))
        }),
        Op::Slice { dim, .. } => split_to(&|d, _| {
            if d == *dim {
                Err(format!("slicing the split dim {d}: all-gather it first"))
            } else {
                Ok(d)
            }
        }),
        Op::Broadcast { .. } => split_to(&|d, _| {
            let out_dim = aligned_dim(d, x.rank(), output.rank());
            if is_broadcast(&x.shape, &output.shape, out_dim) {
                Err(format!("dim {d} is split and broadcast"))
            } else {
                Ok(out_dim)
            }
        }),
        Op::Contiguous => Ok(vec![state.clone()]),
        other => Err(format!("{} is not a view or layout op", other.name())),
    }
}

/// Groups of input dims and output dims of equal product (size-1 dims join a neighbouring
/// group), or `None` when the products cannot be matched as monomials.
type Groups = Vec<(Range<usize>, Range<usize>)>;

fn reshape_groups(from: &[Dim], to: &[Dim]) -> Option<Groups> {
    let (mut i, mut j) = (0, 0);
    let mut groups = Vec::new();
    while i < from.len() && j < to.len() {
        let (start_i, start_j) = (i, j);
        let (mut p, mut q) = (from[i].clone(), to[j].clone());
        (i, j) = (i + 1, j + 1);
        while p != q {
            if q.div_exact(&p).is_some() && i < from.len() {
                p = p.mul(&from[i]);
                i += 1;
            } else if p.div_exact(&q).is_some() && j < to.len() {
                q = q.mul(&to[j]);
                j += 1;
            } else {
                return None;
            }
        }
        groups.push((start_i..i, start_j..j));
    }
    // Trailing size-1 dims (the products already match) join the last group.
    let rest_ones = from[i..].iter().chain(&to[j..]).all(Dim::is_one);
    match groups.last_mut() {
        Some(last) if rest_ones => {
            last.0.end = from.len();
            last.1.end = to.len();
        }
        None if rest_ones => groups.push((0..from.len(), 0..to.len())),
        _ => return None,
    }
    Some(groups)
}

/// Where a split of input dim `d` into `parts` lands: on the output dim the group maps it
/// to one-to-one, or on the merged dim when `d` leads a merge and its pieces stay whole
/// rows, or on the leading output dim when `d` is cut into several and that dim's pieces
/// are whole.
fn reshaped_split(
    from: &[Dim],
    to: &[Dim],
    groups: &Groups,
    d: usize,
    parts: usize,
) -> Result<usize, String> {
    let (ins, outs) = groups
        .iter()
        .find(|(ins, _)| ins.contains(&d))
        .ok_or_else(|| format!("dim {d} is not in a reshape group"))?;
    let significant = |dims: &[Dim], range: &Range<usize>| -> Vec<usize> {
        range.clone().filter(|&k| !dims[k].is_one()).collect()
    };
    let (ins, outs) = (significant(from, ins), significant(to, outs));
    match (ins.as_slice(), outs.as_slice()) {
        ([only], [out]) if *only == d => Ok(*out),
        ([lead, _, ..], [out]) if *lead == d && divisible(&from[d], parts) => Ok(*out),
        ([only], [lead, _, ..]) if *only == d && divisible(&to[*lead], parts) => Ok(*lead),
        _ => Err(format!(
            "the split of dim {d} ({}) into {parts} does not map onto one output dim as whole pieces (input dims {ins:?} become output dims {outs:?})",
            from[d]
        )),
    }
}
