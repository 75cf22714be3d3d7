//! What the suite found: one [`OpReport`] per op, gathered in a [`Report`].
use luoshu_tensor::DType;
use std::fmt;

/// Whether an op is a required primitive or a composite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// A required primitive of [`crate::Backend`].
    Primitive,
    /// A composite op with a default decomposition into primitives.
    Composite,
}

/// How the backend provides an op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implementation {
    /// A required primitive, always the backend's own kernel.
    Required,
    /// A composite the backend fuses itself (listed in `native_composites`).
    Native,
    /// A composite run through the default decomposition into primitives.
    Fallback,
}

impl Implementation {
    /// Lower-case name as printed in the coverage table (`"native"`).
    pub fn name(self) -> &'static str {
        match self {
            Implementation::Required => "required",
            Implementation::Native => "native",
            Implementation::Fallback => "fallback",
        }
    }
}

/// The element that was furthest outside its tolerance, relative to that tolerance.
#[derive(Debug, Clone, PartialEq)]
pub struct WorstError {
    /// `|got - want|`.
    pub abs: f64,
    /// `|got - want| / |want|` (infinite when `want` is 0).
    pub rel: f64,
    /// The error divided by the allowed error (`> 1` means out of tolerance).
    pub ratio: f64,
    /// The case and flat element index where it happened.
    pub location: String,
}

/// Result of every case of one op.
#[derive(Debug, Clone, PartialEq)]
pub struct OpReport {
    /// The op's name: a primitive's own (`add`, `matmul`) or the [`crate::ops::CompositeOp`] name.
    pub name: String,
    /// Primitive or composite.
    pub kind: OpKind,
    /// Whether the backend's own kernel or the decomposition ran.
    pub implementation: Implementation,
    /// Dtypes of the cases that ran.
    pub dtypes: Vec<DType>,
    /// Cases that ran (cases skipped because the backend has no f64 are not counted).
    pub cases: usize,
    /// The element furthest outside its tolerance over all cases, if any element differed.
    pub worst: Option<WorstError>,
    /// One message per failed case (the first few; `failed_cases` counts them all).
    pub failures: Vec<String>,
    /// How many cases failed.
    pub failed_cases: usize,
}

/// Failure messages kept per op; the rest are only counted.
const KEPT_FAILURES: usize = 8;

impl OpReport {
    pub(crate) fn new(name: &str, kind: OpKind, implementation: Implementation) -> Self {
        OpReport {
            name: name.to_string(),
            kind,
            implementation,
            dtypes: Vec::new(),
            cases: 0,
            worst: None,
            failures: Vec::new(),
            failed_cases: 0,
        }
    }

    /// True when no case failed.
    pub fn passed(&self) -> bool {
        self.failed_cases == 0
    }

    pub(crate) fn fail(&mut self, message: String) {
        self.failed_cases += 1;
        if self.failures.len() < KEPT_FAILURES {
            self.failures.push(message);
        }
    }

    pub(crate) fn note_dtype(&mut self, dtype: DType) {
        if !self.dtypes.contains(&dtype) {
            self.dtypes.push(dtype);
            self.dtypes.sort();
        }
    }

    pub(crate) fn note_error(&mut self, candidate: WorstError) {
        if self
            .worst
            .as_ref()
            .is_none_or(|w| candidate.ratio > w.ratio)
        {
            self.worst = Some(candidate);
        }
    }

    fn dtype_list(&self) -> String {
        let names: Vec<&str> = self.dtypes.iter().map(|d| d.name()).collect();
        names.join(",")
    }
}

/// The outcome of a conformance run of one backend.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The backend's name ([`crate::Backend::name`]).
    pub backend: String,
    /// One report per op checked, in the order they ran.
    pub ops: Vec<OpReport>,
}

impl Report {
    /// True when every op passed.
    pub fn passed(&self) -> bool {
        self.ops.iter().all(OpReport::passed)
    }

    /// The report of the op called `name`, if it was checked.
    pub fn op(&self, name: &str) -> Option<&OpReport> {
        self.ops.iter().find(|o| o.name == name)
    }

    /// Names of the ops that failed.
    pub fn failing(&self) -> Vec<&str> {
        self.ops
            .iter()
            .filter(|o| !o.passed())
            .map(|o| o.name.as_str())
            .collect()
    }

    /// One line: how many ops and cases ran, how many passed and failed, and how many
    /// composites the backend fuses itself.
    pub fn summary(&self) -> String {
        let failed = self.failing().len();
        let cases: usize = self.ops.iter().map(|o| o.cases).sum();
        let native = self
            .ops
            .iter()
            .filter(|o| o.implementation == Implementation::Native)
            .count();
        let composites = self
            .ops
            .iter()
            .filter(|o| o.kind == OpKind::Composite)
            .count();
        format!(
            "backend {}: {} ops, {} cases, {} passed, {} FAILED; composites native {}/{}",
            self.backend,
            self.ops.len(),
            cases,
            self.ops.len() - failed,
            failed,
            native,
            composites
        )
    }
}

/// The coverage table followed by the failure messages and the summary line.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<24} {:<9} {:<8} {:<32} {:>6}  {:<6} worst error (abs, rel, where)",
            "op", "kind", "impl", "dtypes", "cases", "status"
        )?;
        for op in &self.ops {
            let kind = match op.kind {
                OpKind::Primitive => "primitive",
                OpKind::Composite => "composite",
            };
            let worst = op.worst.as_ref().map_or(String::from("-"), |w| {
                format!("{:.2e}, {:.2e} at {}", w.abs, w.rel, w.location)
            });
            writeln!(
                f,
                "{:<24} {:<9} {:<8} {:<32} {:>6}  {:<6} {}",
                op.name,
                kind,
                op.implementation.name(),
                op.dtype_list(),
                op.cases,
                if op.passed() { "pass" } else { "FAIL" },
                worst
            )?;
        }
        for op in self.ops.iter().filter(|o| !o.passed()) {
            writeln!(f, "\n{} failed {} case(s):", op.name, op.failed_cases)?;
            for message in &op.failures {
                writeln!(f, "  {message}")?;
            }
        }
        write!(f, "\n{}", self.summary())
    }
}
