//! Arithmetic of a graph at bound dims: the FLOPs of its matmuls and attention, the ops a
//! cost model prices by compute (every other op is memory-bound and priced by bytes). A
//! cost model's closed forms are checked against this count of the graph the trainer runs.

use crate::{eval_shape, Bindings, Graph, Op, Result};

/// FLOPs of a graph (or one node) by op class.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Flops {
    /// `2·m·k·n` per matmul (batch dims included).
    pub matmul: f64,
    /// Attention forward `4·d` per (query, key) pair computed and head (QKᵀ and PV);
    /// backward `10·d` (the scores recomputed, then dV, dP, dQ and dK: FlashAttention-2's
    /// count). Causal attention computes `s(s+1)/2` pairs per row and head; segmented
    /// attention is counted as causal over the whole row, an upper bound (its pairs depend
    /// on the segment ids, which are data).
    pub attention: f64,
}

impl Flops {
    /// Matmul and attention FLOPs together.
    pub fn total(&self) -> f64 {
        self.matmul + self.attention
    }
}

impl std::ops::AddAssign for Flops {
    fn add_assign(&mut self, other: Flops) {
        self.matmul += other.matmul;
        self.attention += other.attention;
    }
}

/// The FLOPs of every node of `graph` with its symbolic dims bound by `bindings`.
pub fn graph_flops(graph: &Graph, bindings: &Bindings) -> Result<Flops> {
    let mut flops = Flops::default();
    for id in graph.ids() {
        flops += node_flops(graph, id, bindings)?;
    }
    Ok(flops)
}

/// Query-key pairs attention computes for `sq` queries against `sk` keys.
fn attention_pairs(sq: usize, sk: usize, causal: bool) -> f64 {
    let (sq, sk) = (sq as f64, sk as f64);
    match causal {
        // Query i (aligned to the end of the keys) sees keys up to sk − sq + i.
        true => sq * (sk - sq) + sq * (sq + 1.0) / 2.0,
        false => sq * sk,
    }
}

/// One node's FLOPs (every op listed, so a new op must say what it costs).
pub fn node_flops(graph: &Graph, id: crate::NodeId, bindings: &Bindings) -> Result<Flops> {
    let node = graph.node(id);
    let shape = |input: usize| eval_shape(&graph.value_type(node.inputs[input]).shape, bindings);
    let zero = Flops::default();
    Ok(match &node.op {
        Op::MatMul => {
            let out = eval_shape(&node.outputs[0].shape, bindings)?;
            let a = shape(0)?;
            let k = a[a.len() - 1] as f64;
            Flops {
                matmul: 2.0 * k * out.iter().product::<usize>() as f64,
                ..zero
            }
        }
        Op::Attention { causal, .. } | Op::AttentionBackward { causal, .. } => {
            // q [b, hq, sq, d], k [b, hkv, sk, d].
            let (q, k) = (shape(0)?, shape(1)?);
            let per_pair = match node.op {
                Op::Attention { .. } => 4.0,
                _ => 10.0,
            };
            let rows_and_heads = (q[0] * q[1]) as f64;
            Flops {
                attention: per_pair
                    * q[3] as f64
                    * rows_and_heads
                    * attention_pairs(q[2], k[2], *causal),
                ..zero
            }
        }
        Op::Input { .. }
        | Op::Parameter { .. }
        | Op::Full { .. }
        | Op::Constant(_)
        | Op::Arange { .. }
        | Op::Random { .. }
        | Op::Unary(_)
        | Op::Binary(_)
        | Op::Compare(_)
        | Op::Select
        | Op::Cast(_)
        | Op::Reduce { .. }
        | Op::Argmax { .. }
        | Op::Reshape { .. }
        | Op::Permute { .. }
        | Op::Slice { .. }
        | Op::Broadcast { .. }
        | Op::Contiguous
        | Op::IndexSelect { .. }
        | Op::IndexAdd { .. }
        | Op::Gather { .. }
        | Op::ScatterAdd { .. }
        | Op::Concat { .. }
        | Op::Softmax
        | Op::LogSoftmax
        | Op::CrossEntropy { .. }
        | Op::CrossEntropyBackward { .. }
        | Op::RmsNorm { .. }
        | Op::RmsNormBackward
        | Op::LayerNorm { .. }
        | Op::LayerNormBackward
        | Op::Rope { .. }
        | Op::Swiglu
        | Op::SwigluBackward
        | Op::AllReduce { .. }
        | Op::AllGather { .. }
        | Op::ReduceScatter { .. }
        | Op::RingShift { .. }
        | Op::Fused(_) => zero,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dim;
    use luoshu_tensor::DType;

    fn input(g: &mut Graph, name: &str, shape: Vec<Dim>) -> crate::Value {
        g.input(name, &shape, DType::F32).unwrap()
    }

    #[test]
    fn matmul_and_causal_attention_flops_are_the_hand_counts() {
        let mut g = Graph::new();
        let s = Dim::sym("s");
        let a = input(&mut g, "a", vec![Dim::fixed(3), s.clone(), Dim::fixed(4)]);
        let b = input(&mut g, "b", vec![Dim::fixed(4), Dim::fixed(5)]);
        let mm = g.add1(Op::MatMul, &[a, b]).unwrap();
        let shape = vec![Dim::fixed(2), Dim::fixed(2), s.clone(), Dim::fixed(8)];
        let q = input(&mut g, "q", shape.clone());
        let k = input(&mut g, "k", shape.clone());
        let v = input(&mut g, "v", shape);
        let att = g
            .add(
                Op::Attention {
                    scale: crate::Float::new(0.5),
                    causal: true,
                    segmented: false,
                },
                &[q, k, v],
            )
            .unwrap();
        g.set_outputs(vec![mm, crate::Value::new(att, 0)]).unwrap();
        let bindings = Bindings::from([("s".to_string(), 6)]);
        let flops = graph_flops(&g, &bindings).unwrap();
        // [3, 6, 4] × [4, 5]: 2·3·6·4·5.
        assert_eq!(flops.matmul, 720.0);
        // 2 rows × 2 heads × 21 causal pairs of 6 tokens × 4·8.
        assert_eq!(flops.attention, 2.0 * 2.0 * 21.0 * 32.0);
        // Two queries aligned to the end of 6 keys see 5 and 6 of them.
        assert_eq!(attention_pairs(2, 6, true), 11.0);
        assert_eq!(attention_pairs(2, 6, false), 12.0);
    }
}
