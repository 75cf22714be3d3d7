//! Element-wise comparison of a distributed step with the single-device reference: the
//! loss and the global gradient norm before clipping of every step, and every piece of the
//! parameters and AdamW moments a rank holds, against the reference state cut into the
//! pieces its strategy's placements give that rank.
//!
//! # Tolerances (fp32)
//!
//! The strategies compute the same sums in other orders (data-parallel reductions,
//! tensor-parallel partial sums, the pipeline's stage boundaries), so a gradient element
//! differs from one device by a few ulps **of the terms it sums**, not of itself: an
//! element that is small because its terms cancel carries an absolute error of the size
//! of its tensor's typical gradient. Hence, per element,
//!
//! `|got − expected| ≤ RTOL · |expected| + RTOL · rms(tensor)`
//!
//! with `RTOL` = 1e-5 and `rms` the root mean square of the whole single-device tensor:
//! the small atol that keeps cancelling elements from failing a correct strategy. The
//! second moment is compared as `√v`, which like `m` is in units of the gradient (an
//! absolute gradient error `δ` is an error `δ` in `√v` but `2|g|δ` in `v`, so `v` itself
//! has no scale-free atol). Parameters follow Adam's update `lr · m̂ / (√v̂ + eps)`, which
//! amplifies gradient rounding by up to `lr / eps` where `|g| ≲ eps`; `train_config`'s
//! eps 1e-3 keeps that inside the bound (with eps 1e-6, parameters drifted to 5e-4 of
//! their rms in one step). Measured over every strategy of `tests/parallel.rs` and every
//! [`super::conformance::Case`], 5 steps, the worst element reaches 0.45 of its
//! tolerance, while the bugs the check exists for are orders of magnitude above it: one
//! bucket's gradients doubled moves parameters by ~1e-4 against an allowance of ~2e-7,
//! and the gradient norm by 45 %. The loss and the gradient norm before clipping are
//! compared at `RTOL` relative (plus 1e-6 absolute for the loss, as before).

use super::StatePieces;
use crate::placement::StatePlacements;
use crate::trainer::StepStats;
use crate::{Error, Result, TrainerState};
use luoshu_backend::Ops;
use luoshu_dist::{Piece, Placement};
use luoshu_model::ParamStore;
use luoshu_tensor::Tensor;

/// Relative tolerance of every comparison (fp32).
pub const RTOL: f64 = 1e-5;

/// The closest a comparison came to its tolerance: `ratio` = |got − expected| / allowed
/// of the worst element or scalar (≤ 1 passes), and where it is (empty when every value
/// was exact).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Agreement {
    /// The worst element's |got − expected| divided by its allowed error (≤ 1 passes).
    pub ratio: f64,
    /// Where that element is; empty when every value was exact.
    pub at: String,
}

impl Agreement {
    /// Keep the worse of `self` and `other`.
    pub fn merge(&mut self, other: Agreement) {
        if other.ratio > self.ratio {
            *self = other;
        }
    }
}

/// The loss and the gradient norm before clipping of one step.
pub fn compare_stats(what: &str, got: &StepStats, expected: &StepStats) -> Result<Agreement> {
    let mut agreement = Agreement::default();
    let scalars = [
        ("loss", got.loss, expected.loss, 1e-6),
        (
            "gradient norm before clipping",
            got.grad_norm,
            expected.grad_norm,
            0.0,
        ),
    ];
    for (name, x, y, atol) in scalars {
        let allowed = RTOL * y.abs() + atol;
        let Some(ratio) = within(x, y, allowed) else {
            return Err(Error::State(format!(
                "{what}: {name} is {x:.9e}, one device has {y:.9e} (|Δ| {:.2e} > {allowed:.2e}; \
                 {:.6} times one device's)",
                (x - y).abs(),
                x / y
            )));
        };
        agreement.merge(Agreement {
            ratio,
            at: format!("{what} {name}"),
        });
    }
    Ok(agreement)
}

/// Every piece of parameters, first and second moments `pieces` holds (world rank
/// `rank`, laid out as `placed` says) against the single-device `expected` cut into the
/// same pieces, element-wise (see the module docs for the tolerance).
pub fn compare_pieces(
    ops: &Ops,
    what: &str,
    rank: usize,
    pieces: &StatePieces,
    placed: &StatePlacements,
    expected: &TrainerState,
) -> Result<Agreement> {
    let mut agreement = Agreement::default();
    let kinds = [
        (
            "parameter",
            &pieces.params,
            &placed.params,
            &expected.params,
        ),
        (
            "adam m",
            &pieces.adam_m,
            &placed.optimizer,
            &expected.adam_m,
        ),
        (
            "adam v",
            &pieces.adam_v,
            &placed.optimizer,
            &expected.adam_v,
        ),
    ];
    for (kind, held, placements, store) in kinds {
        if held.len() != placed.specs.len() {
            return Err(Error::State(format!(
                "{what}: {} {kind} tensors, the model has {}",
                held.len(),
                placed.specs.len()
            )));
        }
        for ((spec, placement), got) in placed.specs.iter().zip(placements).zip(held) {
            let canonical = store.get(&spec.name).ok_or_else(|| {
                Error::State(format!("{what}: one device has no {kind} `{}`", spec.name))
            })?;
            let name = format!("{what}: {kind} {}", spec.name);
            let sqrt = kind == "adam v";
            agreement.merge(compare_tensor(
                ops, &name, rank, got, placement, canonical, sqrt,
            )?);
        }
    }
    Ok(agreement)
}

/// The pieces `got` of one tensor held by `rank` against `canonical` cut by `placement`.
fn compare_tensor(
    ops: &Ops,
    name: &str,
    rank: usize,
    got: &[Tensor],
    placement: &Placement,
    canonical: &Tensor,
    sqrt: bool,
) -> Result<Agreement> {
    let layout = placement.pieces_of(rank);
    if got.len() != layout.len() {
        return Err(Error::State(format!(
            "{name}: the rank holds {} pieces, its placement {}",
            got.len(),
            layout.len()
        )));
    }
    let atol = RTOL * rms(&values(canonical, sqrt));
    let expected = placement.cut_for(ops, rank, canonical)?;
    let mut agreement = Agreement::default();
    for ((piece, held), cut) in layout.iter().zip(got).zip(&expected) {
        if held.dims() != cut.dims() {
            return Err(Error::State(format!(
                "{name}: a piece of shape {:?}, its placement says {:?}",
                held.dims(),
                cut.dims()
            )));
        }
        let (x, y) = (values(held, sqrt), values(cut, sqrt));
        let at = |i: usize| coordinates(piece, i);
        agreement.merge(compare_values(name, &x, &y, atol, sqrt, at)?);
    }
    Ok(agreement)
}

/// Whole tensors `got` against `expected` (same names and shapes), element-wise with
/// the tolerance of the module docs; `sqrt` compares square roots (second moments).
pub fn compare_stores(
    what: &str,
    got: &ParamStore,
    expected: &ParamStore,
    sqrt: bool,
) -> Result<Agreement> {
    if got.names() != expected.names() {
        return Err(Error::State(format!("{what}: parameter names differ")));
    }
    let mut agreement = Agreement::default();
    for ((name, x), y) in got.iter().zip(expected.tensors()) {
        if x.dims() != y.dims() {
            return Err(Error::State(format!(
                "{what}: {name} has shape {:?}, expected {:?}",
                x.dims(),
                y.dims()
            )));
        }
        let (a, b) = (values(x, sqrt), values(y, sqrt));
        let dims = y.dims().to_vec();
        let at = |i: usize| unravel(i, &dims, &vec![0; dims.len()]);
        let atol = RTOL * rms(&b);
        let name = format!("{what}: {name}");
        agreement.merge(compare_values(&name, &a, &b, atol, sqrt, at)?);
    }
    Ok(agreement)
}

/// `|x − y| ≤ RTOL·|y| + atol` for every element; the error names the first element
/// that is off (canonical coordinates from `at`) and how many are.
fn compare_values(
    name: &str,
    x: &[f64],
    y: &[f64],
    atol: f64,
    sqrt: bool,
    at: impl Fn(usize) -> Vec<usize>,
) -> Result<Agreement> {
    let allowed = |b: f64| RTOL * b.abs() + atol;
    let mut agreement = Agreement::default();
    for (i, (a, b)) in x.iter().zip(y).enumerate() {
        let Some(ratio) = within(*a, *b, allowed(*b)) else {
            let off = x
                .iter()
                .zip(y)
                .filter(|(a, b)| within(**a, **b, allowed(**b)).is_none())
                .count();
            let quantity = if sqrt { "√v" } else { "value" };
            return Err(Error::State(format!(
                "{name}{:?}: {quantity} {a:.9e}, one device has {b:.9e} (|Δ| {:.2e} > \
                 {:.2e}); {off} of {} elements are off",
                at(i),
                (a - b).abs(),
                allowed(*b),
                x.len()
            )));
        };
        if ratio > agreement.ratio {
            agreement = Agreement {
                ratio,
                at: format!("{name}{:?}", at(i)),
            };
        }
    }
    Ok(agreement)
}

/// `|x − y| / allowed` when `|x − y| ≤ allowed` (0 when equal), `None` when not or when
/// either is NaN.
fn within(x: f64, y: f64, allowed: f64) -> Option<f64> {
    let difference = (x - y).abs();
    if difference == 0.0 {
        Some(0.0)
    } else if difference <= allowed {
        Some(difference / allowed)
    } else {
        None
    }
}

/// The elements of `t` as f64, or their square roots.
fn values(t: &Tensor, sqrt: bool) -> Vec<f64> {
    let mut v = t.to_f64_vec();
    if sqrt {
        v.iter_mut().for_each(|x| *x = x.max(0.0).sqrt());
    }
    v
}

/// Root mean square (0 for no elements).
fn rms(values: &[f64]) -> f64 {
    (values.iter().map(|x| x * x).sum::<f64>() / values.len().max(1) as f64).sqrt()
}

/// The canonical coordinates of element `i` of the tensor a rank stores for `piece`.
fn coordinates(piece: &Piece, i: usize) -> Vec<usize> {
    piece
        .boxes()
        .into_iter()
        .rev()
        .find(|(offset, _)| *offset <= i)
        .map(|(offset, region)| unravel(i - offset, region.dims(), region.starts()))
        .unwrap_or_default()
}

/// Row-major element `i` of a box of `dims` starting at `starts`, as coordinates.
fn unravel(mut i: usize, dims: &[usize], starts: &[usize]) -> Vec<usize> {
    let mut index = vec![0; dims.len()];
    for d in (0..dims.len()).rev() {
        index[d] = starts[d] + i % dims[d].max(1);
        i /= dims[d].max(1);
    }
    index
}
