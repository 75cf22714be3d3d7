//! The closed, data-only operator set of the IR. Behaviour (shape rules, gradients,
//! kernels, costs) lives in per-layer tables that `match` on [`Op`], one file per family.

use crate::Dim;
use luoshu_backend::ops::{BinaryOp, CompareOp, ElementwiseProgram, ReduceOp, UnaryOp};
use luoshu_tensor::DType;
use std::fmt;

/// An `f64` compared and hashed by its bits, so ops with float payloads can be hash-consed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Float(u64);

impl Float {
    pub fn new(v: f64) -> Self {
        // One bit pattern for zero so that `x + 0.0` and `x + -0.0` are the same node.
        Float(if v == 0.0 { 0 } else { v.to_bits() })
    }
    pub fn get(self) -> f64 {
        f64::from_bits(self.0)
    }
}

impl fmt::Debug for Float {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

/// Random distributions of [`Op::Random`] (the graph-level twin of `RandomDist`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Distribution {
    Uniform { low: Float, high: Float },
    Normal { mean: Float, std: Float },
    Bernoulli { p: Float },
}

/// A constant tensor's data, kept exact (f64 holds every supported element type's value
/// except the extremes of i64, which constants do not use).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConstData {
    pub dims: Vec<usize>,
    pub dtype: DType,
    pub values: Vec<Float>,
}

/// Reduction of an [`Op::AllReduce`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CollectiveReduce {
    Sum,
    Max,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Op {
    // ----- leaves -----
    /// Data fed at run time (tokens, targets, masks).
    Input {
        name: String,
        shape: Vec<Dim>,
        dtype: DType,
    },
    /// Trainable state, bound by name.
    Parameter {
        name: String,
        shape: Vec<Dim>,
        dtype: DType,
    },
    /// A tensor with every element `value`.
    Full {
        value: Float,
        shape: Vec<Dim>,
        dtype: DType,
    },
    /// A literal tensor (results of constant folding, small tables).
    Constant(ConstData),
    /// `start + i·step` for `i < len`.
    Arange {
        start: Float,
        step: Float,
        len: Dim,
        dtype: DType,
    },
    /// Counter-based random tensor: pure, so equal nodes are equal values.
    Random {
        dist: Distribution,
        seed: u64,
        stream: u64,
        shape: Vec<Dim>,
        dtype: DType,
    },

    // ----- elementwise (NumPy broadcasting between inputs) -----
    Unary(UnaryOp),
    Binary(BinaryOp),
    Compare(CompareOp),
    /// `cond ? a : b`.
    Select,
    Cast(DType),

    // ----- reductions -----
    Reduce {
        op: ReduceOp,
        axes: Vec<usize>,
        keepdim: bool,
    },
    Argmax {
        axis: usize,
        keepdim: bool,
    },

    // ----- matmul (batch dims broadcast) -----
    MatMul,

    // ----- views and layout -----
    Reshape {
        shape: Vec<Dim>,
    },
    Permute {
        perm: Vec<usize>,
    },
    /// `start..end` by `step` on a dimension of fixed size.
    Slice {
        dim: usize,
        start: usize,
        end: usize,
        step: usize,
    },
    Broadcast {
        shape: Vec<Dim>,
    },
    /// A contiguous copy (what a view becomes when strides cannot express it).
    Contiguous,

    // ----- indexing -----
    IndexSelect {
        dim: usize,
    },
    /// Functional `index_add`: `dst` with `src` slices added at `indices` (inputs dst, indices, src).
    IndexAdd {
        dim: usize,
    },
    Gather {
        dim: usize,
    },
    /// Functional `scatter_add` (inputs dst, index, src).
    ScatterAdd {
        dim: usize,
    },
    Concat {
        dim: usize,
    },

    // ----- composite nn ops (see the Backend trait for their contracts) -----
    Softmax,
    LogSoftmax,
    /// Inputs logits, targets; outputs (losses, lse).
    CrossEntropy {
        ignore_index: i64,
    },
    /// Inputs logits, targets, lse, grad_losses; output grad_logits.
    CrossEntropyBackward {
        ignore_index: i64,
    },
    /// Inputs x, weight; outputs (out, rstd).
    RmsNorm {
        eps: Float,
    },
    /// Inputs x, weight, rstd, grad_out; outputs (grad_x, grad_weight).
    RmsNormBackward,
    /// Inputs x, weight, bias; outputs (out, mean, rstd).
    LayerNorm {
        eps: Float,
    },
    /// Inputs x, weight, mean, rstd, grad_out; outputs (grad_x, grad_weight, grad_bias).
    LayerNormBackward,
    /// Inputs x, cos, sin.
    Rope {
        inverse: bool,
    },
    /// Inputs gate, up.
    Swiglu,
    /// Inputs gate, up, grad_out; outputs (grad_gate, grad_up).
    SwigluBackward,
    /// Inputs q, k, v, and with `segmented` segment ids: the keys' (`[b, sk]`; the queries
    /// are end-aligned, at the last `sq` key positions, like the causal mask) or the keys'
    /// followed by the queries' own (`[b, sk + sq]`, for a chunk of queries paired with an
    /// earlier, non-adjacent chunk of keys); outputs (out, lse).
    ///
    /// Packed rows carry one `i64` document id per token (`[b, s]`, non-decreasing along a
    /// row) rather than cumulative lengths: ids have the shape of the tokens, so they are
    /// fed, sharded (batch splits) and sent between pipeline stages exactly like tokens,
    /// and they need no ragged `[b, documents + 1]` dim; the kernels derive each token's
    /// document window from them in one pass.
    Attention {
        scale: Float,
        causal: bool,
        segmented: bool,
    },
    /// Inputs q, k, v, out, lse, grad_out, with `segmented` the segment ids, and with
    /// `lse_grad` the gradient of lse (when the loss depends on it, as log-sum-exp merges of
    /// partial attentions do); outputs (grad_q, grad_k, grad_v).
    AttentionBackward {
        scale: Float,
        causal: bool,
        segmented: bool,
        lse_grad: bool,
    },

    // ----- collectives over a named device group (run by the plan's `Collectives`) -----
    /// Elementwise reduction over the `parts` ranks of `group`; every rank gets the result.
    /// Gradient (Megatron's convention, valid when the result's gradient is the same on every
    /// rank, as in replicated loss computation): `Sum` passes it through, `Max` stops it.
    AllReduce {
        group: String,
        parts: usize,
        op: CollectiveReduce,
    },
    /// Concatenation along `dim` of every rank's input, in rank order. Gradient: reduce-scatter.
    AllGather {
        group: String,
        parts: usize,
        dim: usize,
    },
    /// Sum over ranks, then rank `i` keeps the `i`-th of `parts` equal pieces along `dim`.
    /// Gradient: all-gather.
    ReduceScatter {
        group: String,
        parts: usize,
        dim: usize,
    },
    /// Point-to-point around a ring: rank `i` of the `parts` ranks of `group` sends its input
    /// to rank `(i + offset) mod parts` and returns what rank `(i − offset) mod parts` sent
    /// (same type). Gradient: the opposite shift.
    RingShift {
        group: String,
        parts: usize,
        offset: usize,
    },

    // ----- compiler-made -----
    /// A fused elementwise expression over its inputs (NumPy broadcasting), made by the
    /// elementwise-fusion pass and run in one pass over memory.
    Fused(ElementwiseProgram),
}

impl Op {
    /// Leaves have no inputs and are never computed from other nodes.
    pub fn is_leaf(&self) -> bool {
        matches!(
            self,
            Op::Input { .. }
                | Op::Parameter { .. }
                | Op::Full { .. }
                | Op::Constant(_)
                | Op::Arange { .. }
                | Op::Random { .. }
        )
    }

    /// Ops that only reinterpret their input's layout (zero-copy when strides allow).
    pub fn is_view(&self) -> bool {
        matches!(
            self,
            Op::Reshape { .. } | Op::Permute { .. } | Op::Slice { .. } | Op::Broadcast { .. }
        )
    }

    /// Ops computed element by element (candidates for elementwise fusion).
    pub fn is_elementwise(&self) -> bool {
        matches!(
            self,
            Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Select | Op::Cast(_)
        )
    }

    /// Collectives: run by every rank of a group in the same order, never folded or
    /// evaluated without a `Collectives` handler.
    pub fn is_collective(&self) -> bool {
        matches!(
            self,
            Op::AllReduce { .. }
                | Op::AllGather { .. }
                | Op::ReduceScatter { .. }
                | Op::RingShift { .. }
        )
    }

    /// Short name for dumps and errors.
    pub fn name(&self) -> String {
        match self {
            Op::Input { name, .. } => format!("input:{name}"),
            Op::Parameter { name, .. } => format!("param:{name}"),
            Op::Full { value, .. } => format!("full({value:?})"),
            Op::Constant(c) => format!("constant{:?}", c.dims),
            Op::Arange { .. } => "arange".into(),
            Op::Random { .. } => "random".into(),
            Op::Unary(u) => u.name().into(),
            Op::Binary(b) => b.name().into(),
            Op::Compare(c) => c.name().into(),
            Op::Select => "where".into(),
            Op::Cast(d) => format!("cast:{d}"),
            Op::Reduce { op, axes, .. } => format!("{}{axes:?}", op.name()),
            Op::Argmax { axis, .. } => format!("argmax[{axis}]"),
            Op::MatMul => "matmul".into(),
            Op::Reshape { shape } => format!("reshape{shape:?}"),
            Op::Permute { perm } => format!("permute{perm:?}"),
            Op::Slice {
                dim,
                start,
                end,
                step,
            } => format!("slice[{dim}:{start}..{end}:{step}]"),
            Op::Broadcast { shape } => format!("broadcast{shape:?}"),
            Op::Contiguous => "contiguous".into(),
            Op::IndexSelect { dim } => format!("index_select[{dim}]"),
            Op::IndexAdd { dim } => format!("index_add[{dim}]"),
            Op::Gather { dim } => format!("gather[{dim}]"),
            Op::ScatterAdd { dim } => format!("scatter_add[{dim}]"),
            Op::Concat { dim } => format!("concat[{dim}]"),
            Op::Softmax => "softmax".into(),
            Op::LogSoftmax => "log_softmax".into(),
            Op::CrossEntropy { .. } => "cross_entropy".into(),
            Op::CrossEntropyBackward { .. } => "cross_entropy_backward".into(),
            Op::RmsNorm { .. } => "rms_norm".into(),
            Op::RmsNormBackward => "rms_norm_backward".into(),
            Op::LayerNorm { .. } => "layer_norm".into(),
            Op::LayerNormBackward => "layer_norm_backward".into(),
            Op::Rope { inverse } => format!("rope{}", if *inverse { "_inverse" } else { "" }),
            Op::Swiglu => "swiglu".into(),
            Op::SwigluBackward => "swiglu_backward".into(),
            Op::Attention { .. } => "attention".into(),
            Op::AttentionBackward { .. } => "attention_backward".into(),
            Op::AllReduce { group, op, .. } => format!("all_reduce:{op:?}@{group}"),
            Op::AllGather { group, dim, .. } => format!("all_gather[{dim}]@{group}"),
            Op::ReduceScatter { group, dim, .. } => format!("reduce_scatter[{dim}]@{group}"),
            Op::RingShift { group, offset, .. } => format!("ring_shift[+{offset}]@{group}"),
            Op::Fused(p) => format!("fused[{}]", p.instrs.len()),
        }
    }
}
