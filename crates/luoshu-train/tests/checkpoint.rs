//! Checkpoints: a saved state loads back exactly, damage is reported while the previous
//! checkpoint survives, only the newest k are kept, and mismatches are refused.

use luoshu_backend::cpu::CpuBackend;
use luoshu_data::{LengthBucketLoader, LoaderConfig, LoaderPosition};
use luoshu_model::{ModelConfig, ParamStore};
use luoshu_train::checkpoint::{self, CheckpointMeta};
use luoshu_train::{TrainConfig, Trainer, TrainerState};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn model() -> ModelConfig {
    ModelConfig {
        vocab_size: 32,
        d_model: 16,
        n_layers: 1,
        n_heads: 2,
        n_kv_heads: 2,
        d_ff: 24,
        max_seq_len: 8,
        ..ModelConfig::default()
    }
}

/// A fresh, empty directory under the system temp dir.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("luoshu-ckpt-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn loader() -> LengthBucketLoader {
    let docs: Vec<Vec<u32>> = (0..12u32)
        .map(|d| (0..(3 + d % 6)).map(|i| (d * 7 + i * 3) % 32).collect())
        .collect();
    let config = LoaderConfig {
        max_len: 8,
        bucket_edges: vec![4, 8],
        tokens_per_micro_batch: 16,
        global_batch_tokens: 16,
        seed: 1,
        packing: false,
    };
    LengthBucketLoader::new(config, &docs, 0).unwrap()
}

/// A trainer after `steps` steps, and the loader position after them.
fn trained(steps: usize) -> (TrainerState, LoaderPosition) {
    let backend = Arc::new(CpuBackend::new());
    let mut trainer = Trainer::new(model(), TrainConfig::default(), backend, 3).unwrap();
    let mut data = loader();
    for _ in 0..steps {
        trainer.train_step(&data.next_batch()).unwrap();
    }
    (trainer.state().unwrap(), data.position())
}

fn save(root: &Path, state: &TrainerState, data: LoaderPosition, keep: usize) -> PathBuf {
    let model = model();
    let meta = CheckpointMeta {
        model: &model,
        data,
        seed: 3,
        tokenizer_hash: "tok",
    };
    checkpoint::save(root, state, &meta, keep).unwrap()
}

fn assert_same(a: &ParamStore, b: &ParamStore) {
    assert_eq!(a.names(), b.names());
    for (x, y) in a.tensors().iter().zip(b.tensors()) {
        assert_eq!(x.dims(), y.dims());
        let (x, y) = (x.to_vec::<f32>().unwrap(), y.to_vec::<f32>().unwrap());
        assert!(x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()));
    }
}

#[test]
fn saved_state_loads_back_bit_for_bit() {
    let root = temp_dir("roundtrip");
    let (state, position) = trained(2);
    let dir = save(&root, &state, position, 2);
    assert!(dir.ends_with("step-2"));
    let loaded = checkpoint::load_latest(&root).unwrap();
    assert_eq!(loaded.state.step, 2);
    assert_eq!(loaded.data, position);
    assert_eq!((loaded.seed, loaded.model.clone()), (3, model()));
    assert_same(&loaded.state.params, &state.params);
    assert_same(&loaded.state.adam_m, &state.adam_m);
    assert_same(&loaded.state.adam_v, &state.adam_v);
    loaded.check_model(&model()).unwrap();
    loaded.check_tokenizer("tok").unwrap();
    let err = loaded.check_tokenizer("other").unwrap_err().to_string();
    assert!(err.contains("tokenizer"), "{err}");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn keeps_only_the_newest_checkpoints() {
    let root = temp_dir("prune");
    for steps in 1..=4 {
        let (state, position) = trained(steps);
        save(&root, &state, position, 2);
    }
    assert_eq!(checkpoint::list_steps(&root).unwrap(), vec![3, 4]);
    assert_eq!(checkpoint::load_latest(&root).unwrap().state.step, 4);
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn damaged_checkpoint_is_reported_and_the_previous_one_still_loads() {
    let root = temp_dir("corrupt");
    for steps in [1, 2] {
        let (state, position) = trained(steps);
        save(&root, &state, position, 3);
    }
    // Truncate the newest parameters file.
    let damaged = root.join("step-2").join("model.safetensors");
    let bytes = std::fs::read(&damaged).unwrap();
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    let err = checkpoint::load_latest(&root).unwrap_err().to_string();
    assert!(err.contains("corrupt or truncated"), "{err}");
    assert!(
        err.contains("step-1"),
        "the error should name the older checkpoint: {err}"
    );
    assert_eq!(
        checkpoint::load(&root.join("step-1")).unwrap().state.step,
        1
    );

    // A flipped byte (same length) is caught too.
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    std::fs::write(&damaged, &flipped).unwrap();
    let err = checkpoint::load(&root.join("step-2"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("corrupt or truncated"), "{err}");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn checkpoint_of_another_model_is_refused_naming_both() {
    let root = temp_dir("other-model");
    let (state, position) = trained(1);
    save(&root, &state, position, 1);
    let loaded = checkpoint::load_latest(&root).unwrap();
    let other = ModelConfig {
        d_model: 32,
        ..model()
    };
    let err = loaded.check_model(&other).unwrap_err().to_string();
    assert!(
        err.contains("d_model: 16") && err.contains("d_model: 32"),
        "{err}"
    );
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn parameters_are_readable_as_plain_safetensors() {
    let root = temp_dir("format");
    let (state, position) = trained(1);
    let dir = save(&root, &state, position, 1);
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let embed = file.tensor("embed").unwrap();
    assert_eq!(embed.shape(), &[32, 16]);
    assert_eq!(embed.dtype(), safetensors::Dtype::F32);
    let opt = std::fs::read(dir.join("optimizer.safetensors")).unwrap();
    let opt = safetensors::SafeTensors::deserialize(&opt).unwrap();
    assert_eq!(opt.names().len(), 2 * state.params.len());
    std::fs::remove_dir_all(root).unwrap();
}
