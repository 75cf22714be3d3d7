//! Packed training is the same training: for the same documents, a single-device trainer
//! fed packed rows (several documents per row, attention and RoPE per document) reaches the
//! same losses, gradient norms, parameters and AdamW moments as one fed one document per
//! row (fp32, the equivalence harness's tolerance), and packing needs fewer rows.
use luoshu_backend::cpu::CpuBackend;
use luoshu_data::{GlobalBatch, LengthBucketLoader, LoaderConfig};
use luoshu_train::parallel::compare::{compare_stats, compare_stores};
use luoshu_train::parallel::conformance::{model, train_config};
use luoshu_train::Trainer;
use std::sync::Arc;

/// Documents of 1 to 40 tokens (chunked at the model's 16 positions), with a pattern.
fn documents() -> Vec<Vec<u32>> {
    let lengths = [
        2, 17, 5, 3, 9, 12, 2, 40, 6, 15, 4, 8, 11, 3, 2, 7, 13, 16, 5, 9,
    ];
    lengths
        .iter()
        .enumerate()
        .map(|(d, &n)| (0..n as u32).map(|i| (7 * d as u32 + 3 * i) % 32).collect())
        .collect()
}

fn loader(packing: bool) -> LengthBucketLoader {
    let config = LoaderConfig {
        max_len: 16,
        bucket_edges: vec![4, 8, 16],
        tokens_per_micro_batch: 32,
        global_batch_tokens: 60,
        seed: 11,
        packing,
    };
    LengthBucketLoader::new(config, &documents(), 0).unwrap()
}

fn rows(batch: &GlobalBatch) -> usize {
    let micro = batch.buckets.iter().flat_map(|b| &b.micro_batches);
    micro.map(|m| m.rows).sum()
}

#[test]
fn packed_and_unpacked_training_agree() {
    let trainer = || Trainer::new(model(), train_config(), Arc::new(CpuBackend::new()), 3);
    let (mut unpacked, mut packed) = (trainer().unwrap(), trainer().unwrap());
    let (mut one_per_row, mut several_per_row) = (loader(false), loader(true));
    let mut fewer_rows = false;
    for step in 0..4 {
        let (a, b) = (one_per_row.next_batch(), several_per_row.next_batch());
        assert_eq!(
            a.target_tokens, b.target_tokens,
            "step {step}: same documents"
        );
        assert!(rows(&b) <= rows(&a));
        fewer_rows |= rows(&b) < rows(&a);
        let want = unpacked.train_step(&a).unwrap();
        let got = packed.train_step(&b).unwrap();
        let what = format!("packed step {step}");
        compare_stats(&what, &got, &want).unwrap();
        let (got, want) = (packed.state().unwrap(), unpacked.state().unwrap());
        compare_stores(&what, &got.params, &want.params, false).unwrap();
        compare_stores(&what, &got.adam_m, &want.adam_m, false).unwrap();
        compare_stores(&what, &got.adam_v, &want.adam_v, true).unwrap();
    }
    assert!(fewer_rows, "the documents were packed");
    // Evaluation over packed rows agrees too.
    let (a, b) = (
        unpacked.evaluate(&one_per_row.all_batches()).unwrap(),
        packed.evaluate(&several_per_row.all_batches()).unwrap(),
    );
    assert!((a - b).abs() <= 1e-5 * a.abs(), "{a} vs {b}");
}
