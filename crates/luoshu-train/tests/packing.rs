//! Packed training is the same training: for the same documents, trainers fed packed rows
//! (several documents per row, attention and RoPE per document) reach the same losses,
//! gradient norms, parameters and AdamW moments as one device fed one document per row
//! (fp32, the equivalence harness's tolerance), on one device and under dp2, tp2, pp2 and
//! dp2tp2; random length mixes, packed, flow through pp2, pp4 and dp2pp2 pipelines and
//! through hot switching between dp2 and pp2 with the same results; packed rows split by
//! context parallelism (cp2, dp2cp2, tp2cp2, and cp2 as a hot-switching bucket strategy)
//! agree too; and packing needs fewer rows.
use luoshu_backend::cpu::CpuBackend;
use luoshu_comm::threads;
use luoshu_data::{GlobalBatch, LengthBucketLoader, LoaderConfig};
use luoshu_dist::{Mesh, Strategy};
use luoshu_train::hot::{BucketStrategies, HotSwitchTrainer};
use luoshu_train::parallel::compare::{compare_stats, compare_stores};
use luoshu_train::parallel::conformance::{model, train_config, SEED};
use luoshu_train::parallel::ParallelTrainer;
use luoshu_train::{StepStats, Trainer, TrainerState};
use proptest::prelude::*;
use std::sync::Arc;

const STEPS: usize = 4;

/// Documents of 1 to 40 tokens (chunked at the model's 16 positions), with a pattern.
fn documents() -> Vec<Vec<u32>> {
    documents_of(&[
        2, 17, 5, 3, 9, 12, 2, 40, 6, 15, 4, 8, 11, 3, 2, 7, 13, 16, 5, 9,
    ])
}

/// Documents of the given lengths, with a pattern.
fn documents_of(lengths: &[usize]) -> Vec<Vec<u32>> {
    lengths
        .iter()
        .enumerate()
        .map(|(d, &n)| (0..n as u32).map(|i| (7 * d as u32 + 3 * i) % 32).collect())
        .collect()
}

fn loader(packing: bool) -> LengthBucketLoader {
    loader_of(&documents(), packing)
}

fn loader_of(documents: &[Vec<u32>], packing: bool) -> LengthBucketLoader {
    let config = LoaderConfig {
        max_len: 16,
        // Odd edges, so tensor parallelism pads packed rows.
        bucket_edges: vec![5, 9, 16],
        tokens_per_micro_batch: 32,
        global_batch_tokens: 60,
        seed: 11,
        packing,
    };
    LengthBucketLoader::new(config, documents, 0).unwrap()
}

fn rows(batch: &GlobalBatch) -> usize {
    let micro = batch.buckets.iter().flat_map(|b| &b.micro_batches);
    micro.map(|m| m.rows).sum()
}

fn trainer() -> Trainer {
    Trainer::new(model(), train_config(), Arc::new(CpuBackend::new()), SEED).unwrap()
}

/// One device fed one document per row: every step's stats and the final state.
fn unpacked_reference() -> (Vec<StepStats>, TrainerState) {
    unpacked_reference_of(&documents(), STEPS)
}

fn unpacked_reference_of(documents: &[Vec<u32>], steps: usize) -> (Vec<StepStats>, TrainerState) {
    let (mut trainer, mut batches) = (trainer(), loader_of(documents, false));
    let stats = (0..steps)
        .map(|_| trainer.train_step(&batches.next_batch()).unwrap())
        .collect();
    (stats, trainer.state().unwrap())
}

/// Rank 0's stats and gathered state after `steps` packed steps under `strategy`.
fn packed_run(
    documents: &[Vec<u32>],
    strategy: Strategy,
    steps: usize,
) -> (Vec<StepStats>, TrainerState) {
    let mut results = threads::run(strategy.devices(), |comm| {
        let mesh = Mesh::new(strategy, comm).unwrap();
        let backend = Arc::new(CpuBackend::new());
        let mut trainer =
            ParallelTrainer::new(model(), train_config(), backend, mesh, SEED).unwrap();
        let mut batches = loader_of(documents, true);
        let stats: Vec<StepStats> = (0..steps)
            .map(|_| trainer.train_step(&batches.next_batch()).unwrap())
            .collect();
        (stats, trainer.gather_state().unwrap())
    });
    let (stats, state) = results.remove(0);
    (stats, state.expect("rank 0 holds the gathered state"))
}

/// `got` (stats of every step, final state) agrees with one device's `want`.
fn compare_runs(
    what: &str,
    got: &(Vec<StepStats>, TrainerState),
    want: &(Vec<StepStats>, TrainerState),
) {
    assert_eq!(got.0.len(), want.0.len(), "{what}: steps");
    for (step, (g, w)) in got.0.iter().zip(&want.0).enumerate() {
        compare_stats(&format!("{what} step {step}"), g, w).unwrap();
    }
    compare_states(what, &got.1, &want.1);
}

/// `got` agrees with `want` in parameters and both AdamW moments.
fn compare_states(what: &str, got: &TrainerState, want: &TrainerState) {
    compare_stores(what, &got.params, &want.params, false).unwrap();
    compare_stores(what, &got.adam_m, &want.adam_m, false).unwrap();
    compare_stores(what, &got.adam_v, &want.adam_v, true).unwrap();
}

#[test]
fn packed_and_unpacked_training_agree_on_one_device() {
    let mut unpacked = trainer();
    let mut packed = trainer();
    let (mut one_per_row, mut several_per_row) = (loader(false), loader(true));
    let mut fewer_rows = false;
    for step in 0..STEPS {
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
        compare_states(&what, &packed.state().unwrap(), &unpacked.state().unwrap());
    }
    assert!(fewer_rows, "the documents were packed");
    // Evaluation over packed rows agrees too.
    let (a, b) = (
        unpacked.evaluate(&one_per_row.all_batches()).unwrap(),
        packed.evaluate(&several_per_row.all_batches()).unwrap(),
    );
    assert!((a - b).abs() <= 1e-5 * a.abs(), "{a} vs {b}");
}

/// Packed rows under data, tensor (sequence-parallel, rows padded to a multiple of tp)
/// and pipeline parallelism: every stage gets the micro-batch's segments and RoPE rows.
#[test]
fn packed_training_under_dp2_tp2_pp2_dp2tp2_agrees_with_one_device_unpacked() {
    let want = unpacked_reference();
    for strategy in ["dp2", "tp2", "pp2", "dp2tp2"] {
        let strategy: Strategy = strategy.parse().unwrap();
        let got = packed_run(&documents(), strategy, STEPS);
        compare_runs(&format!("{strategy} packed"), &got, &want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4))]

    /// Micro-batches of different lengths and row layouts flow through 2- and 4-stage
    /// pipelines (and data-parallel pipelines) without deadlock or shape mix-ups.
    #[test]
    fn random_length_mixes_flow_through_pipelines_packed(
        lengths in prop::collection::vec(1usize..=40, 6..16)
    ) {
        let documents = documents_of(&lengths);
        let want = unpacked_reference_of(&documents, 2);
        for strategy in ["pp2", "pp4", "dp2pp2"] {
            let strategy: Strategy = strategy.parse().unwrap();
            let got = packed_run(&documents, strategy, 2);
            compare_runs(&format!("{strategy} packed, lengths {lengths:?}"), &got, &want);
        }
    }
}

/// Hot switching packs within each bucket: short buckets under dp2, the longest under
/// pp2 (which updates), fed packed rows, equal one device fed one document per row.
#[test]
fn hot_switching_over_packed_buckets_agrees_with_one_device_unpacked() {
    let got = hot_packed_run("9:dp2,16:pp2", "pp2");
    compare_runs("hot 9:dp2,16:pp2 packed", &got, &unpacked_reference());
}

/// Rank 0's stats and gathered state after packed steps hot-switching over the bucket
/// strategies `buckets` on 2 ranks, updating under `update`.
fn hot_packed_run(buckets: &str, update: &str) -> (Vec<StepStats>, TrainerState) {
    let buckets: BucketStrategies = buckets.parse().unwrap();
    let update: Strategy = update.parse().unwrap();
    let mut results = threads::run(2, |world| {
        let backend = Arc::new(CpuBackend::new());
        let mut trainer = HotSwitchTrainer::new(
            model(),
            train_config(),
            backend,
            world,
            buckets.clone(),
            update,
            SEED,
        )
        .unwrap();
        let mut batches = loader(true);
        let stats: Vec<StepStats> = (0..STEPS)
            .map(|_| trainer.train_step(&batches.next_batch()).unwrap().step)
            .collect();
        (stats, trainer.gather_state().unwrap())
    });
    let (stats, state) = results.remove(0);
    (stats, state.expect("rank 0 holds the gathered state"))
}

/// Context parallelism over packed rows: every row is cut into 2·cp chunks, documents
/// cross the chunk borders, and each rank feeds the rope rows of its tokens and the whole
/// rows' segment ids; alone, with data and tensor parallelism, and as the longest bucket's
/// strategy under hot switching (updates under dp2).
#[test]
fn packed_training_under_context_parallelism_agrees_with_one_device_unpacked() {
    let want = unpacked_reference();
    for strategy in ["cp2", "dp2cp2", "tp2cp2"] {
        let strategy: Strategy = strategy.parse().unwrap();
        let got = packed_run(&documents(), strategy, STEPS);
        compare_runs(&format!("{strategy} packed"), &got, &want);
    }
    let got = hot_packed_run("9:dp2,16:cp2", "dp2");
    compare_runs("hot 9:dp2,16:cp2 packed", &got, &want);
}
