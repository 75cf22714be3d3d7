//! The conformance suite passes for the real backends and catches deliberately wrong ones.
use luoshu_backend::conformance::{run_conformance_with, Implementation, OpKind, Options, Report};
use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::ops::{
    AdamW, AttentionGrads, AttentionInputs, AttentionOpts, AttentionOutputGrads, BinaryOp,
    CompareOp, CompositeOp, ElementwiseProgram, LayerNormGrads, NormStats, RandomDist, ReduceOp,
    UnaryOp,
};
use luoshu_backend::reference::ReferenceBackend;
use luoshu_backend::{Backend, Error, Ops, Result, Tensor};

fn quick() -> Options {
    Options {
        quick: true,
        ..Options::default()
    }
}

fn only(op: &str) -> Options {
    Options {
        only: Some(op.to_string()),
        ..quick()
    }
}

/// Every primitive and composite appears once.
fn assert_complete(report: &Report) {
    let mut expected: Vec<&str> = vec![
        "copy",
        "fill",
        "cast",
        "where",
        "argmax",
        "matmul",
        "index_select",
        "index_add",
        "gather",
        "scatter_add",
        "concat",
        "arange",
        "random",
    ];
    expected.extend(UnaryOp::ALL.iter().map(|o| o.name()));
    expected.extend(BinaryOp::ALL.iter().map(|o| o.name()));
    expected.extend(CompareOp::ALL.iter().map(|o| o.name()));
    expected.extend(ReduceOp::ALL.iter().map(|o| o.name()));
    expected.extend(CompositeOp::ALL.iter().map(|o| o.name()));
    let mut got: Vec<&str> = report.ops.iter().map(|o| o.name.as_str()).collect();
    expected.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, expected);
}

#[test]
fn reference_passes_against_itself() {
    let report = run_conformance_with(&ReferenceBackend, &quick());
    assert_complete(&report);
    assert!(report.passed(), "{report}");
    let softmax = report.op("softmax").unwrap();
    assert_eq!(softmax.implementation, Implementation::Fallback);
    assert_eq!(softmax.kind, OpKind::Composite);
}

#[test]
fn cpu_passes() {
    let report = run_conformance_with(&CpuBackend::new(), &quick());
    assert_complete(&report);
    assert!(report.passed(), "{report}");
    let exp = report.op("exp").unwrap();
    assert_eq!(exp.implementation, Implementation::Required);
    assert!(exp.cases > 20 && exp.dtypes.len() >= 3, "{exp:?}");
    for op in CompositeOp::ALL {
        assert_eq!(
            report.op(op.name()).unwrap().implementation,
            Implementation::Native
        );
    }
}

/// The full attention cases (packed rows whose documents cross 128-wide tiles included).
#[test]
fn cpu_attention_passes_on_large_and_packed_rows() {
    for op in ["attention", "attention_backward"] {
        let options = Options {
            quick: false,
            ..only(op)
        };
        let report = run_conformance_with(&CpuBackend::new(), &options);
        assert!(report.passed(), "{report}");
        assert!(report.op(op).unwrap().cases >= 40, "{report}");
    }
}

/// The CPU backend with five planted bugs: `exp` off by 1e-3 relative, a softmax that does
/// not subtract the row maximum (overflows on large logits), a `tanh` that overwrites its
/// input after computing a correct output, a `gather` that always errors, and an attention
/// that ignores document boundaries in packed rows.
struct WrongBackend {
    cpu: CpuBackend,
}

impl Backend for WrongBackend {
    fn name(&self) -> &'static str {
        "wrong"
    }
    fn as_dyn(&self) -> &dyn Backend {
        self
    }
    fn native_composites(&self) -> &'static [CompositeOp] {
        self.cpu.native_composites()
    }
    fn copy(&self, src: &Tensor, dst: &Tensor) -> Result<()> {
        self.cpu.copy(src, dst)
    }
    fn fill(&self, value: f64, out: &Tensor) -> Result<()> {
        self.cpu.fill(value, out)
    }
    fn cast(&self, x: &Tensor, out: &Tensor) -> Result<()> {
        self.cpu.cast(x, out)
    }
    fn unary(&self, op: UnaryOp, x: &Tensor, out: &Tensor) -> Result<()> {
        self.cpu.unary(op, x, out)?;
        match op {
            UnaryOp::Exp => {
                let factor = Ops::new(&self.cpu).full(1.001, out.dtype(), &[])?;
                self.cpu
                    .binary(BinaryOp::Mul, out, &factor.broadcast_to(out.dims())?, out)
            }
            UnaryOp::Tanh if x.is_contiguous() && !x.same_region(out) => self.cpu.fill(0.25, x),
            _ => Ok(()),
        }
    }
    fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
        self.cpu.binary(op, a, b, out)
    }
    fn compare(&self, op: CompareOp, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
        self.cpu.compare(op, a, b, out)
    }
    fn select(&self, cond: &Tensor, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
        self.cpu.select(cond, a, b, out)
    }
    fn reduce(&self, op: ReduceOp, x: &Tensor, axes: &[usize], out: &Tensor) -> Result<()> {
        self.cpu.reduce(op, x, axes, out)
    }
    fn argmax(&self, x: &Tensor, axis: usize, out: &Tensor) -> Result<()> {
        self.cpu.argmax(x, axis, out)
    }
    fn matmul(&self, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
        self.cpu.matmul(a, b, out)
    }
    fn index_select(&self, x: &Tensor, dim: usize, indices: &Tensor, out: &Tensor) -> Result<()> {
        self.cpu.index_select(x, dim, indices, out)
    }
    fn index_add(&self, dst: &Tensor, dim: usize, indices: &Tensor, src: &Tensor) -> Result<()> {
        self.cpu.index_add(dst, dim, indices, src)
    }
    fn gather(&self, _x: &Tensor, _dim: usize, _index: &Tensor, _out: &Tensor) -> Result<()> {
        Err(Error::Invalid {
            op: "gather",
            detail: "this backend has no gather".to_string(),
        })
    }
    fn scatter_add(&self, dst: &Tensor, dim: usize, index: &Tensor, src: &Tensor) -> Result<()> {
        self.cpu.scatter_add(dst, dim, index, src)
    }
    fn concat(&self, inputs: &[&Tensor], dim: usize, out: &Tensor) -> Result<()> {
        self.cpu.concat(inputs, dim, out)
    }
    fn arange(&self, start: f64, step: f64, out: &Tensor) -> Result<()> {
        self.cpu.arange(start, step, out)
    }
    fn random(&self, dist: RandomDist, seed: u64, stream: u64, out: &Tensor) -> Result<()> {
        self.cpu.random(dist, seed, stream, out)
    }

    /// `exp(x) / sum(exp(x))` without subtracting the maximum.
    fn softmax(&self, x: &Tensor, out: &Tensor) -> Result<()> {
        let ops = Ops::new(&self.cpu);
        let e = ops.unary(UnaryOp::Exp, x)?;
        let sum = ops.sum(&e, &[x.rank() - 1], true)?;
        ops.binary_into(BinaryOp::Div, &e, &sum, out)
    }
    fn log_softmax(&self, x: &Tensor, out: &Tensor) -> Result<()> {
        self.cpu.log_softmax(x, out)
    }
    fn cross_entropy(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        ignore_index: i64,
        losses: &Tensor,
        lse: &Tensor,
    ) -> Result<()> {
        self.cpu
            .cross_entropy(logits, targets, ignore_index, losses, lse)
    }
    fn cross_entropy_backward(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        lse: &Tensor,
        grad_losses: &Tensor,
        ignore_index: i64,
        grad_logits: &Tensor,
    ) -> Result<()> {
        self.cpu.cross_entropy_backward(
            logits,
            targets,
            lse,
            grad_losses,
            ignore_index,
            grad_logits,
        )
    }
    fn rms_norm(
        &self,
        x: &Tensor,
        w: &Tensor,
        eps: f32,
        out: &Tensor,
        rstd: &Tensor,
    ) -> Result<()> {
        self.cpu.rms_norm(x, w, eps, out, rstd)
    }
    fn rms_norm_backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        rstd: &Tensor,
        g: &Tensor,
        gx: &Tensor,
        gw: &Tensor,
    ) -> Result<()> {
        self.cpu.rms_norm_backward(x, w, rstd, g, gx, gw)
    }
    fn layer_norm(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        eps: f32,
        out: &Tensor,
        stats: NormStats<'_>,
    ) -> Result<()> {
        self.cpu.layer_norm(x, w, b, eps, out, stats)
    }
    fn layer_norm_backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        stats: NormStats<'_>,
        g: &Tensor,
        grads: LayerNormGrads<'_>,
    ) -> Result<()> {
        self.cpu.layer_norm_backward(x, w, stats, g, grads)
    }
    fn rope(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        inverse: bool,
        out: &Tensor,
    ) -> Result<()> {
        self.cpu.rope(x, cos, sin, inverse, out)
    }
    fn swiglu(&self, gate: &Tensor, up: &Tensor, out: &Tensor) -> Result<()> {
        self.cpu.swiglu(gate, up, out)
    }
    fn swiglu_backward(
        &self,
        gate: &Tensor,
        up: &Tensor,
        g: &Tensor,
        gg: &Tensor,
        gu: &Tensor,
    ) -> Result<()> {
        self.cpu.swiglu_backward(gate, up, g, gg, gu)
    }
    fn attention(
        &self,
        inputs: AttentionInputs<'_>,
        opts: AttentionOpts,
        out: &Tensor,
        lse: &Tensor,
    ) -> Result<()> {
        let ignoring_documents = AttentionInputs {
            segments: None,
            ..inputs
        };
        self.cpu.attention(ignoring_documents, opts, out, lse)
    }
    fn attention_backward(
        &self,
        inputs: AttentionInputs<'_>,
        opts: AttentionOpts,
        output_grads: AttentionOutputGrads<'_>,
        grads: AttentionGrads<'_>,
    ) -> Result<()> {
        self.cpu
            .attention_backward(inputs, opts, output_grads, grads)
    }
    fn adamw(
        &self,
        param: &Tensor,
        grad: &Tensor,
        m: &Tensor,
        v: &Tensor,
        hp: AdamW,
    ) -> Result<()> {
        self.cpu.adamw(param, grad, m, v, hp)
    }
    fn sum_squares(&self, tensors: &[&Tensor]) -> Result<f64> {
        self.cpu.sum_squares(tensors)
    }
    fn fused_elementwise(
        &self,
        program: &ElementwiseProgram,
        inputs: &[&Tensor],
        out: &Tensor,
    ) -> Result<()> {
        self.cpu.fused_elementwise(program, inputs, out)
    }
}

#[test]
fn planted_bugs_fail_exactly_their_ops() {
    let report = run_conformance_with(
        &WrongBackend {
            cpu: CpuBackend::new(),
        },
        &quick(),
    );
    assert_complete(&report);
    let mut failing = report.failing();
    failing.sort_unstable();
    assert_eq!(
        failing,
        ["attention", "exp", "gather", "softmax", "tanh"],
        "{report}"
    );
    let messages = |op: &str| report.op(op).unwrap().failures.join("\n");
    let attention = &report.op("attention").unwrap().failures;
    assert!(
        attention.iter().all(|m| m.contains("documents")),
        "only packed rows of several documents fail: {attention:?}"
    );
    assert!(
        messages("tanh").contains("input #0 was modified"),
        "{}",
        messages("tanh")
    );
    assert!(
        messages("gather").contains("this backend has no gather"),
        "{}",
        messages("gather")
    );
    assert!(
        messages("softmax").contains("reference has"),
        "{}",
        messages("softmax")
    );
    let exp = report.op("exp").unwrap();
    let worst = exp.worst.as_ref().unwrap();
    assert!(worst.rel > 5e-4 && worst.rel < 2e-3, "{worst:?}");
}

/// A backend that is the reference except that matmul errors and argmax panics on f32.
struct BrokenBackend;

impl Backend for BrokenBackend {
    fn name(&self) -> &'static str {
        "broken"
    }
    fn as_dyn(&self) -> &dyn Backend {
        self
    }
    fn copy(&self, src: &Tensor, dst: &Tensor) -> Result<()> {
        ReferenceBackend.copy(src, dst)
    }
    fn fill(&self, value: f64, out: &Tensor) -> Result<()> {
        ReferenceBackend.fill(value, out)
    }
    fn cast(&self, x: &Tensor, out: &Tensor) -> Result<()> {
        ReferenceBackend.cast(x, out)
    }
    fn unary(&self, op: UnaryOp, x: &Tensor, out: &Tensor) -> Result<()> {
        ReferenceBackend.unary(op, x, out)
    }
    fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
        ReferenceBackend.binary(op, a, b, out)
    }
    fn compare(&self, op: CompareOp, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
        ReferenceBackend.compare(op, a, b, out)
    }
    fn select(&self, cond: &Tensor, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
        ReferenceBackend.select(cond, a, b, out)
    }
    fn reduce(&self, op: ReduceOp, x: &Tensor, axes: &[usize], out: &Tensor) -> Result<()> {
        ReferenceBackend.reduce(op, x, axes, out)
    }
    fn argmax(&self, x: &Tensor, axis: usize, out: &Tensor) -> Result<()> {
        if x.dtype() == luoshu_backend::DType::F32 {
            panic!("argmax exploded");
        }
        ReferenceBackend.argmax(x, axis, out)
    }
    fn matmul(&self, _a: &Tensor, _b: &Tensor, _out: &Tensor) -> Result<()> {
        Err(Error::UnsupportedDType {
            op: "matmul",
            dtype: luoshu_backend::DType::F32,
            supported: "none",
        })
    }
    fn index_select(&self, x: &Tensor, dim: usize, indices: &Tensor, out: &Tensor) -> Result<()> {
        ReferenceBackend.index_select(x, dim, indices, out)
    }
    fn index_add(&self, dst: &Tensor, dim: usize, indices: &Tensor, src: &Tensor) -> Result<()> {
        ReferenceBackend.index_add(dst, dim, indices, src)
    }
    fn gather(&self, x: &Tensor, dim: usize, index: &Tensor, out: &Tensor) -> Result<()> {
        ReferenceBackend.gather(x, dim, index, out)
    }
    fn scatter_add(&self, dst: &Tensor, dim: usize, index: &Tensor, src: &Tensor) -> Result<()> {
        ReferenceBackend.scatter_add(dst, dim, index, src)
    }
    fn concat(&self, inputs: &[&Tensor], dim: usize, out: &Tensor) -> Result<()> {
        ReferenceBackend.concat(inputs, dim, out)
    }
    fn arange(&self, start: f64, step: f64, out: &Tensor) -> Result<()> {
        ReferenceBackend.arange(start, step, out)
    }
    fn random(&self, dist: RandomDist, seed: u64, stream: u64, out: &Tensor) -> Result<()> {
        ReferenceBackend.random(dist, seed, stream, out)
    }
}

#[test]
fn an_op_that_errors_or_panics_fails() {
    let report = run_conformance_with(&BrokenBackend, &only("matmul"));
    assert_eq!(report.ops.len(), 1);
    let matmul = &report.ops[0];
    assert!(!matmul.passed(), "{report}");
    assert_eq!(matmul.failed_cases, matmul.cases, "{report}");
    let report = run_conformance_with(&BrokenBackend, &only("argmax"));
    let argmax = &report.ops[0];
    assert!(
        !argmax.passed() && argmax.failed_cases < argmax.cases,
        "{report}"
    );
    let on_f32 = |m: &String| m.starts_with("f32") && m.contains("argmax exploded");
    assert!(argmax.failures.iter().all(on_f32), "{report}");
    // Composites fall back to decompositions built from the (working) primitives.
    let report = run_conformance_with(&BrokenBackend, &only("softmax"));
    assert_eq!(report.ops[0].implementation, Implementation::Fallback);
    assert!(report.passed(), "{report}");
}

#[test]
fn the_table_lists_every_op_and_a_summary() {
    let report = run_conformance_with(&BrokenBackend, &only("matmul"));
    let table = report.to_string();
    assert!(
        table.contains("matmul") && table.contains("FAIL"),
        "{table}"
    );
    assert!(table.contains("1 FAILED"), "{table}");
}
