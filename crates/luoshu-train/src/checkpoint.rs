//! Checkpoints: `step-<N>/` directories holding `model.safetensors` (parameters),
//! `optimizer.safetensors` (AdamW moments) and `state.toml` (step, data position, model
//! config, seed, tokenizer and file fingerprints), written atomically next to a `latest`
//! pointer file.
//!
//! A checkpoint is built in a hidden temporary directory, every file is fsynced, and the
//! directory is renamed into place before `latest` is replaced (write temp + rename), so a
//! crash at any point leaves the previous checkpoint intact and pointed to.

use crate::{Error, Result, TrainerState};
use luoshu_data::{fingerprint, LoaderPosition};
use luoshu_model::{param_specs, ModelConfig, ParamStore};
use luoshu_tensor::{DType, Tensor};
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

const MODEL_FILE: &str = "model.safetensors";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const STATE_FILE: &str = "state.toml";
const LATEST_FILE: &str = "latest";
/// Prefixes of the AdamW moments inside `optimizer.safetensors`.
const MOMENT_M: &str = "m.";
const MOMENT_V: &str = "v.";

/// A loaded checkpoint.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The model's configuration, checked against the model a run resumes.
    pub model: ModelConfig,
    /// Parameters, AdamW moments and step.
    pub state: TrainerState,
    /// Where the data loader stood, to resume the data stream exactly.
    pub data: LoaderPosition,
    /// The run's seed; a resumed run must use the same one.
    pub seed: u64,
    /// [`fingerprint`] of the `tokenizer.json` the run was trained with.
    pub tokenizer_hash: String,
    /// The `step-<N>` directory it was read from.
    pub dir: PathBuf,
}

/// What [`save`] writes besides the trainer state.
#[derive(Debug, Clone)]
pub struct CheckpointMeta<'a> {
    /// The model's configuration.
    pub model: &'a ModelConfig,
    /// Where the data loader stands after the step being saved.
    pub data: LoaderPosition,
    /// The run's seed.
    pub seed: u64,
    /// [`fingerprint`] of the run's `tokenizer.json`.
    pub tokenizer_hash: &'a str,
}

/// The `state.toml` of a checkpoint.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    step: u64,
    data_epoch: u64,
    data_cursor: usize,
    seed: u64,
    tokenizer_hash: String,
    model_hash: String,
    optimizer_hash: String,
    model: ModelConfig,
}

/// An I/O-style error about `path` carrying `message` (corrupt or unexpected contents).
fn invalid(path: &Path, message: impl Into<String>) -> Error {
    Error::io(
        path,
        std::io::Error::new(std::io::ErrorKind::InvalidData, message.into()),
    )
}

fn step_dir_name(step: u64) -> String {
    format!("step-{step}")
}

/// Fault injection for tests (docs/reliability.md): with this variable set to `k`, the
/// `k`-th checkpoint file this process writes stops halfway with "no space left on device",
/// as a full disk would.
pub const FAULT_ENV: &str = "LUOSHU_FAULT_CHECKPOINT_WRITE";

/// Whether the file write now starting is the one [`FAULT_ENV`] asks to fail.
fn injected_fault() -> bool {
    static WRITES: AtomicUsize = AtomicUsize::new(0);
    let write = WRITES.fetch_add(1, Ordering::Relaxed) + 1;
    std::env::var(FAULT_ENV).is_ok_and(|k| k.trim().parse() == Ok(write))
}

/// Write `bytes` to `path` and flush them to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(path).map_err(|e| Error::io(path, e))?;
    if injected_fault() {
        file.write_all(&bytes[..bytes.len() / 2])
            .map_err(|e| Error::io(path, e))?;
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!("no space left on device (injected by {FAULT_ENV})"),
            ),
        ));
    }
    file.write_all(bytes).map_err(|e| Error::io(path, e))?;
    file.sync_all().map_err(|e| Error::io(path, e))
}

/// Make a rename inside `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Little-endian bytes and safetensors dtype of a parameter tensor.
fn tensor_bytes(name: &str, t: &Tensor) -> Result<(Dtype, Vec<u8>)> {
    match t.dtype() {
        DType::F32 => Ok((
            Dtype::F32,
            t.to_vec::<f32>()?
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        )),
        DType::F64 => Ok((
            Dtype::F64,
            t.to_vec::<f64>()?
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        )),
        other => Err(Error::State(format!(
            "cannot checkpoint `{name}`: parameters are f32 or f64, got {other}"
        ))),
    }
}

/// Serialize `(prefix + name, tensor)` pairs of every store into one safetensors buffer.
fn serialize(stores: &[(&str, &ParamStore)]) -> Result<Vec<u8>> {
    let mut owned = Vec::new();
    for (prefix, store) in stores {
        for (name, t) in store.iter() {
            let (dtype, bytes) = tensor_bytes(name, t)?;
            owned.push((format!("{prefix}{name}"), dtype, t.dims().to_vec(), bytes));
        }
    }
    let views = owned
        .iter()
        .map(|(name, dtype, dims, bytes)| {
            safetensors::tensor::TensorView::new(*dtype, dims.clone(), bytes)
                .map(|view| (name.clone(), view))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::State(format!("cannot build a safetensors view: {e}")))?;
    safetensors::serialize(views, &None)
        .map_err(|e| Error::State(format!("cannot serialize tensors: {e}")))
}

/// Save `state` as `root/step-<N>/` and point `root/latest` at it, then delete all but
/// the newest `keep` checkpoints. Returns the new directory. If writing fails (a full or
/// read-only disk), the partial checkpoint is removed and the error says that the previous
/// checkpoint, still pointed to by `latest`, is intact.
pub fn save(
    root: &Path,
    state: &TrainerState,
    meta: &CheckpointMeta,
    keep: usize,
) -> Result<PathBuf> {
    let name = step_dir_name(state.step);
    let tmp = root.join(format!(".tmp-{name}"));
    write_checkpoint(root, &name, &tmp, state, meta, keep).map_err(|err| {
        // Best effort: what is left of the partial checkpoint only wastes space.
        let _ = std::fs::remove_dir_all(&tmp);
        let Error::Io { path, source } = err else {
            return err;
        };
        let previous = std::fs::read_to_string(root.join(LATEST_FILE))
            .map(|p| format!("the previous checkpoint, {}, is intact", p.trim()))
            .unwrap_or_else(|_| "there is no earlier checkpoint".into());
        let message = format!(
            "could not write the checkpoint of step {}: {source}; {previous}",
            state.step
        );
        Error::io(path, std::io::Error::new(source.kind(), message))
    })
}

fn write_checkpoint(
    root: &Path,
    name: &str,
    tmp: &Path,
    state: &TrainerState,
    meta: &CheckpointMeta,
    keep: usize,
) -> Result<PathBuf> {
    std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
    if tmp.exists() {
        std::fs::remove_dir_all(tmp).map_err(|e| Error::io(tmp, e))?;
    }
    std::fs::create_dir(tmp).map_err(|e| Error::io(tmp, e))?;

    let model_bytes = serialize(&[("", &state.params)])?;
    let optimizer_bytes = serialize(&[(MOMENT_M, &state.adam_m), (MOMENT_V, &state.adam_v)])?;
    let state_file = StateFile {
        step: state.step,
        data_epoch: meta.data.epoch,
        data_cursor: meta.data.cursor,
        seed: meta.seed,
        tokenizer_hash: meta.tokenizer_hash.to_string(),
        model_hash: fingerprint(&model_bytes),
        optimizer_hash: fingerprint(&optimizer_bytes),
        model: meta.model.clone(),
    };
    let state_text = toml::to_string(&state_file)
        .map_err(|e| Error::State(format!("cannot encode the checkpoint state: {e}")))?;
    write_synced(&tmp.join(MODEL_FILE), &model_bytes)?;
    write_synced(&tmp.join(OPTIMIZER_FILE), &optimizer_bytes)?;
    write_synced(&tmp.join(STATE_FILE), state_text.as_bytes())?;
    sync_dir(tmp)?;

    let dir = root.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    std::fs::rename(tmp, &dir).map_err(|e| Error::io(&dir, e))?;
    let latest_tmp = root.join(format!(".{LATEST_FILE}.tmp"));
    write_synced(&latest_tmp, format!("{name}\n").as_bytes())?;
    std::fs::rename(&latest_tmp, root.join(LATEST_FILE)).map_err(|e| Error::io(root, e))?;
    sync_dir(root)?;
    prune(root, keep.max(1))?;
    Ok(dir)
}

/// Steps of the `step-<N>` directories under `root`, ascending.
pub fn list_steps(root: &Path) -> Result<Vec<u64>> {
    let entries = std::fs::read_dir(root).map_err(|e| Error::io(root, e))?;
    let mut steps: Vec<u64> = entries
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("step-"))
                .and_then(|n| n.parse().ok())
        })
        .collect();
    steps.sort_unstable();
    Ok(steps)
}

/// Delete all but the newest `keep` checkpoints.
fn prune(root: &Path, keep: usize) -> Result<()> {
    let steps = list_steps(root)?;
    let excess = steps.len().saturating_sub(keep);
    for step in &steps[..excess] {
        let dir = root.join(step_dir_name(*step));
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    Ok(())
}

/// Read `path` and check it against the fingerprint recorded in `state.toml`.
fn read_verified(path: &Path, expected: &str) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let actual = fingerprint(&bytes);
    if actual != expected {
        return Err(invalid(
            path,
            format!(
                "corrupt or truncated checkpoint file ({} bytes, fingerprint {actual} but \
                 state.toml records {expected})",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

/// Tensors `prefix + name` for every parameter of `model`, in the model's order.
fn read_store(path: &Path, bytes: &[u8], prefix: &str, model: &ModelConfig) -> Result<ParamStore> {
    let tensors = SafeTensors::deserialize(bytes)
        .map_err(|e| invalid(path, format!("not a valid safetensors file: {e}")))?;
    let mut store = ParamStore::new();
    for spec in param_specs(model) {
        let key = format!("{prefix}{}", spec.name);
        let view = tensors
            .tensor(&key)
            .map_err(|_| invalid(path, format!("missing tensor `{key}`")))?;
        if view.shape() != spec.shape.as_slice() {
            return Err(invalid(
                path,
                format!(
                    "tensor `{key}` has shape {:?} but the model needs {:?}",
                    view.shape(),
                    spec.shape
                ),
            ));
        }
        let data = view.data();
        let tensor = match view.dtype() {
            Dtype::F32 => {
                Tensor::from_slice(&decode::<4, f32>(data, f32::from_le_bytes), view.shape())?
            }
            Dtype::F64 => {
                Tensor::from_slice(&decode::<8, f64>(data, f64::from_le_bytes), view.shape())?
            }
            other => {
                return Err(invalid(
                    path,
                    format!("tensor `{key}` is {other:?}; checkpoints hold f32 or f64"),
                ))
            }
        };
        store.insert(&spec.name, tensor)?;
    }
    Ok(store)
}

/// Little-endian values of width `N` bytes.
fn decode<const N: usize, T>(data: &[u8], from_le: fn([u8; N]) -> T) -> Vec<T> {
    data.chunks_exact(N)
        .map(|c| {
            let mut word = [0u8; N];
            word.copy_from_slice(c);
            from_le(word)
        })
        .collect()
}

/// The `state.toml` at `path` whose text is `text`, with a valid model.
fn parse_state(path: &Path, text: &str) -> Result<StateFile> {
    let state: StateFile = toml::from_str(text).map_err(|e| {
        invalid(
            path,
            format!(
                "unreadable ({e}): the checkpoint is damaged or was written by another \
                 version of luoshu; resume from an older checkpoint of the run or start it over"
            ),
        )
    })?;
    state.model.validate()?;
    Ok(state)
}

/// Load and verify the checkpoint in the `step-<N>` directory `dir`.
pub fn load(dir: &Path) -> Result<Checkpoint> {
    let state_path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_path).map_err(|e| Error::io(&state_path, e))?;
    let state = parse_state(&state_path, &text)?;
    let model_path = dir.join(MODEL_FILE);
    let optimizer_path = dir.join(OPTIMIZER_FILE);
    let model_bytes = read_verified(&model_path, &state.model_hash)?;
    let optimizer_bytes = read_verified(&optimizer_path, &state.optimizer_hash)?;
    let params = read_store(&model_path, &model_bytes, "", &state.model)?;
    let adam_m = read_store(&optimizer_path, &optimizer_bytes, MOMENT_M, &state.model)?;
    let adam_v = read_store(&optimizer_path, &optimizer_bytes, MOMENT_V, &state.model)?;
    Ok(Checkpoint {
        model: state.model,
        state: TrainerState {
            step: state.step,
            params,
            adam_m,
            adam_v,
        },
        data: LoaderPosition {
            epoch: state.data_epoch,
            cursor: state.data_cursor,
        },
        seed: state.seed,
        tokenizer_hash: state.tokenizer_hash,
        dir: dir.to_path_buf(),
    })
}

/// Whether `root` holds a complete checkpoint: `latest` is written last, so a run killed
/// before (or while) writing its first checkpoint has none.
pub fn has_checkpoint(root: &Path) -> bool {
    root.join(LATEST_FILE).is_file()
}

/// Load the checkpoint `root/latest` points to. If it is damaged the error says so and
/// names the older checkpoints that remain (each loadable with [`load`]).
pub fn load_latest(root: &Path) -> Result<Checkpoint> {
    let pointer = root.join(LATEST_FILE);
    let name = std::fs::read_to_string(&pointer).map_err(|e| Error::io(&pointer, e))?;
    let dir = root.join(name.trim());
    load(&dir).map_err(|err| {
        let older: Vec<String> = list_steps(root)
            .unwrap_or_default()
            .into_iter()
            .map(step_dir_name)
            .filter(|n| n != name.trim())
            .collect();
        if older.is_empty() {
            return err;
        }
        invalid(
            &dir,
            format!(
                "cannot load the latest checkpoint: {err}. Older checkpoints remain in {}: {}; \
                 delete {} to resume from the newest of them",
                root.display(),
                older.join(", "),
                dir.display()
            ),
        )
    })
}

impl Checkpoint {
    /// Error unless the checkpoint was written for exactly `model`.
    pub fn check_model(&self, model: &ModelConfig) -> Result<()> {
        if &self.model != model {
            return Err(Error::State(format!(
                "the checkpoint in {} was written for model {:?}, but this run's model is {:?}",
                self.dir.display(),
                self.model,
                model
            )));
        }
        Ok(())
    }

    /// Error unless the checkpoint was written with the tokenizer of fingerprint `hash`.
    pub fn check_tokenizer(&self, hash: &str) -> Result<()> {
        if self.tokenizer_hash != hash {
            return Err(Error::Tokenizer(format!(
                "the checkpoint in {} was trained with tokenizer {} but the tokenizer given \
                 has fingerprint {hash}; use the run's own tokenizer.json",
                self.dir.display(),
                self.tokenizer_hash
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use luoshu_data::fuzz::mutate;
    use proptest::prelude::*;

    fn model() -> ModelConfig {
        ModelConfig {
            vocab_size: 8,
            d_model: 4,
            n_layers: 1,
            n_heads: 1,
            n_kv_heads: 1,
            d_ff: 4,
            max_seq_len: 4,
            ..ModelConfig::default()
        }
    }

    fn store(model: &ModelConfig) -> ParamStore {
        let mut store = ParamStore::new();
        for spec in param_specs(model) {
            let values: Vec<f32> = (0..spec.shape.iter().product::<usize>())
                .map(|i| i as f32 * 0.5)
                .collect();
            let tensor = Tensor::from_slice(&values, spec.shape.as_slice()).unwrap();
            store.insert(&spec.name, tensor).unwrap();
        }
        store
    }

    fn state_text() -> String {
        let state = StateFile {
            step: 3,
            data_epoch: 1,
            data_cursor: 7,
            seed: 5,
            tokenizer_hash: "0123456789abcdef".into(),
            model_hash: "fedcba9876543210".into(),
            optimizer_hash: "0011223344556677".into(),
            model: model(),
        };
        toml::to_string(&state).unwrap()
    }

    /// Every rejection is an `InvalidData` error about the file, or a model error naming
    /// the bad field.
    fn is_clear(err: &Error) -> bool {
        match err {
            Error::Io { path, source } => {
                path.ends_with("file") && source.kind() == std::io::ErrorKind::InvalidData
            }
            Error::Model(e) => !e.to_string().is_empty(),
            _ => false,
        }
    }

    #[test]
    fn the_unmutated_inputs_parse() {
        let path = Path::new("file");
        parse_state(path, &state_text()).unwrap();
        let bytes = serialize(&[("", &store(&model()))]).unwrap();
        read_store(path, &bytes, "", &model()).unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn mutated_state_files_never_panic_and_every_rejection_is_clear(
            edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6)
        ) {
            let text = String::from_utf8_lossy(&mutate(state_text().as_bytes(), &edits)).into_owned();
            if let Err(err) = parse_state(Path::new("file"), &text) {
                prop_assert!(is_clear(&err), "{err:?}");
            }
        }

        #[test]
        fn mutated_safetensors_headers_never_panic_and_every_rejection_is_clear(
            edits in prop::collection::vec((0usize..160, any::<u8>(), any::<u8>()), 1..6)
        ) {
            // Positions below 160 hit the length prefix and the JSON header.
            let model = model();
            let bytes = serialize(&[("", &store(&model))]).unwrap();
            let damaged = mutate(&bytes, &edits);
            if let Err(err) = read_store(Path::new("file"), &damaged, "", &model) {
                prop_assert!(is_clear(&err), "{err:?}");
            }
        }
    }
}
