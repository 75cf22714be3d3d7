//! Ergonomic graph construction: one generic path per op kind (`unary`, `binary`, `reduce`,
//! ...) plus thin named wrappers. Views that would not change anything (reshape to the same
//! shape, identity permutation, broadcast to the same shape) return their input, so graphs
//! built by autodiff stay free of no-op nodes.

use crate::{CollectiveReduce, Dim, Error, Float, Graph, Op, Result, Value};
use luoshu_backend::ops::{BinaryOp, CompareOp, ReduceOp, UnaryOp};
use luoshu_tensor::DType;

/// Named forms of [`Graph::binary`].
macro_rules! binary_wrappers {
    ($($(#[$doc:meta])* $name:ident => $op:ident,)*) => {$(
        $(#[$doc])*
        pub fn $name(&mut self, a: Value, b: Value) -> Result<Value> {
            self.binary(BinaryOp::$op, a, b)
        }
    )*};
}

/// Named forms of [`Graph::unary`].
macro_rules! unary_wrappers {
    ($($(#[$doc:meta])* $name:ident => $op:ident,)*) => {$(
        $(#[$doc])*
        pub fn $name(&mut self, x: Value) -> Result<Value> {
            self.unary(UnaryOp::$op, x)
        }
    )*};
}

impl Graph {
    /// Shape of a value (cloned, so the graph can be mutated afterwards).
    pub fn shape_of(&self, v: Value) -> Vec<Dim> {
        self.value_type(v).shape.clone()
    }

    /// Element type of a value.
    pub fn dtype_of(&self, v: Value) -> DType {
        self.value_type(v).dtype
    }

    /// Add a node and return all of its outputs.
    pub fn add_multi(&mut self, op: Op, inputs: &[Value]) -> Result<Vec<Value>> {
        let id = self.add(op, inputs)?;
        let n = self.node(id).outputs.len() as u32;
        Ok((0..n).map(|o| Value::new(id, o)).collect())
    }

    fn add2(&mut self, op: Op, inputs: &[Value]) -> Result<(Value, Value)> {
        let id = self.add(op, inputs)?;
        Ok((Value::new(id, 0), Value::new(id, 1)))
    }

    // ----- leaves -----

    /// Data fed at run time under `name`.
    pub fn input(&mut self, name: &str, shape: &[Dim], dtype: DType) -> Result<Value> {
        let op = Op::Input {
            name: name.into(),
            shape: shape.to_vec(),
            dtype,
        };
        self.add1(op, &[])
    }

    /// Trainable state bound by `name`.
    pub fn param(&mut self, name: &str, shape: &[Dim], dtype: DType) -> Result<Value> {
        let op = Op::Parameter {
            name: name.into(),
            shape: shape.to_vec(),
            dtype,
        };
        self.add1(op, &[])
    }

    /// A tensor of `shape` with every element `value`.
    pub fn full(&mut self, value: f64, shape: &[Dim], dtype: DType) -> Result<Value> {
        let op = Op::Full {
            value: Float::new(value),
            shape: shape.to_vec(),
            dtype,
        };
        self.add1(op, &[])
    }

    /// A rank-0 constant, which broadcasts against anything.
    pub fn scalar(&mut self, value: f64, dtype: DType) -> Result<Value> {
        self.full(value, &[], dtype)
    }

    /// Zeros with `like`'s shape and dtype.
    pub fn zeros_like(&mut self, like: Value) -> Result<Value> {
        let t = self.value_type(like).clone();
        self.full(0.0, &t.shape, t.dtype)
    }

    /// `start + i·step` for `i < len`.
    pub fn arange(&mut self, start: f64, step: f64, len: Dim, dtype: DType) -> Result<Value> {
        let op = Op::Arange {
            start: Float::new(start),
            step: Float::new(step),
            len,
            dtype,
        };
        self.add1(op, &[])
    }

    // ----- elementwise -----

    /// `op` applied to every element of `x`. Errors unless `x` is float (or an integer
    /// type, for the ops defined on integers).
    pub fn unary(&mut self, op: UnaryOp, x: Value) -> Result<Value> {
        self.add1(Op::Unary(op), &[x])
    }

    /// `op` of `a` and `b` elementwise with NumPy broadcasting. Errors when the dtypes
    /// differ or the shapes do not broadcast.
    pub fn binary(&mut self, op: BinaryOp, a: Value, b: Value) -> Result<Value> {
        self.add1(Op::Binary(op), &[a, b])
    }

    /// Elementwise comparison of `a` and `b` (same dtype, broadcast together) as a bool
    /// tensor.
    pub fn compare(&mut self, op: CompareOp, a: Value, b: Value) -> Result<Value> {
        self.add1(Op::Compare(op), &[a, b])
    }

    /// `cond ? a : b` with broadcasting.
    pub fn select(&mut self, cond: Value, a: Value, b: Value) -> Result<Value> {
        self.add1(Op::Select, &[cond, a, b])
    }

    /// `x` converted to `dtype` (no node when it already has it).
    pub fn cast(&mut self, x: Value, dtype: DType) -> Result<Value> {
        if self.dtype_of(x) == dtype {
            return Ok(x);
        }
        self.add1(Op::Cast(dtype), &[x])
    }

    binary_wrappers! {
        /// `a + b` (named `plus` because [`Graph::add`] adds a node).
        plus => Add,
        /// `a - b`.
        sub => Sub,
        /// `a * b`.
        mul => Mul,
        /// `a / b` (float dtypes only).
        div => Div,
        /// The larger of `a` and `b`.
        maximum => Maximum,
        /// The smaller of `a` and `b`.
        minimum => Minimum,
        /// `a` raised to the power `b` (float dtypes only).
        pow => Pow,
    }

    unary_wrappers! {
        /// `-x`.
        neg => Neg,
        /// `|x|`.
        abs => Abs,
        /// `eˣ`.
        exp => Exp,
        /// Natural logarithm.
        log => Log,
        /// Square root.
        sqrt => Sqrt,
        /// `1 / √x`.
        rsqrt => Rsqrt,
        /// `1 / x`.
        recip => Recip,
        /// Sine (radians).
        sin => Sin,
        /// Cosine (radians).
        cos => Cos,
        /// Hyperbolic tangent.
        tanh => Tanh,
        /// `1 / (1 + e⁻ˣ)`.
        sigmoid => Sigmoid,
        /// `max(x, 0)`.
        relu => Relu,
        /// `x · sigmoid(x)`.
        silu => Silu,
        /// Exact GELU, `x · Φ(x)` (the error function, not the tanh approximation).
        gelu => Gelu,
    }

    /// `x * c` for a constant `c` in `x`'s dtype.
    pub fn mul_scalar(&mut self, x: Value, c: f64) -> Result<Value> {
        let c = self.scalar(c, self.dtype_of(x))?;
        self.mul(x, c)
    }

    /// `x + c` for a constant `c` in `x`'s dtype.
    pub fn add_scalar(&mut self, x: Value, c: f64) -> Result<Value> {
        let c = self.scalar(c, self.dtype_of(x))?;
        self.plus(x, c)
    }

    // ----- reductions -----

    /// `op` over `axes` of `x` (sorted and deduplicated here); `keepdim` keeps them as size
    /// 1. Errors for an empty or out-of-range axis list.
    pub fn reduce(
        &mut self,
        op: ReduceOp,
        x: Value,
        axes: &[usize],
        keepdim: bool,
    ) -> Result<Value> {
        let mut axes = axes.to_vec();
        axes.sort_unstable();
        axes.dedup();
        self.add1(Op::Reduce { op, axes, keepdim }, &[x])
    }

    /// Sum over `axes`; see [`Graph::reduce`].
    pub fn sum(&mut self, x: Value, axes: &[usize], keepdim: bool) -> Result<Value> {
        self.reduce(ReduceOp::Sum, x, axes, keepdim)
    }

    /// Mean over `axes` of a float `x`; see [`Graph::reduce`].
    pub fn mean(&mut self, x: Value, axes: &[usize], keepdim: bool) -> Result<Value> {
        self.reduce(ReduceOp::Mean, x, axes, keepdim)
    }

    /// Maximum over `axes`; see [`Graph::reduce`].
    pub fn max(&mut self, x: Value, axes: &[usize], keepdim: bool) -> Result<Value> {
        self.reduce(ReduceOp::Max, x, axes, keepdim)
    }

    /// Sum of every element, as a rank-0 value (`x` itself when it is rank 0).
    pub fn sum_all(&mut self, x: Value) -> Result<Value> {
        let rank = self.value_type(x).rank();
        if rank == 0 {
            return Ok(x);
        }
        self.sum(x, &(0..rank).collect::<Vec<_>>(), false)
    }

    /// `i64` index of the largest element along `axis`.
    pub fn argmax(&mut self, x: Value, axis: usize, keepdim: bool) -> Result<Value> {
        self.add1(Op::Argmax { axis, keepdim }, &[x])
    }

    /// Reduce `x` to `shape` by summing the dims that broadcasting from `shape` added or
    /// stretched — the adjoint of [`Graph::broadcast_to`].
    pub fn sum_to(&mut self, x: Value, shape: &[Dim]) -> Result<Value> {
        let from = self.shape_of(x);
        let bad = || Error::Invalid {
            detail: format!("cannot sum {from:?} down to {shape:?}: it does not broadcast to it"),
        };
        let lead = from.len().checked_sub(shape.len()).ok_or_else(bad)?;
        let mut axes: Vec<usize> = (0..lead).collect();
        let mut stretched = false;
        for (i, target) in shape.iter().enumerate() {
            if from[lead + i] == *target {
                continue;
            }
            if !target.is_one() {
                return Err(bad());
            }
            axes.push(lead + i);
            stretched = true;
        }
        if axes.is_empty() {
            return Ok(x);
        }
        // Leading dims alone can be dropped by the reduction itself; stretched ones need
        // keepdim and a reshape that drops the leading ones.
        let summed = self.sum(x, &axes, stretched)?;
        self.reshape(summed, shape)
    }

    // ----- matmul -----

    /// Batched matrix product `[..., m, k] · [..., k, n] -> [..., m, n]`, batch dims
    /// broadcast. Errors for rank below 2, differing dtypes or contracted dims.
    pub fn matmul(&mut self, a: Value, b: Value) -> Result<Value> {
        self.add1(Op::MatMul, &[a, b])
    }

    // ----- views and layout -----

    /// `x`'s elements under `shape`, which must have the same element count (`x` itself
    /// when the shape is unchanged).
    pub fn reshape(&mut self, x: Value, shape: &[Dim]) -> Result<Value> {
        if self.value_type(x).shape == shape {
            return Ok(x);
        }
        self.add1(
            Op::Reshape {
                shape: shape.to_vec(),
            },
            &[x],
        )
    }

    /// `x` with output dim `i` taken from input dim `perm[i]` (`x` itself for the identity).
    pub fn permute(&mut self, x: Value, perm: &[usize]) -> Result<Value> {
        if perm.iter().enumerate().all(|(i, &p)| i == p) && perm.len() == self.value_type(x).rank()
        {
            return Ok(x);
        }
        self.add1(
            Op::Permute {
                perm: perm.to_vec(),
            },
            &[x],
        )
    }

    /// Swap dims `a` and `b`.
    pub fn transpose(&mut self, x: Value, a: usize, b: usize) -> Result<Value> {
        let rank = self.value_type(x).rank();
        if a >= rank || b >= rank {
            return Err(Error::Invalid {
                detail: format!("cannot transpose dims {a} and {b} of a rank-{rank} value {x}"),
            });
        }
        let mut perm: Vec<usize> = (0..rank).collect();
        perm.swap(a, b);
        self.permute(x, &perm)
    }

    /// Swap the last two dims (matrix transpose of a batch).
    pub fn transpose_last(&mut self, x: Value) -> Result<Value> {
        let rank = self.value_type(x).rank();
        if rank < 2 {
            return Err(Error::Invalid {
                detail: format!("cannot transpose the last two dims of a rank-{rank} value {x}"),
            });
        }
        self.transpose(x, rank - 2, rank - 1)
    }

    /// `x` broadcast (NumPy rules) to `shape` (`x` itself when the shape is unchanged).
    pub fn broadcast_to(&mut self, x: Value, shape: &[Dim]) -> Result<Value> {
        if self.value_type(x).shape == shape {
            return Ok(x);
        }
        self.add1(
            Op::Broadcast {
                shape: shape.to_vec(),
            },
            &[x],
        )
    }

    /// `start..end` by `step` along `dim`.
    pub fn slice(
        &mut self,
        x: Value,
        dim: usize,
        start: usize,
        end: usize,
        step: usize,
    ) -> Result<Value> {
        self.add1(
            Op::Slice {
                dim,
                start,
                end,
                step,
            },
            &[x],
        )
    }

    /// A row-major copy of `x` (the memory planner makes it an alias when `x`'s bytes
    /// already are row-major).
    pub fn contiguous(&mut self, x: Value) -> Result<Value> {
        self.add1(Op::Contiguous, &[x])
    }

    // ----- indexing -----

    /// Slices of `x` along `dim` at rank-1 integer `indices`, in their order.
    pub fn index_select(&mut self, x: Value, dim: usize, indices: Value) -> Result<Value> {
        self.add1(Op::IndexSelect { dim }, &[x, indices])
    }

    /// `dst` with `src` slices added at `indices` along `dim`.
    pub fn index_add(
        &mut self,
        dst: Value,
        dim: usize,
        indices: Value,
        src: Value,
    ) -> Result<Value> {
        self.add1(Op::IndexAdd { dim }, &[dst, indices, src])
    }

    /// PyTorch `gather`: elements of `x` picked along `dim` by `index`, which has `x`'s
    /// rank and gives the output's shape.
    pub fn gather(&mut self, x: Value, dim: usize, index: Value) -> Result<Value> {
        self.add1(Op::Gather { dim }, &[x, index])
    }

    /// `dst` with `src` added at `index` along `dim`.
    pub fn scatter_add(
        &mut self,
        dst: Value,
        dim: usize,
        index: Value,
        src: Value,
    ) -> Result<Value> {
        self.add1(Op::ScatterAdd { dim }, &[dst, index, src])
    }

    /// `inputs` joined along `dim`, which must be fixed in each; the other dims and the
    /// dtype must agree.
    pub fn concat(&mut self, inputs: &[Value], dim: usize) -> Result<Value> {
        self.add1(Op::Concat { dim }, inputs)
    }

    // ----- composite nn ops -----

    /// Softmax over the last dim.
    pub fn softmax(&mut self, x: Value) -> Result<Value> {
        self.add1(Op::Softmax, &[x])
    }

    /// Log-softmax over the last dim.
    pub fn log_softmax(&mut self, x: Value) -> Result<Value> {
        self.add1(Op::LogSoftmax, &[x])
    }

    /// Per-row losses and log-sum-exps of `logits [n, vocab]` against `targets [n]`.
    pub fn cross_entropy(
        &mut self,
        logits: Value,
        targets: Value,
        ignore_index: i64,
    ) -> Result<(Value, Value)> {
        self.add2(Op::CrossEntropy { ignore_index }, &[logits, targets])
    }

    /// RMSNorm over the last dim: `(out, rstd)`.
    pub fn rms_norm(&mut self, x: Value, weight: Value, eps: f64) -> Result<(Value, Value)> {
        self.add2(
            Op::RmsNorm {
                eps: Float::new(eps),
            },
            &[x, weight],
        )
    }

    /// LayerNorm over the last dim: `(out, mean, rstd)`.
    pub fn layer_norm(
        &mut self,
        x: Value,
        weight: Value,
        bias: Value,
        eps: f64,
    ) -> Result<(Value, Value, Value)> {
        let id = self.add(
            Op::LayerNorm {
                eps: Float::new(eps),
            },
            &[x, weight, bias],
        )?;
        Ok((Value::new(id, 0), Value::new(id, 1), Value::new(id, 2)))
    }

    /// Rotary embedding of `x [batch, seq, heads, head_dim]` with tables `[seq, head_dim/2]`.
    pub fn rope(&mut self, x: Value, cos: Value, sin: Value, inverse: bool) -> Result<Value> {
        self.add1(Op::Rope { inverse }, &[x, cos, sin])
    }

    /// `silu(gate) * up`.
    pub fn swiglu(&mut self, gate: Value, up: Value) -> Result<Value> {
        self.add1(Op::Swiglu, &[gate, up])
    }

    /// Scaled dot-product attention of `q [b, hq, sq, d]`, `k`, `v [b, hkv, sk, ·]`:
    /// `(out, lse)`.
    pub fn attention(
        &mut self,
        q: Value,
        k: Value,
        v: Value,
        scale: f64,
        causal: bool,
    ) -> Result<(Value, Value)> {
        self.add_attention(&[q, k, v], scale, causal)
    }

    /// Attention over packed rows: `segments` (`i64 [b, sk]`, one per key, non-decreasing
    /// along a row, the queries at the last `sq` positions; or `[b, sk + sq]`, the keys'
    /// ids then the queries' own) gives each token's document, and a token sees only
    /// (earlier, when `causal`) tokens of its own document: `(out, lse)`.
    pub fn segmented_attention(
        &mut self,
        (q, k, v): (Value, Value, Value),
        segments: Value,
        scale: f64,
        causal: bool,
    ) -> Result<(Value, Value)> {
        self.add_attention(&[q, k, v, segments], scale, causal)
    }

    /// Attention over `q, k, v` and, when given, segment ids.
    fn add_attention(
        &mut self,
        inputs: &[Value],
        scale: f64,
        causal: bool,
    ) -> Result<(Value, Value)> {
        let op = Op::Attention {
            scale: Float::new(scale),
            causal,
            segmented: inputs.len() == 4,
        };
        self.add2(op, inputs)
    }

    /// Elementwise `op` over the `parts` ranks of `group`.
    pub fn all_reduce(
        &mut self,
        x: Value,
        group: &str,
        parts: usize,
        op: CollectiveReduce,
    ) -> Result<Value> {
        let group = group.to_string();
        self.add1(Op::AllReduce { group, parts, op }, &[x])
    }

    /// `x` of the rank `offset` places before this one in the ring of `group`'s `parts`
    /// ranks (this rank's `x` goes `offset` places on).
    pub fn ring_shift(
        &mut self,
        x: Value,
        group: &str,
        parts: usize,
        offset: usize,
    ) -> Result<Value> {
        let group = group.to_string();
        self.add1(
            Op::RingShift {
                group,
                parts,
                offset,
            },
            &[x],
        )
    }

    /// Every rank's `x` concatenated along `dim` in rank order.
    pub fn all_gather(&mut self, x: Value, group: &str, parts: usize, dim: usize) -> Result<Value> {
        let group = group.to_string();
        self.add1(Op::AllGather { group, parts, dim }, &[x])
    }

    /// The sum over ranks of `x`, of which this rank keeps its piece along `dim`.
    pub fn reduce_scatter(
        &mut self,
        x: Value,
        group: &str,
        parts: usize,
        dim: usize,
    ) -> Result<Value> {
        let group = group.to_string();
        self.add1(Op::ReduceScatter { group, parts, dim }, &[x])
    }
}
