//! Plain-data descriptions of the operator interface's ops and their parameters.

use luoshu_tensor::{DType, Tensor};

/// Elementwise functions of one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Neg,
    Abs,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Recip,
    Sin,
    Cos,
    Tanh,
    Sigmoid,
    Relu,
    Silu,
    /// Exact GELU, `x * Φ(x)` with the error function (not the tanh approximation).
    Gelu,
}

impl UnaryOp {
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
    Add,
    Sub,
    Mul,
    Div,
    Maximum,
    Minimum,
    Pow,
}

impl BinaryOp {
    pub const ALL: [BinaryOp; 7] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Maximum,
        BinaryOp::Minimum,
        BinaryOp::Pow,
    ];

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
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CompareOp {
    pub const ALL: [CompareOp; 5] = [
        CompareOp::Eq,
        CompareOp::Lt,
        CompareOp::Le,
        CompareOp::Gt,
        CompareOp::Ge,
    ];

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
    Sum,
    Max,
    Min,
    Mean,
}

impl ReduceOp {
    pub const ALL: [ReduceOp; 4] = [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::Mean];

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
    Uniform {
        low: f32,
        high: f32,
    },
    Normal {
        mean: f32,
        std: f32,
    },
    /// 1 with probability `p`, else 0 (a dropout keep-mask).
    Bernoulli {
        p: f32,
    },
}

/// Hyper-parameters of one AdamW step (decoupled weight decay, bias-corrected moments).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamW {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// 1-based step number, used for bias correction.
    pub step: u64,
}

/// The per-row statistics a layer norm keeps for its backward: f32 tensors of `x`'s shape
/// without its last dimension.
#[derive(Debug, Clone, Copy)]
pub struct NormStats<'a> {
    pub mean: &'a Tensor,
    /// Reciprocal standard deviation.
    pub rstd: &'a Tensor,
}

/// The gradient outputs of a layer norm: one for each of `x`, `weight` and `bias`.
#[derive(Debug, Clone, Copy)]
pub struct LayerNormGrads<'a> {
    pub x: &'a Tensor,
    pub weight: &'a Tensor,
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

/// The composite ops: every backend gets a decomposition into primitives for free and may
/// override any of them with a fused kernel (reported by `Backend::native_composites`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CompositeOp {
    Softmax,
    LogSoftmax,
    CrossEntropy,
    CrossEntropyBackward,
    RmsNorm,
    RmsNormBackward,
    LayerNorm,
    LayerNormBackward,
    Rope,
    Swiglu,
    SwigluBackward,
    Attention,
    AttentionBackward,
    AdamW,
    SumSquares,
    FusedElementwise,
}

impl CompositeOp {
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
        bits: u64,
        dtype: DType,
    },
    Unary(UnaryOp, usize),
    Binary(BinaryOp, usize, usize),
    /// Produces `Bool`.
    Compare(CompareOp, usize, usize),
    /// `cond ? a : b` with operands `(cond, a, b)`.
    Select(usize, usize, usize),
    Cast(usize, DType),
}

impl FusedInstr {
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
    pub instrs: Vec<FusedInstr>,
    /// The register holding the result.
    pub output: usize,
}
