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
    /// Wraps `v`; `-0.0` is stored as `0.0`, so the two hash and compare equal.
    pub fn new(v: f64) -> Self {
        // One bit pattern for zero so that `x + 0.0` and `x + -0.0` are the same node.
        Float(if v == 0.0 { 0 } else { v.to_bits() })
    }
    /// The wrapped value.
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
    /// Uniform in `[low, high)`.
    Uniform {
        /// Smallest value drawn (inclusive).
        low: Float,
        /// Upper end of the range (exclusive).
        high: Float,
    },
    /// Gaussian.
    Normal {
        /// Mean of the distribution.
        mean: Float,
        /// Standard deviation.
        std: Float,
    },
    /// 1 with probability `p`, else 0 (a dropout keep-mask).
    Bernoulli {
        /// Probability of a 1, in `[0, 1]`.
        p: Float,
    },
}

/// A constant tensor's data, kept exact (f64 holds every supported element type's value
/// except the extremes of i64, which constants do not use).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConstData {
    /// Shape of the tensor (constants have no symbolic dims).
    pub dims: Vec<usize>,
    /// Element type the values are stored as when the constant is built.
    pub dtype: DType,
    /// Elements in row-major order; shape inference rejects a length other than the
    /// product of `dims`.
    pub values: Vec<Float>,
}

/// Reduction of an [`Op::AllReduce`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CollectiveReduce {
    /// Elementwise sum over the ranks.
    Sum,
    /// Elementwise maximum over the ranks.
    Max,
}

/// What a node computes. The payload is plain, hashable data, so [`crate::Graph::add`] can
/// merge identical nodes; which inputs an op takes and what it outputs is documented per
/// variant and enforced by shape inference ([`crate::infer::infer`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Op {
    // ----- leaves -----
    /// Data fed at run time (tokens, targets, masks).
    Input {
        /// Name the feed is bound by; unique among a graph's inputs and parameters.
        name: String,
        /// Shape, possibly with symbolic dims bound when a plan is built.
        shape: Vec<Dim>,
        /// Element type the fed tensor must have.
        dtype: DType,
    },
    /// Trainable state, bound by name.
    Parameter {
        /// Name the parameter is bound by; unique among a graph's inputs and parameters.
        name: String,
        /// Shape of the parameter tensor.
        shape: Vec<Dim>,
        /// Element type of the parameter tensor.
        dtype: DType,
    },
    /// A tensor with every element `value`.
    Full {
        /// The value of every element (converted to `dtype`).
        value: Float,
        /// Shape of the tensor.
        shape: Vec<Dim>,
        /// Element type.
        dtype: DType,
    },
    /// A literal tensor (results of constant folding, small tables).
    Constant(ConstData),
    /// `start + i·step` for `i < len`.
    Arange {
        /// Value of element 0.
        start: Float,
        /// Difference between consecutive elements.
        step: Float,
        /// Number of elements (the rank-1 output's only dim).
        len: Dim,
        /// Element type.
        dtype: DType,
    },
    /// Counter-based random tensor: pure, so equal nodes are equal values.
    Random {
        /// Distribution of every element.
        dist: Distribution,
        /// Seed of the counter-based generator.
        seed: u64,
        /// Stream under the seed, so tensors drawn with one seed are independent.
        stream: u64,
        /// Shape of the tensor; element `i` (row-major) is a function of `(seed, stream, i)`.
        shape: Vec<Dim>,
        /// Element type: a float type, or bool.
        dtype: DType,
    },

    // ----- elementwise (NumPy broadcasting between inputs) -----
    /// One-input elementwise function; the output has the input's shape and dtype.
    Unary(UnaryOp),
    /// Two-input elementwise arithmetic on inputs of one dtype, broadcast together.
    Binary(BinaryOp),
    /// Elementwise comparison of two inputs of one dtype, broadcast together; outputs bool.
    Compare(CompareOp),
    /// `cond ? a : b` (inputs cond, a, b): `cond` is bool, `a` and `b` share a dtype, and
    /// all three broadcast together.
    Select,
    /// Conversion of every element to the given dtype, keeping the shape.
    Cast(DType),

    // ----- reductions -----
    /// Reduction over some axes of the single input.
    Reduce {
        /// The reduction (sum, mean, max, ...); mean needs a float input.
        op: ReduceOp,
        /// Axes reduced over: non-empty, sorted, without repeats.
        axes: Vec<usize>,
        /// Keep the reduced axes as size 1 rather than dropping them.
        keepdim: bool,
    },
    /// Index of the largest element along one axis, as `i64`.
    Argmax {
        /// The axis searched.
        axis: usize,
        /// Keep `axis` as size 1 rather than dropping it.
        keepdim: bool,
    },

    // ----- matmul (batch dims broadcast) -----
    /// `[..., m, k] · [..., k, n] -> [..., m, n]` over float inputs of one dtype, the
    /// leading (batch) dims broadcast together.
    MatMul,

    // ----- views and layout -----
    /// The same elements in row-major order under another shape of equal element count.
    Reshape {
        /// The output shape.
        shape: Vec<Dim>,
    },
    /// Reorders the dims: output dim `i` is input dim `perm[i]`.
    Permute {
        /// A permutation of `0..rank`.
        perm: Vec<usize>,
    },
    /// `start..end` by `step` on a dimension of fixed size.
    Slice {
        /// The dimension sliced; its size must be fixed, not symbolic.
        dim: usize,
        /// First index kept.
        start: usize,
        /// One past the last index that may be kept (at most the dim's size).
        end: usize,
        /// Distance between kept indices; at least 1.
        step: usize,
    },
    /// The input stretched to a larger shape by NumPy broadcasting (new leading dims,
    /// size-1 dims repeated).
    Broadcast {
        /// The output shape; the input must broadcast to it.
        shape: Vec<Dim>,
    },
    /// A contiguous copy (what a view becomes when strides cannot express it).
    Contiguous,

    // ----- indexing -----
    /// Slices of `x` at rank-1 `indices` (`i64` or `i32`) along `dim` (inputs x, indices):
    /// the output is `x` with dim `dim` replaced by the number of indices (an embedding
    /// lookup).
    IndexSelect {
        /// The dimension indexed.
        dim: usize,
    },
    /// Functional `index_add`: `dst` with `src` slices added at `indices` (inputs dst, indices, src).
    IndexAdd {
        /// The dimension of `dst` the indices point into.
        dim: usize,
    },
    /// PyTorch `gather` (inputs x, index): `out[i][j] = x[i][index[i][j]]` for `dim == 1`;
    /// `index` has `x`'s rank and gives the output's shape.
    Gather {
        /// The dimension indexed.
        dim: usize,
    },
    /// Functional `scatter_add` (inputs dst, index, src).
    ScatterAdd {
        /// The dimension of `dst` the index points into.
        dim: usize,
    },
    /// The inputs (at least one, of one dtype and equal other dims) joined along `dim`.
    Concat {
        /// The dimension joined along; it must be fixed, not symbolic, in every input.
        dim: usize,
    },

    // ----- composite nn ops (see the Backend trait for their contracts) -----
    /// Softmax over the last dim of a float input.
    Softmax,
    /// Log-softmax over the last dim of a float input.
    LogSoftmax,
    /// Inputs logits, targets; outputs (losses, lse).
    CrossEntropy {
        /// Target value whose rows get loss 0 (and gradient 0).
        ignore_index: i64,
    },
    /// Inputs logits, targets, lse, grad_losses; output grad_logits.
    CrossEntropyBackward {
        /// The forward's `ignore_index`.
        ignore_index: i64,
    },
    /// Inputs x, weight; outputs (out, rstd).
    RmsNorm {
        /// Added to the mean square before the reciprocal square root.
        eps: Float,
    },
    /// Inputs x, weight, rstd, grad_out; outputs (grad_x, grad_weight).
    RmsNormBackward,
    /// Inputs x, weight, bias; outputs (out, mean, rstd).
    LayerNorm {
        /// Added to the variance before the reciprocal square root.
        eps: Float,
    },
    /// Inputs x, weight, mean, rstd, grad_out; outputs (grad_x, grad_weight, grad_bias).
    LayerNormBackward,
    /// Inputs x, cos, sin.
    Rope {
        /// Rotate the other way (the forward rotation's backward).
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
        /// Factor applied to `q·kᵀ` before the softmax (usually `1/√d`).
        scale: Float,
        /// Mask keys after the query's position, the mask aligned at the end of the keys.
        causal: bool,
        /// The segment ids are a fourth input.
        segmented: bool,
    },
    /// Inputs q, k, v, out, lse, grad_out, with `segmented` the segment ids, and with
    /// `lse_grad` the gradient of lse (when the loss depends on it, as log-sum-exp merges of
    /// partial attentions do); outputs (grad_q, grad_k, grad_v).
    AttentionBackward {
        /// The forward's `scale`.
        scale: Float,
        /// The forward's `causal`.
        causal: bool,
        /// The forward's `segmented`: the segment ids follow `grad_out`.
        segmented: bool,
        /// The gradient of lse is the last input.
        lse_grad: bool,
    },

    // ----- collectives over a named device group (run by the plan's `Collectives`) -----
    /// Elementwise reduction over the `parts` ranks of `group`; every rank gets the result.
    /// Gradient (Megatron's convention, valid when the result's gradient is the same on every
    /// rank, as in replicated loss computation): `Sum` passes it through, `Max` stops it.
    AllReduce {
        /// Name of the device group (e.g. `tp`), resolved by the plan's `Collectives`.
        group: String,
        /// Number of ranks in the group; at least 1.
        parts: usize,
        /// The reduction.
        op: CollectiveReduce,
    },
    /// Concatenation along `dim` of every rank's input, in rank order. Gradient: reduce-scatter.
    AllGather {
        /// Name of the device group.
        group: String,
        /// Number of ranks in the group; the output's `dim` is `parts` times the input's.
        parts: usize,
        /// The dimension concatenated along.
        dim: usize,
    },
    /// Sum over ranks, then rank `i` keeps the `i`-th of `parts` equal pieces along `dim`.
    /// Gradient: all-gather.
    ReduceScatter {
        /// Name of the device group.
        group: String,
        /// Number of ranks in the group; the input's `dim` must be a multiple of it.
        parts: usize,
        /// The dimension split into pieces.
        dim: usize,
    },
    /// Point-to-point around a ring: rank `i` of the `parts` ranks of `group` sends its input
    /// to rank `(i + offset) mod parts` and returns what rank `(i − offset) mod parts` sent
    /// (same type). Gradient: the opposite shift.
    RingShift {
        /// Name of the device group.
        group: String,
        /// Number of ranks in the ring.
        parts: usize,
        /// How many places on the value travels; below `parts`.
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
