//! Training steps: the loss falls, micro-batch splitting does not change the gradient,
//! runs are bit-identical, and a restored state continues exactly.

use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::Backend;
use luoshu_data::{BucketBatch, GlobalBatch, MicroBatch, IGNORE_INDEX};
use luoshu_model::{ModelConfig, Precision};
use luoshu_tensor::DType;
use luoshu_train::{LrSchedule, TrainConfig, Trainer};
use std::sync::Arc;

fn small_config() -> ModelConfig {
    ModelConfig {
        vocab_size: 32,
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        d_ff: 48,
        max_seq_len: 16,
        ..ModelConfig::default()
    }
}

fn train_config() -> TrainConfig {
    TrainConfig {
        schedule: LrSchedule {
            peak_lr: 1e-2,
            min_lr: 1e-3,
            warmup_steps: 3,
            total_steps: 40,
        },
        ..TrainConfig::default()
    }
}

fn backend() -> Arc<dyn Backend> {
    Arc::new(CpuBackend::new())
}

fn trainer(seed: u64) -> Trainer {
    Trainer::new(small_config(), train_config(), backend(), seed).unwrap()
}

/// A sequence of `len + 1` tokens with a learnable pattern.
fn sequence(start: u32, len: usize) -> Vec<u32> {
    (0..=len as u32).map(|i| (start + 3 * i) % 32).collect()
}

/// `seqs` (each `len + 1` tokens) packed into one micro-batch of `seq_len` columns.
fn pack(seqs: &[Vec<u32>], seq_len: usize) -> MicroBatch {
    let mut inputs = vec![0i64; seqs.len() * seq_len];
    let mut targets = vec![IGNORE_INDEX; seqs.len() * seq_len];
    let mut target_tokens = 0;
    for (r, s) in seqs.iter().enumerate() {
        for t in 0..s.len() - 1 {
            inputs[r * seq_len + t] = s[t] as i64;
            targets[r * seq_len + t] = s[t + 1] as i64;
        }
        target_tokens += s.len() - 1;
    }
    MicroBatch {
        rows: seqs.len(),
        seq_len,
        inputs,
        targets,
        target_tokens,
        documents: None,
    }
}

/// A global batch from buckets of `(seq_len, micro-batches of sequences)`.
fn global(buckets: Vec<(usize, Vec<Vec<Vec<u32>>>)>) -> GlobalBatch {
    let buckets: Vec<BucketBatch> = buckets
        .into_iter()
        .map(|(seq_len, micros)| BucketBatch {
            seq_len,
            micro_batches: micros.iter().map(|m| pack(m, seq_len)).collect(),
        })
        .collect();
    GlobalBatch::of_buckets(buckets)
}

fn seqs() -> Vec<Vec<u32>> {
    vec![
        sequence(1, 3),
        sequence(5, 7),
        sequence(2, 16),
        sequence(9, 4),
        sequence(11, 12),
    ]
}

/// Every sequence in one micro-batch padded to 16.
fn one_micro_batch() -> GlobalBatch {
    global(vec![(16, vec![seqs()])])
}

#[test]
fn splitting_into_buckets_and_micro_batches_keeps_the_gradient() {
    let s = seqs();
    let split = global(vec![
        (4, vec![vec![s[0].clone(), s[3].clone()]]),
        (8, vec![vec![s[1].clone()]]),
        (16, vec![vec![s[2].clone()], vec![s[4].clone()]]),
    ]);
    let mut t = trainer(3);
    let (loss_one, grads_one) = t.gradients(&one_micro_batch()).unwrap();
    let (loss_split, grads_split) = t.gradients(&split).unwrap();
    assert!(
        (loss_one - loss_split).abs() < 1e-5 * loss_one,
        "{loss_one} vs {loss_split}"
    );
    for ((name, _), (a, b)) in t.params().iter().zip(grads_one.iter().zip(&grads_split)) {
        let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
        let scale = a.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(scale > 0.0, "{name} has no gradient");
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-4 * scale, "{name}: {x} vs {y}");
        }
    }
}

#[test]
fn loss_decreases_on_a_repeated_batch() {
    let mut t = trainer(1);
    let batch = one_micro_batch();
    let initial = t.evaluate(std::slice::from_ref(&batch)).unwrap();
    // At init the logits are near zero, so the loss is near ln(vocab).
    assert!((initial - 32f64.ln()).abs() < 0.1, "initial loss {initial}");
    let losses: Vec<f64> = (0..30)
        .map(|_| t.train_step(&batch).unwrap().loss)
        .collect();
    assert!((losses[0] - initial).abs() < 1e-5);
    let last = t.evaluate(std::slice::from_ref(&batch)).unwrap();
    assert!(
        last < 0.5 * initial,
        "loss went from {initial} to {last}: {losses:?}"
    );
    assert_eq!(t.step(), 30);
}

#[test]
fn same_seed_gives_bit_identical_runs_and_restore_continues_exactly() {
    let batch = one_micro_batch();
    let run = |t: &mut Trainer, steps: usize| -> Vec<u64> {
        (0..steps)
            .map(|_| t.train_step(&batch).unwrap().loss.to_bits())
            .collect()
    };
    let mut a = trainer(5);
    let mut b = trainer(5);
    assert_eq!(run(&mut a, 3), run(&mut b, 3));
    let snapshot = a.state().unwrap();
    let continued = run(&mut a, 2);
    // A trainer from another seed, restored, continues exactly like the original.
    let mut c = trainer(99);
    c.restore(snapshot.clone()).unwrap();
    assert_eq!(c.step(), 3);
    assert_eq!(run(&mut c, 2), continued);
    // The snapshot was copied, not updated in place by the later steps.
    let mut d = trainer(0);
    d.restore(snapshot).unwrap();
    assert_eq!(run(&mut d, 2), continued);
    assert_ne!(run(&mut trainer(6), 1)[0], run(&mut trainer(5), 1)[0]);
}

#[test]
fn bad_inputs_are_errors() {
    let mut t = trainer(0);
    let too_long = global(vec![(32, vec![vec![sequence(0, 20)]])]);
    let msg = t.train_step(&too_long).unwrap_err().to_string();
    assert!(msg.contains("max_seq_len"), "{msg}");
    let empty = GlobalBatch {
        buckets: vec![],
        target_tokens: 0,
    };
    assert!(t.train_step(&empty).is_err());
    let bad_train = TrainConfig {
        grad_clip: -1.0,
        ..TrainConfig::default()
    };
    assert!(Trainer::new(small_config(), bad_train, backend(), 0).is_err());
    let mut other = small_config();
    other.d_model = 64;
    let state = Trainer::new(other, train_config(), backend(), 0)
        .unwrap()
        .state()
        .unwrap();
    let msg = t.restore(state).unwrap_err().to_string();
    assert!(msg.contains("embed"), "{msg}");
}

#[test]
fn bf16_mixed_precision_tracks_f32_with_f32_master_weights() {
    let batch = one_micro_batch();
    let mixed_config = TrainConfig {
        precision: Precision::Bf16Mixed,
        ..train_config()
    };
    let mut mixed = Trainer::new(small_config(), mixed_config, backend(), 4).unwrap();
    let mut full = trainer(4);
    let (loss_mixed, grads) = mixed.gradients(&batch).unwrap();
    let (loss_full, _) = full.gradients(&batch).unwrap();
    assert!(
        (loss_mixed - loss_full).abs() < 2e-2,
        "{loss_mixed} vs {loss_full}"
    );
    assert!(grads.iter().all(|g| g.dtype() == DType::F32));
    let first = mixed.train_step(&batch).unwrap().loss;
    let last = (0..20)
        .map(|_| mixed.train_step(&batch).unwrap().loss)
        .last()
        .unwrap();
    assert!(
        last < 0.7 * first,
        "bf16-mixed loss went from {first} to {last}"
    );
    assert!(mixed
        .params()
        .tensors()
        .iter()
        .all(|p| p.dtype() == DType::F32));
}
