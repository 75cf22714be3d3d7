//! Deduction rules: classic Megatron cases per op family, and for elementwise add and
//! permute a check that every device's local result is its piece of the full result.

use luoshu_backend::ops::{BinaryOp, ReduceOp, UnaryOp};
use luoshu_dist::{deduce, Axis, DState, Error};
use luoshu_graph::{CollectiveReduce, Dim, Float, Op, TensorType};
use luoshu_tensor::DType;
use proptest::prelude::*;

use Axis::{Duplicate as D, Partial as P, Split as S};

fn t(dims: &[usize]) -> TensorType {
    TensorType::new(dims.iter().map(|&d| Dim::fixed(d)).collect(), DType::F32)
}

fn ti(dims: &[usize]) -> TensorType {
    TensorType::new(dims.iter().map(|&d| Dim::fixed(d)).collect(), DType::I64)
}

fn st(axes: &[(Axis, usize)]) -> DState {
    DState::new(axes).unwrap()
}

fn run(op: &Op, inputs: &[(TensorType, DState)]) -> luoshu_dist::Result<Vec<DState>> {
    let refs: Vec<(&TensorType, &DState)> = inputs.iter().map(|(t, s)| (t, s)).collect();
    deduce(op, &refs)
}

fn ok(op: &Op, inputs: &[(TensorType, DState)]) -> Vec<DState> {
    run(op, inputs).unwrap_or_else(|e| panic!("{e}"))
}

/// Asserts a deduction error whose message contains `needle`.
fn fails(op: &Op, inputs: &[(TensorType, DState)], needle: &str) {
    match run(op, inputs) {
        Err(e @ Error::Deduction { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(needle), "{msg:?} lacks {needle:?}")
        }
        other => panic!("expected a deduction error about {needle:?}, got {other:?}"),
    }
}

const ADD: Op = Op::Binary(BinaryOp::Add);

#[test]
fn matmul_megatron_column_row_and_data_parallel() {
    let (x, w) = (t(&[4, 8]), t(&[8, 6]));
    let column = ok(
        &Op::MatMul,
        &[(x.clone(), st(&[(D, 2)])), (w.clone(), st(&[(S(1), 2)]))],
    );
    assert_eq!(column, [st(&[(S(1), 2)])]);
    let row = ok(
        &Op::MatMul,
        &[(x.clone(), st(&[(S(1), 2)])), (w.clone(), st(&[(S(0), 2)]))],
    );
    assert_eq!(row, [st(&[(P, 2)])]);
    // Data × tensor parallel, with the duplicate axis of x cut to line up with w's axes.
    let dp_tp = ok(
        &Op::MatMul,
        &[
            (x.clone(), st(&[(S(0), 2), (D, 2)])),
            (w.clone(), st(&[(D, 2), (S(1), 2)])),
        ],
    );
    assert_eq!(dp_tp, [st(&[(S(0), 2), (S(1), 2)])]);
    let refined = ok(
        &Op::MatMul,
        &[
            (x.clone(), st(&[(D, 4)])),
            (w.clone(), st(&[(D, 2), (S(1), 2)])),
        ],
    );
    assert_eq!(refined, [st(&[(D, 2), (S(1), 2)])]);
    fails(
        &Op::MatMul,
        &[(x.clone(), st(&[(S(1), 2)])), (w.clone(), st(&[(D, 2)]))],
        "matmul rule",
    );
    fails(
        &Op::MatMul,
        &[(x, st(&[(P, 2)])), (w, st(&[(P, 2)]))],
        "matmul rule",
    );
}

#[test]
fn matmul_batch_dims_split_with_broadcasting() {
    let out = ok(
        &Op::MatMul,
        &[
            (t(&[3, 4, 8]), st(&[(S(0), 3)])),
            (t(&[8, 6]), st(&[(D, 3)])),
        ],
    );
    assert_eq!(out, [st(&[(S(0), 3)])]);
    let both = ok(
        &Op::MatMul,
        &[
            (t(&[2, 4, 8]), st(&[(S(0), 2)])),
            (t(&[2, 8, 6]), st(&[(S(0), 2)])),
        ],
    );
    assert_eq!(both, [st(&[(S(0), 2)])]);
    fails(
        &Op::MatMul,
        &[
            (t(&[1, 4, 8]), st(&[(S(0), 2)])),
            (t(&[2, 8, 6]), st(&[(S(0), 2)])),
        ],
        "broadcasts",
    );
}

#[test]
fn elementwise_states_agree_after_broadcasting() {
    let bias = ok(
        &ADD,
        &[(t(&[4, 8]), st(&[(S(0), 2)])), (t(&[8]), st(&[(D, 2)]))],
    );
    assert_eq!(bias, [st(&[(S(0), 2)])]);
    fails(
        &ADD,
        &[
            (t(&[4, 8]), st(&[(S(0), 2)])),
            (t(&[4, 8]), st(&[(S(1), 2)])),
        ],
        "split different dims",
    );
    fails(
        &ADD,
        &[(t(&[4, 8]), st(&[(S(0), 2)])), (t(&[4, 8]), st(&[(D, 2)]))],
        "broadcast along it",
    );
    fails(
        &ADD,
        &[
            (t(&[4, 8]), st(&[(S(0), 2)])),
            (t(&[1, 8]), st(&[(S(0), 2)])),
        ],
        "broadcasts",
    );
}

#[test]
fn elementwise_partials_pass_only_linear_ops() {
    let (p, d) = (st(&[(P, 2)]), st(&[(D, 2)]));
    let x = t(&[4, 8]);
    assert_eq!(
        ok(&ADD, &[(x.clone(), p.clone()), (x.clone(), p.clone())]),
        vec![p.clone()]
    );
    let mul = Op::Binary(BinaryOp::Mul);
    assert_eq!(
        ok(&mul, &[(x.clone(), d.clone()), (t(&[1]), p.clone())]),
        vec![p.clone()]
    );
    assert_eq!(
        ok(&Op::Unary(UnaryOp::Neg), &[(x.clone(), p.clone())]),
        vec![p.clone()]
    );
    fails(&ADD, &[(x.clone(), p.clone()), (x.clone(), d)], "reduction");
    fails(
        &mul,
        &[(x.clone(), p.clone()), (x.clone(), p.clone())],
        "not linear",
    );
    fails(&Op::Unary(UnaryOp::Exp), &[(x, p)], "all-reduce");
}

#[test]
fn reduce_over_a_split_dim() {
    let sum = Op::Reduce {
        op: ReduceOp::Sum,
        axes: vec![0],
        keepdim: false,
    };
    let x = (t(&[4, 6, 8]), st(&[(S(0), 2), (S(2), 2)]));
    assert_eq!(
        ok(&sum, std::slice::from_ref(&x)),
        [st(&[(P, 2), (S(1), 2)])]
    );
    let kept = Op::Reduce {
        op: ReduceOp::Sum,
        axes: vec![0, 1],
        keepdim: true,
    };
    assert_eq!(
        ok(&kept, std::slice::from_ref(&x)),
        [st(&[(P, 2), (S(2), 2)])]
    );
    let max = Op::Reduce {
        op: ReduceOp::Max,
        axes: vec![2],
        keepdim: false,
    };
    fails(&max, std::slice::from_ref(&x), "all-gather");
    let argmax = Op::Argmax {
        axis: 1,
        keepdim: false,
    };
    assert_eq!(ok(&argmax, &[x]), [st(&[(S(0), 2), (S(1), 2)])]);
}

#[test]
fn views_move_splits_with_their_dims() {
    let merge = Op::Reshape {
        shape: vec![Dim::fixed(24), Dim::fixed(8)],
    };
    assert_eq!(
        ok(&merge, &[(t(&[4, 6, 8]), st(&[(S(0), 2)]))]),
        [st(&[(S(0), 2)])]
    );
    assert_eq!(
        ok(&merge, &[(t(&[4, 6, 8]), st(&[(S(2), 2)]))]),
        [st(&[(S(1), 2)])]
    );
    fails(&merge, &[(t(&[4, 6, 8]), st(&[(S(1), 2)]))], "does not map");
    // An uneven leading piece would not be whole rows of the merged dim.
    fails(&merge, &[(t(&[3, 8, 8]), st(&[(S(0), 2)]))], "does not map");
    // Splitting the hidden dim into heads: the head dim inherits the split.
    let heads = Op::Reshape {
        shape: [6, 4, 2].map(Dim::fixed).to_vec(),
    };
    assert_eq!(
        ok(&heads, &[(t(&[6, 8]), st(&[(S(1), 2)]))]),
        [st(&[(S(1), 2)])]
    );
    let permute = Op::Permute {
        perm: vec![2, 0, 1],
    };
    assert_eq!(
        ok(&permute, &[(t(&[2, 3, 4]), st(&[(S(0), 2), (P, 2)]))]),
        [st(&[(S(1), 2), (P, 2)])]
    );
    let slice = Op::Slice {
        dim: 1,
        start: 0,
        end: 2,
        step: 1,
    };
    assert_eq!(
        ok(&slice, &[(t(&[4, 4]), st(&[(S(0), 2)]))]),
        [st(&[(S(0), 2)])]
    );
    fails(&slice, &[(t(&[4, 4]), st(&[(S(1), 2)]))], "split dim 1");
    let broadcast = Op::Broadcast {
        shape: [3, 4, 8].map(Dim::fixed).to_vec(),
    };
    assert_eq!(
        ok(&broadcast, &[(t(&[4, 8]), st(&[(S(1), 2)]))]),
        [st(&[(S(2), 2)])]
    );
}

#[test]
fn vocabulary_parallel_embedding_and_its_backward() {
    let table = (t(&[16, 4]), st(&[(S(0), 2)]));
    let indices = (ti(&[5]), st(&[(D, 2)]));
    let lookup = ok(
        &Op::IndexSelect { dim: 0 },
        &[table.clone(), indices.clone()],
    );
    assert_eq!(lookup, [st(&[(P, 2)])]);
    let grad = (t(&[5, 4]), st(&[(D, 2)]));
    let backward = ok(&Op::IndexAdd { dim: 0 }, &[table, indices, grad]);
    assert_eq!(backward, [st(&[(S(0), 2)])]);
    let concat = Op::Concat { dim: 1 };
    let piece = (t(&[4, 2]), st(&[(S(0), 2)]));
    assert_eq!(ok(&concat, &[piece.clone(), piece]), [st(&[(S(0), 2)])]);
    fails(&concat, &[(t(&[4, 2]), st(&[(S(1), 2)]))], "split dim 1");
}

#[test]
fn row_wise_nn_ops_keep_row_splits_only() {
    let rows = (t(&[4, 8]), st(&[(S(0), 2)]));
    assert_eq!(
        ok(&Op::Softmax, std::slice::from_ref(&rows)),
        [st(&[(S(0), 2)])]
    );
    fails(&Op::Softmax, &[(t(&[4, 8]), st(&[(S(1), 2)]))], "last dim");
    let weight = (t(&[8]), st(&[(D, 2)]));
    let stats = (t(&[4]), st(&[(S(0), 2)]));
    let backward = ok(&Op::RmsNormBackward, &[rows.clone(), weight, stats, rows]);
    assert_eq!(backward, [st(&[(S(0), 2)]), st(&[(P, 2)])]);
    let ce = Op::CrossEntropy { ignore_index: -1 };
    let targets = (ti(&[4]), st(&[(S(0), 2)]));
    let losses = ok(&ce, &[(t(&[4, 8]), st(&[(S(0), 2)])), targets]);
    assert_eq!(losses, [st(&[(S(0), 2)]), st(&[(S(0), 2)])]);
    let vocab = [(t(&[4, 8]), st(&[(S(1), 2)])), (ti(&[4]), st(&[(D, 2)]))];
    fails(&ce, &vocab, "vocabulary-parallel cross-entropy");
}

#[test]
fn attention_splits_heads_and_batch() {
    let attention = Op::Attention {
        scale: Float::new(0.25),
        causal: true,
        segmented: false,
    };
    let heads = st(&[(S(1), 2)]);
    let (q, kv) = (t(&[2, 4, 8, 16]), t(&[2, 2, 8, 16]));
    let inputs = [
        (q.clone(), heads.clone()),
        (kv.clone(), heads.clone()),
        (kv.clone(), heads.clone()),
    ];
    assert_eq!(ok(&attention, &inputs), [heads.clone(), heads.clone()]);
    // Two key/value heads do not split into four pieces of whole query groups.
    let four = st(&[(S(1), 4)]);
    let uneven = [
        (q.clone(), four.clone()),
        (kv.clone(), four.clone()),
        (kv.clone(), four),
    ];
    fails(&attention, &uneven, "query groups");
    let seq = st(&[(S(2), 2)]);
    fails(
        &attention,
        &[
            (q.clone(), seq.clone()),
            (kv.clone(), seq.clone()),
            (kv.clone(), seq.clone()),
        ],
        "split the queries only",
    );
    // Queries split along the sequence against whole keys and values: exact without a
    // causal mask (every query sees every key); a causal one needs global positions.
    let whole = st(&[(D, 2)]);
    let query_split = [
        (q.clone(), seq.clone()),
        (kv.clone(), whole.clone()),
        (kv.clone(), whole.clone()),
    ];
    fails(
        &attention,
        &query_split,
        "context parallelism builds it per chunk",
    );
    let full = Op::Attention {
        scale: Float::new(0.25),
        causal: false,
        segmented: false,
    };
    assert_eq!(ok(&full, &query_split), [seq.clone(), seq.clone()]);
    let (out, lse) = (t(&[2, 4, 8, 16]), t(&[2, 4, 8]));
    let backward = Op::AttentionBackward {
        scale: Float::new(0.25),
        causal: false,
        segmented: false,
        lse_grad: false,
    };
    let grads = ok(
        &backward,
        &[
            (q.clone(), seq.clone()),
            (kv.clone(), whole.clone()),
            (kv.clone(), whole),
            (out.clone(), seq.clone()),
            (lse, seq.clone()),
            (out, seq.clone()),
        ],
    );
    assert_eq!(grads, [seq, st(&[(P, 2)]), st(&[(P, 2)])]);
    fails(
        &attention,
        &[(q, heads), (kv.clone(), st(&[(D, 2)])), (kv, st(&[(D, 2)]))],
        "same state",
    );
}

/// Segment ids of packed rows follow the batch like tokens: split with a batch split,
/// duplicated over head splits.
#[test]
fn segmented_attention_takes_segment_ids_like_tokens() {
    let attention = Op::Attention {
        scale: Float::new(0.25),
        causal: true,
        segmented: true,
    };
    let (q, kv, ids) = (t(&[2, 4, 8, 16]), t(&[2, 2, 8, 16]), ti(&[2, 8]));
    let with = |state: DState, ids_state: DState| {
        [
            (q.clone(), state.clone()),
            (kv.clone(), state.clone()),
            (kv.clone(), state),
            (ids.clone(), ids_state),
        ]
    };
    let (batch, heads, dup) = (st(&[(S(0), 2)]), st(&[(S(1), 2)]), st(&[(D, 2)]));
    let out = ok(&attention, &with(batch.clone(), batch.clone()));
    assert_eq!(out, [batch.clone(), batch.clone()]);
    let out = ok(&attention, &with(heads.clone(), dup.clone()));
    assert_eq!(out, [heads.clone(), heads.clone()]);
    fails(&attention, &with(heads, batch.clone()), "segment ids");
    fails(&attention, &with(batch, dup), "segment ids");
}

#[test]
fn collectives_resolve_partial_and_split_axes() {
    let x = t(&[4, 8]);
    let all_reduce = Op::AllReduce {
        group: "tp".into(),
        parts: 2,
        op: CollectiveReduce::Sum,
    };
    assert_eq!(
        ok(&all_reduce, &[(x.clone(), st(&[(S(0), 2), (P, 2)]))]),
        [st(&[(S(0), 2), (D, 2)])]
    );
    let all_gather = Op::AllGather {
        group: "tp".into(),
        parts: 2,
        dim: 1,
    };
    assert_eq!(
        ok(&all_gather, &[(x.clone(), st(&[(D, 2), (S(1), 2)]))]),
        [st(&[(D, 4)])]
    );
    let reduce_scatter = Op::ReduceScatter {
        group: "tp".into(),
        parts: 2,
        dim: 0,
    };
    assert_eq!(
        ok(&reduce_scatter, &[(x.clone(), st(&[(P, 2)]))]),
        [st(&[(S(0), 2)])]
    );
    // A ring shift keeps whatever state it is given: a split stays split, partial stays
    // partial.
    let ring_shift = Op::RingShift {
        group: "cp".into(),
        parts: 2,
        offset: 1,
    };
    for state in [st(&[(D, 2), (S(1), 2)]), st(&[(P, 2), (S(0), 2)])] {
        assert_eq!(ok(&ring_shift, &[(x.clone(), state.clone())]), [state]);
    }
    fails(&all_reduce, &[(x, st(&[(P, 4)]))], "extent 4");
}

#[test]
fn leaves_and_inconsistent_inputs_are_errors() {
    let input = Op::Input {
        name: "tokens".into(),
        shape: vec![Dim::fixed(4)],
        dtype: DType::I64,
    };
    fails(&input, &[], "leaf");
    fails(
        &ADD,
        &[(t(&[4]), st(&[(D, 2)])), (t(&[4]), st(&[(D, 4)]))],
        "devices",
    );
    fails(
        &ADD,
        &[(t(&[4]), st(&[(S(1), 2)])), (t(&[4]), st(&[(D, 2)]))],
        "rank-1",
    );
}

// ----- shard-level check of elementwise add and permute on host tensors -----

/// A row-major host tensor.
#[derive(Debug, Clone, PartialEq)]
struct Host {
    dims: Vec<usize>,
    data: Vec<f32>,
}

/// Every multi-index of `dims`, in row-major order.
fn indices(dims: &[usize]) -> Vec<Vec<usize>> {
    let total: usize = dims.iter().product();
    (0..total)
        .map(|mut flat| {
            let mut index = vec![0; dims.len()];
            for (i, &n) in index.iter_mut().zip(dims).rev() {
                *i = flat % n;
                flat /= n;
            }
            index
        })
        .collect()
}

impl Host {
    fn iota(dims: &[usize], scale: f32) -> Host {
        let n: usize = dims.iter().product();
        Host {
            dims: dims.to_vec(),
            data: (0..n).map(|i| i as f32 * scale).collect(),
        }
    }

    fn at(&self, index: &[usize]) -> f32 {
        let flat = index
            .iter()
            .zip(&self.dims)
            .fold(0, |acc, (&i, &n)| acc * n + i);
        self.data[flat]
    }

    fn piece(&self, shard: &[std::ops::Range<usize>]) -> Host {
        let dims: Vec<usize> = shard.iter().map(|r| r.len()).collect();
        let data = indices(&dims)
            .iter()
            .map(|i| {
                let global: Vec<usize> = i.iter().zip(shard).map(|(&k, r)| r.start + k).collect();
                self.at(&global)
            })
            .collect();
        Host { dims, data }
    }

    fn permute(&self, perm: &[usize]) -> Host {
        let dims: Vec<usize> = perm.iter().map(|&p| self.dims[p]).collect();
        let data = indices(&dims)
            .iter()
            .map(|i| {
                let mut source = vec![0; perm.len()];
                for (k, &p) in perm.iter().enumerate() {
                    source[p] = i[k];
                }
                self.at(&source)
            })
            .collect();
        Host { dims, data }
    }

    /// NumPy-broadcast `self + other`.
    fn add(&self, other: &Host) -> Host {
        let rank = self.dims.len().max(other.dims.len());
        let dim_of = |h: &Host, k: usize| {
            (k + h.dims.len())
                .checked_sub(rank)
                .map_or(1, |j| h.dims[j])
        };
        let dims: Vec<usize> = (0..rank)
            .map(|k| match (dim_of(self, k), dim_of(other, k)) {
                (1, n) | (n, 1) => n,
                (n, _) => n,
            })
            .collect();
        let read = |h: &Host, i: &[usize]| {
            let local: Vec<usize> = i[rank - h.dims.len()..]
                .iter()
                .zip(&h.dims)
                .map(|(&k, &n)| if n == 1 { 0 } else { k })
                .collect();
            h.at(&local)
        };
        let data = indices(&dims)
            .iter()
            .map(|i| read(self, i) + read(other, i))
            .collect();
        Host { dims, data }
    }
}

/// A shape of rank 1..=3 and up to two distinct device axes over it (extents 2 or 3; some
/// splits cut a dim into more pieces than it has elements, leaving empty pieces).
fn shape_and_axes() -> impl Strategy<Value = (Vec<usize>, Vec<(Axis, usize)>)> {
    (1..=3usize).prop_flat_map(|rank| {
        (
            prop::collection::vec(1..=4usize, rank),
            prop::collection::vec((0..=rank, 2..=3usize), 0..=2),
        )
            .prop_map(move |(dims, picks)| {
                let mut axes: Vec<(Axis, usize)> = Vec::new();
                for (pick, extent) in picks {
                    let axis = if pick == rank { D } else { S(pick) };
                    if axes.iter().all(|&(a, _)| a != axis) {
                        axes.push((axis, extent));
                    }
                }
                (dims, axes)
            })
    })
}

/// Every device's local result equals its piece of the full result under `out_state`.
fn check_pieces(
    out_state: &DState,
    full_out: &Host,
    local: impl Fn(usize) -> Host,
) -> Result<(), TestCaseError> {
    for device in 0..out_state.devices {
        let shard = out_state.shard(device, &full_out.dims).unwrap();
        prop_assert_eq!(local(device), full_out.piece(&shard), "device {}", device);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn permuted_pieces_are_pieces_of_the_permutation(
        (dims, axes) in shape_and_axes(),
        seed in any::<u64>(),
    ) {
        let rank = dims.len();
        let mut perm: Vec<usize> = (0..rank).collect();
        perm.rotate_left(seed as usize % rank);
        if seed % 2 == 1 {
            perm.reverse();
        }
        let state = st(&axes);
        let out = ok(&Op::Permute { perm: perm.clone() }, &[(t(&dims), state.clone())]);
        let x = Host::iota(&dims, 1.0);
        check_pieces(&out[0], &x.permute(&perm), |device| {
            x.piece(&state.shard(device, &dims).unwrap()).permute(&perm)
        })?;
    }

    #[test]
    fn added_pieces_are_pieces_of_the_broadcast_sum(
        (dims, axes) in shape_and_axes(),
        dropped in 0..3usize,
        ones in prop::collection::vec(any::<bool>(), 3),
    ) {
        let rank = dims.len();
        let dropped = dropped.min(rank - 1);
        let y_dims: Vec<usize> = (dropped..rank)
            .map(|k| if ones[k] { 1 } else { dims[k] })
            .collect();
        // y splits what x splits unless it broadcasts there, where it holds copies.
        let mut y_axes: Vec<(Axis, usize)> = Vec::new();
        for &(axis, extent) in &axes {
            let axis = match axis {
                S(d) if d >= dropped && (y_dims[d - dropped] == dims[d]) => S(d - dropped),
                _ => D,
            };
            match y_axes.last_mut() {
                Some((D, e)) if axis == D => *e *= extent,
                _ => y_axes.push((axis, extent)),
            }
        }
        let y_state = st(&y_axes);
        let x_state = st(&axes);
        let out = ok(&ADD, &[(t(&dims), x_state.clone()), (t(&y_dims), y_state.clone())]);
        prop_assert_eq!(&out[0], &x_state);
        let (x, y) = (Host::iota(&dims, 1.0), Host::iota(&y_dims, 1000.0));
        check_pieces(&out[0], &x.add(&y), |device| {
            let xs = x.piece(&x_state.shard(device, &dims).unwrap());
            let ys = y.piece(&y_state.shard(device, &y_dims).unwrap());
            xs.add(&ys)
        })?;
    }
}
