//! Plain-data descriptions of the operator interface's ops and their parameters.

use luoshu_tensor::{DType, Tensor};

/// Elementwise functions of one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `-x`.
    Neg,
    /// `|x|`.
    Abs,
    /// `e^x`.
    Exp,
    /// Natural logarithm (NaN below 0, `-inf` at 0).
    Log,
    /// Square root.
    Sqrt,
    /// `1 / sqrt(x)`.
    Rsqrt,
    /// `1 / x`.
    Recip,
    /// Sine, `x` in radians.
    Sin,
    /// Cosine, `x` in radians.
    Cos,
    /// Hyperbolic tangent.
    Tanh,
    /// Logistic function `1 / (1 + e^-x)`.
    Sigmoid,
    /// `max(x, 0)`.
    Relu,
    /// `x * sigmoid(x)` (SiLU, also called swish).
    Silu,
    /// Exact GELU, `x * Φ(x)` with the error function (not the tanh approximation).
    Gelu,
}

impl UnaryOp {
    /// Every unary op, in declaration order.
    pub const ALL: [UnaryOp; 14] = [
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Rsqrt,
        UnaryOp::Recip,
        UnaryOp::Sin,
        UnaryOp::Cos,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Relu,
        UnaryOp::Silu,
        UnaryOp::Gelu,
    ];

    /// Lower-case name used in messages and reports (`"rsqrt"`).
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Abs => "abs",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Rsqrt => "rsqrt",
            UnaryOp::Recip => "recip",
            UnaryOp::Sin => "sin",
            UnaryOp::Cos => "cos",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Relu => "relu",
            UnaryOp::Silu => "silu",
            UnaryOp::Gelu => "gelu",
        }
    }

    /// Ops that are also defined on integer dtypes.
    pub fn allows_integers(self) -> bool {
        matches!(self, UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Relu)
    }
}

/// Elementwise functions of two tensors of the same shape and dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b` (floats only).
    Div,
    /// The larger of `a` and `b`.
    Maximum,
    /// The smaller of `a` and `b`.
    Minimum,
    /// `a` raised to the power `b` (floats only).
    Pow,
}

impl BinaryOp {
    /// Every binary op, in declaration order.
    pub const ALL: [BinaryOp; 7] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Maximum,
        BinaryOp::Minimum,
        BinaryOp::Pow,
    ];

    /// Lower-case name used in messages and reports (`"maximum"`).
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Minimum => "minimum",
            BinaryOp::Pow => "pow",
        }
    }

    /// Ops that are also defined on integer dtypes (with wrapping arithmetic).
    pub fn allows_integers(self) -> bool {
        !matches!(self, BinaryOp::Div | BinaryOp::Pow)
    }
}

/// Elementwise comparisons producing `Bool`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// `a == b`.
    Eq,
    /// `a < b`.
    Lt,
    /// `a <= b`.
    Le,
    /// `a > b`.
    Gt,
    /// `a >= b`.
    Ge,
}

impl CompareOp {
    /// Every comparison, in declaration order.
    pub const ALL: [CompareOp; 5] = [
        CompareOp::Eq,
        CompareOp::Lt,
        CompareOp::Le,
        CompareOp::Gt,
        CompareOp::Ge,
    ];

    /// Lower-case name used in messages and reports (`"le"`).
    pub fn name(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
        }
    }
}

/// Reductions over a set of axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Sum of the elements.
    Sum,
    /// Largest element.
    Max,
    /// Smallest element.
    Min,
    /// Sum divided by the number of reduced elements.
    Mean,
}

impl ReduceOp {
    /// Every reduction, in declaration order.
    pub const ALL: [ReduceOp; 4] = [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::Mean];

    /// Lower-case name used in messages and reports (`"mean"`).
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
            ReduceOp::Mean => "mean",
        }
    }
}

/// Distributions for counter-based random tensors (see `luoshu_tensor::rng`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RandomDist {
    /// Uniform on `[low, high)`.
    Uniform {
        /// Lower bound, included.
        low: f32,
        /// Upper bound, excluded.
        high: f32,
    },
    /// Gaussian.
    Normal {
        /// Mean of the distribution.
        mean: f32,
        /// Standard deviation.
        std: f32,
    },
    /// 1 with probability `p`, else 0 (a dropout keep-mask).
    Bernoulli {
        /// Probability of drawing 1, in `[0, 1]`.
        p: f32,
    },
}

/// Hyper-parameters of one AdamW step (decoupled weight decay, bias-corrected moments).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamW {
    /// Learning rate.
    pub lr: f32,
    /// Decay rate of the first-moment (mean) estimate, e.g. 0.9.
    pub beta1: f32,
    /// Decay rate of the second-moment (uncentered variance) estimate, e.g. 0.999.
    pub beta2: f32,
    /// Added to `sqrt(v̂)` in the denominator to avoid division by zero.
    pub eps: f32,
    /// Decoupled weight decay: `param -= lr * weight_decay * param` alongside the Adam step.
    pub weight_decay: f32,
    /// 1-based step number, used for bias correction.
    pub step: u64,
}

/// The per-row statistics a layer norm keeps for its backward: f32 tensors of `x`'s shape
/// without its last dimension.
#[derive(Debug, Clone, Copy)]
pub struct NormStats<'a> {
    /// Per-row mean.
    pub mean: &'a Tensor,
    /// Reciprocal standard deviation.
    pub rstd: &'a Tensor,
}

/// The gradient outputs of a layer norm: one for each of `x`, `weight` and `bias`.
#[derive(Debug, Clone, Copy)]
pub struct LayerNormGrads<'a> {
    /// Gradient of `x`, `x`'s shape and dtype.
    pub x: &'a Tensor,
    /// Gradient of `weight`, `weight`'s shape and dtype.
    pub weight: &'a Tensor,
    /// Gradient of `bias`, `bias`'s shape and dtype.
    pub bias: &'a Tensor,
}

/// Options of causal/non-causal scaled dot-product attention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionOpts {
    /// Multiplies `q·k` before the softmax; usually `1/sqrt(head_dim)`.
    pub scale: f32,
    /// Query `i` sees keys `j <= i + (seq_k - seq_q)` (aligned at the end, as for a KV cache).
    pub causal: bool,
}

/// The tensors one attention reads, forward or backward (see [`crate::Backend::attention`]
/// for their shapes): queries, keys, values and the optional packed-row segment ids.
#[derive(Debug, Clone, Copy)]
pub struct AttentionInputs<'a> {
    /// Queries, `[b, hq, sq, d]`.
    pub q: &'a Tensor,
    /// Keys, `[b, hkv, sk, d]`.
    pub k: &'a Tensor,
    /// Values, `[b, hkv, sk, dv]`.
    pub v: &'a Tensor,
    /// `i64` document ids of packed rows, `[b, sk]` or `[b, sk + sq]`; `None` when every
    /// row is one sequence.
    pub segments: Option<&'a Tensor>,
}

impl<'a> AttentionInputs<'a> {
    /// `q`, `k` and `v` without segments.
    pub fn new(q: &'a Tensor, k: &'a Tensor, v: &'a Tensor) -> Self {
        AttentionInputs {
            q,
            k,
            v,
            segments: None,
        }
    }

    /// The same inputs with `segments` as their document ids.
    pub fn with_segments(self, segments: Option<&'a Tensor>) -> Self {
        AttentionInputs { segments, ..self }
    }
}

/// What an attention backward reads besides the inputs: the forward's outputs and the
/// gradients of the loss with respect to them.
#[derive(Debug, Clone, Copy)]
pub struct AttentionOutputGrads<'a> {
    /// The forward's output, `[b, hq, sq, dv]`.
    pub out: &'a Tensor,
    /// The forward's per-row log-sum-exp, `[b, hq, sq]` (f32).
    pub lse: &'a Tensor,
    /// Gradient of `out`, `out`'s shape and dtype.
    pub grad_out: &'a Tensor,
    /// Gradient of `lse` (f32, `lse`'s shape), when the loss depends on it (the log-sum-exp
    /// merge of partial attentions); `None` counts as zero.
    pub grad_lse: Option<&'a Tensor>,
}

impl<'a> AttentionOutputGrads<'a> {
    /// The forward's `out` and `lse` with the gradient of `out` only.
    pub fn new(out: &'a Tensor, lse: &'a Tensor, grad_out: &'a Tensor) -> Self {
        AttentionOutputGrads {
            out,
            lse,
            grad_out,
            grad_lse: None,
        }
    }

    /// The same with `grad_lse` as the gradient of `lse`.
    pub fn with_grad_lse(self, grad_lse: Option<&'a Tensor>) -> Self {
        AttentionOutputGrads { grad_lse, ..self }
    }
}

/// The gradient outputs of an attention: one for each of `q`, `k` and `v`, each with its
/// input's shape and dtype.
#[derive(Debug, Clone, Copy)]
pub struct AttentionGrads<'a> {
    /// Gradient of `q`.
    pub q: &'a Tensor,
    /// Gradient of `k`.
    pub k: &'a Tensor,
    /// Gradient of `v`.
    pub v: &'a Tensor,
}

/// The composite ops: every backend gets a decomposition into primitives for free and may
/// override any of them with a fused kernel (reported by `Backend::native_composites`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CompositeOp {
    /// See [`crate::Backend::softmax`].
    Softmax,
    /// See [`crate::Backend::log_softmax`].
    LogSoftmax,
    /// See [`crate::Backend::cross_entropy`].
    CrossEntropy,
    /// See [`crate::Backend::cross_entropy_backward`].
    CrossEntropyBackward,
    /// See [`crate::Backend::rms_norm`].
    RmsNorm,
    /// See [`crate::Backend::rms_norm_backward`].
    RmsNormBackward,
    /// See [`crate::Backend::layer_norm`].
    LayerNorm,
    /// See [`crate::Backend::layer_norm_backward`].
    LayerNormBackward,
    /// See [`crate::Backend::rope`].
    Rope,
    /// See [`crate::Backend::swiglu`].
    Swiglu,
    /// See [`crate::Backend::swiglu_backward`].
    SwigluBackward,
    /// See [`crate::Backend::attention`].
    Attention,
    /// See [`crate::Backend::attention_backward`].
    AttentionBackward,
    /// See [`crate::Backend::adamw`].
    AdamW,
    /// See [`crate::Backend::sum_squares`].
    SumSquares,
    /// See [`crate::Backend::fused_elementwise`].
    FusedElementwise,
}

impl CompositeOp {
    /// Every composite op, in declaration order.
    pub const ALL: [CompositeOp; 16] = [
        CompositeOp::Softmax,
        CompositeOp::LogSoftmax,
        CompositeOp::CrossEntropy,
        CompositeOp::CrossEntropyBackward,
        CompositeOp::RmsNorm,
        CompositeOp::RmsNormBackward,
        CompositeOp::LayerNorm,
        CompositeOp::LayerNormBackward,
        CompositeOp::Rope,
        CompositeOp::Swiglu,
        CompositeOp::SwigluBackward,
        CompositeOp::Attention,
        CompositeOp::AttentionBackward,
        CompositeOp::AdamW,
        CompositeOp::SumSquares,
        CompositeOp::FusedElementwise,
    ];

    /// Snake-case name, the same as the [`crate::Backend`] method's (`"rms_norm_backward"`).
    pub fn name(self) -> &'static str {
        match self {
            CompositeOp::Softmax => "softmax",
            CompositeOp::LogSoftmax => "log_softmax",
            CompositeOp::CrossEntropy => "cross_entropy",
            CompositeOp::CrossEntropyBackward => "cross_entropy_backward",
            CompositeOp::RmsNorm => "rms_norm",
            CompositeOp::RmsNormBackward => "rms_norm_backward",
            CompositeOp::LayerNorm => "layer_norm",
            CompositeOp::LayerNormBackward => "layer_norm_backward",
            CompositeOp::Rope => "rope",
            CompositeOp::Swiglu => "swiglu",
            CompositeOp::SwigluBackward => "swiglu_backward",
            CompositeOp::Attention => "attention",
            CompositeOp::AttentionBackward => "attention_backward",
            CompositeOp::AdamW => "adamw",
            CompositeOp::SumSquares => "sum_squares",
            CompositeOp::FusedElementwise => "fused_elementwise",
        }
    }
}

/// One instruction of an [`ElementwiseProgram`]. Instruction `i` defines register `i`;
/// operands name earlier registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FusedInstr {
    /// Input `i`, broadcast to the output's shape.
    Load(usize),
    /// A scalar of `dtype`; the value is kept as the bits of an `f64` so programs compare
    /// and hash exactly.
    Constant {
        /// The `f64` bits of the value (see [`FusedInstr::constant`]).
        bits: u64,
        /// The dtype the value is converted to.
        dtype: DType,
    },
    /// `op` applied to a register.
    Unary(UnaryOp, usize),
    /// `op` applied to two registers, `(a, b)`.
    Binary(BinaryOp, usize, usize),
    /// Produces `Bool`.
    Compare(CompareOp, usize, usize),
    /// `cond ? a : b` with operands `(cond, a, b)`.
    Select(usize, usize, usize),
    /// A register converted to `dtype` (like [`crate::Backend::cast`]).
    Cast(usize, DType),
}

impl FusedInstr {
    /// The instruction for the scalar `value` of `dtype`.
    pub fn constant(value: f64, dtype: DType) -> Self {
        FusedInstr::Constant {
            bits: value.to_bits(),
            dtype,
        }
    }
}

/// A small elementwise expression evaluated in one pass over memory: a register machine
/// over the output's elements (the body of a graph `Fused` node).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ElementwiseProgram {
    /// Dtype of each input tensor.
    pub inputs: Vec<DType>,
    /// The instructions, in evaluation order.
    pub instrs: Vec<FusedInstr>,
    /// The register holding the result.
    pub output: usize,
}
