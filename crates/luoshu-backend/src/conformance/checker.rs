//! Runs one case on the backend under test and on the oracle, and records the outcome.
use super::cases::{Gen, View};
use super::compare::{compare, tolerance, Class};
use super::report::{Implementation, OpKind, OpReport, WorstError};
use crate::ops::CompositeOp;
use crate::reference::ReferenceBackend;
use crate::{Backend, Error, Ops, Result};
use luoshu_tensor::{DType, Layout, Tensor};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The outputs a case compares (in-place ops return the tensors they updated).
pub type Outputs = Result<Vec<Tensor>>;

pub struct Checker<'a> {
    backend: &'a dyn Backend,
    /// The backend under test, validated.
    pub ops: Ops<'a>,
    /// The reference backend: the oracle.
    pub oracle: Ops<'static>,
    pub gen: Gen,
    /// Fewer shapes and layouts, for fast tests.
    pub quick: bool,
    filter: Option<String>,
    current: Option<OpReport>,
    pub reports: Vec<OpReport>,
}

/// The less precise of two dtypes, so an f32 output computed from bf16 inputs is judged
/// with bf16 tolerance.
fn coarser(a: DType, b: DType) -> DType {
    let rank = |d: DType| match d {
        DType::F64 => 0,
        DType::F32 => 1,
        DType::F16 => 2,
        DType::BF16 => 3,
        _ => 4,
    };
    if rank(a) >= rank(b) {
        a
    } else {
        b
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Every byte of the storage behind `t` (to prove an op left its inputs alone).
fn storage_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let n = t.storage().len_bytes();
    let all = Tensor::from_storage(t.storage().clone(), Layout::contiguous([n])?, DType::U8)?;
    Ok(all.to_vec::<u8>()?)
}

/// Run `run` on `ops`, turning a panic into an error message.
fn run_guarded(
    ops: &Ops<'_>,
    run: &dyn Fn(&Ops<'_>) -> Outputs,
) -> std::result::Result<Vec<Tensor>, (String, bool)> {
    match catch_unwind(AssertUnwindSafe(|| run(ops))) {
        Ok(Ok(outputs)) => Ok(outputs),
        Ok(Err(e)) => Err((e.to_string(), matches!(e, Error::UnsupportedDType { .. }))),
        Err(payload) => Err((format!("panicked: {}", panic_message(&*payload)), false)),
    }
}

/// What running a case on the backend under test left: the inputs' bytes from before the
/// run, and its outputs or its error (with whether it was an unsupported dtype).
struct BackendRun<'a> {
    before: &'a [Vec<u8>],
    got: std::result::Result<Vec<Tensor>, (String, bool)>,
}

impl<'a> Checker<'a> {
    pub fn new(backend: &'a dyn Backend, seed: u64, quick: bool, filter: Option<String>) -> Self {
        Checker {
            backend,
            ops: Ops::new(backend),
            oracle: Ops::new(&ReferenceBackend),
            gen: Gen::new(seed),
            quick,
            filter,
            current: None,
            reports: Vec::new(),
        }
    }

    /// Run the cases of one op; an error building its inputs fails the op.
    fn run_op(&mut self, report: OpReport, body: impl FnOnce(&mut Self) -> Result<()>) {
        if self.filter.as_ref().is_some_and(|f| *f != report.name) {
            return;
        }
        self.current = Some(report);
        if let Err(e) = body(self) {
            self.report()
                .fail(format!("could not build the inputs: {e}"));
        }
        if let Some(mut report) = self.current.take() {
            if report.cases == 0 && report.passed() {
                report.fail("no case ran".to_string());
            }
            self.reports.push(report);
        }
    }

    /// Check a required primitive.
    pub fn primitive(&mut self, name: &str, body: impl FnOnce(&mut Self) -> Result<()>) {
        let report = OpReport::new(name, OpKind::Primitive, Implementation::Required);
        self.run_op(report, body);
    }

    /// Check a composite op (fused by the backend or run by its decomposition).
    pub fn composite(&mut self, op: CompositeOp, body: impl FnOnce(&mut Self) -> Result<()>) {
        let implementation = if self.backend.native_composites().contains(&op) {
            Implementation::Native
        } else {
            Implementation::Fallback
        };
        let report = OpReport::new(op.name(), OpKind::Composite, implementation);
        self.run_op(report, body);
    }

    /// The (shape, layout) pairs to try: every layout of every shape, or in quick mode one
    /// layout per shape, rotating through them.
    pub fn layouts(&self, shapes: &[&[usize]]) -> Vec<(Vec<usize>, View)> {
        let mut out = Vec::new();
        for (i, dims) in shapes.iter().enumerate() {
            if self.quick {
                out.push((dims.to_vec(), View::ALL[i % View::ALL.len()]));
            } else {
                out.extend(View::ALL.iter().map(|&v| (dims.to_vec(), v)));
            }
        }
        out
    }

    fn report(&mut self) -> &mut OpReport {
        self.current.get_or_insert_with(|| {
            OpReport::new("(no op)", OpKind::Primitive, Implementation::Required)
        })
    }

    /// Record a case whose verdict was computed by the caller.
    pub fn verdict(&mut self, label: &str, dtype: DType, verdict: std::result::Result<(), String>) {
        let report = self.report();
        report.cases += 1;
        report.note_dtype(dtype);
        if let Err(message) = verdict {
            report.fail(format!("{label}: {message}"));
        }
    }

    /// Run `run` on the backend and on the oracle with the same `inputs`, check the inputs
    /// are byte-identical afterwards, and compare every output under `class`'s tolerance.
    /// An f64 case the backend rejects with `UnsupportedDType` is skipped (f64 is optional).
    pub fn case(
        &mut self,
        label: &str,
        dtype: DType,
        class: Class,
        inputs: &[&Tensor],
        run: impl Fn(&Ops<'_>) -> Outputs,
    ) {
        if let Some(verdict) = self.judge(label, dtype, class, inputs, &run) {
            self.verdict(label, dtype, verdict);
        }
    }

    /// The verdict of one case, or `None` when the case does not apply (f64 unsupported).
    fn judge(
        &mut self,
        label: &str,
        dtype: DType,
        class: Class,
        inputs: &[&Tensor],
        run: &dyn Fn(&Ops<'_>) -> Outputs,
    ) -> Option<std::result::Result<(), String>> {
        let before = inputs
            .iter()
            .map(|t| storage_bytes(t))
            .collect::<Result<Vec<_>>>();
        let got = run_guarded(&self.ops, run);
        if dtype == DType::F64 && matches!(got, Err((_, true))) {
            return None;
        }
        let verdict = before
            .map_err(|e| format!("cannot snapshot the inputs: {e}"))
            .and_then(|before| {
                let backend_run = BackendRun {
                    before: &before,
                    got,
                };
                self.compare_with_oracle(label, dtype, class, inputs, run, backend_run)
            });
        Some(verdict)
    }

    fn compare_with_oracle(
        &mut self,
        label: &str,
        dtype: DType,
        class: Class,
        inputs: &[&Tensor],
        run: &dyn Fn(&Ops<'_>) -> Outputs,
        BackendRun { before, got }: BackendRun<'_>,
    ) -> std::result::Result<(), String> {
        let got =
            got.map_err(|(message, _)| format!("{} failed: {message}", self.backend.name()))?;
        for (i, (t, bytes)) in inputs.iter().zip(before).enumerate() {
            if storage_bytes(t).ok().as_ref() != Some(bytes) {
                return Err(format!("input #{i} was modified by the op"));
            }
        }
        let want = run_guarded(&self.oracle, run)
            .map_err(|(message, _)| format!("the reference failed: {message}"))?;
        if got.len() != want.len() {
            return Err(format!(
                "{} outputs, the reference has {}",
                got.len(),
                want.len()
            ));
        }
        let mut failures = Vec::new();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            if g.dtype() != w.dtype() || g.dims() != w.dims() {
                failures.push(format!(
                    "output #{i} is {}{:?}, the reference's is {}{:?}",
                    g.dtype(),
                    g.dims(),
                    w.dtype(),
                    w.dims()
                ));
                continue;
            }
            let out_dtype = if w.dtype().is_float() {
                coarser(dtype, w.dtype())
            } else {
                w.dtype()
            };
            let tol = tolerance(class, out_dtype);
            let c = compare(&g.to_f64_vec(), &w.to_f64_vec(), tol);
            if let Some(e) = c.worst.filter(|e| e.ratio > 0.0) {
                self.report().note_error(WorstError {
                    abs: e.abs,
                    rel: e.rel,
                    ratio: e.ratio,
                    location: format!("{label} output #{i} [{}]", e.index),
                });
            }
            if let Some(e) = c.spurious_nonfinite {
                failures.push(format!(
                    "output #{i}[{}] is {} where the reference has {}",
                    e.index, e.got, e.want
                ));
            } else if !c.passed() {
                let worst = c.worst.map_or(String::new(), |e| {
                    format!(
                        "; worst [{}]: got {} want {} (abs {:.3e}, rel {:.3e})",
                        e.index, e.got, e.want, e.abs, e.rel
                    )
                });
                failures.push(format!(
                    "output #{i}: {} of {} elements outside atol {:.1e} rtol {:.1e}{worst}",
                    c.exceeded, c.elements, tol.atol, tol.rtol
                ));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }
}
