//! safetensors files of a Hugging Face model: writing `model.safetensors`, and reading
//! either it or the shards a `model.safetensors.index.json` lists.

use super::{read_json, HfDtype, WEIGHTS_FILE, WEIGHTS_INDEX_FILE};
use crate::{Error, Result};
use half::{bf16, f16};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// A tensor in HF's naming and layout: name, shape and row-major values.
pub(super) struct HfTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Write `tensors` to `path` as `dtype` (bf16 rounds to nearest even, as `torch` does).
pub(super) fn write(path: &Path, tensors: &[HfTensor], dtype: HfDtype) -> Result<()> {
    let encoded: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| match dtype {
            HfDtype::F32 => t.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            HfDtype::Bf16 => t
                .values
                .iter()
                .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
                .collect(),
        })
        .collect();
    let safetensors_dtype = match dtype {
        HfDtype::F32 => Dtype::F32,
        HfDtype::Bf16 => Dtype::BF16,
    };
    let views = tensors
        .iter()
        .zip(&encoded)
        .map(|(t, bytes)| {
            TensorView::new(safetensors_dtype, t.shape.clone(), bytes).map(|v| (t.name.as_str(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::hf(path, format!("cannot build a safetensors view: {e}")))?;
    // `transformers` refuses safetensors files whose metadata does not say `pt`.
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::serialize(views, &Some(metadata))
        .map_err(|e| Error::hf(path, format!("cannot serialize tensors: {e}")))?;
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// The weight files of a model directory, read into memory, and which file holds each
/// tensor.
pub(super) struct WeightFiles {
    files: Vec<(PathBuf, Vec<u8>)>,
    holder: HashMap<String, usize>,
}

impl WeightFiles {
    /// `dir/model.safetensors`, else the shards of `dir/model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        let single = dir.join(WEIGHTS_FILE);
        let index = dir.join(WEIGHTS_INDEX_FILE);
        let paths = if single.is_file() {
            vec![single]
        } else if index.is_file() {
            shard_paths(dir, &index)?
        } else {
            return Err(Error::hf(
                dir,
                format!(
                    "has neither {WEIGHTS_FILE} nor {WEIGHTS_INDEX_FILE}: luoshu imports \
                     safetensors weights (convert a pytorch_model.bin with transformers' \
                     `save_pretrained(dir, safe_serialization=True)`)"
                ),
            ));
        };
        let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
        let mut holder = HashMap::new();
        for path in paths {
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            for name in parse(&path, &bytes)?.names() {
                if let Some(other) = holder.insert(name.clone(), files.len()) {
                    let first: &Path = &files[other].0;
                    return Err(Error::hf(
                        &path,
                        format!("tensor `{name}` is also in {}", first.display()),
                    ));
                }
            }
            files.push((path, bytes));
        }
        Ok(WeightFiles { files, holder })
    }

    /// Names of every tensor in the files.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.holder.keys().map(String::as_str)
    }

    /// The file read for tensors missing from every file (the first one).
    pub fn origin(&self) -> &Path {
        &self.files[0].0
    }

    /// Tensor `name` as f32 values, or `None` if no file holds it.
    pub fn read(&self, name: &str) -> Result<Option<HfTensor>> {
        let Some(&file) = self.holder.get(name) else {
            return Ok(None);
        };
        let (path, bytes) = &self.files[file];
        let view = parse(path, bytes)?
            .tensor(name)
            .map_err(|e| Error::hf(path, format!("tensor `{name}`: {e}")))?;
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => words(data).map(f32::from_le_bytes).collect(),
            Dtype::BF16 => words(data)
                .map(|w| bf16::from_le_bytes(w).to_f32())
                .collect(),
            Dtype::F16 => words(data)
                .map(|w| f16::from_le_bytes(w).to_f32())
                .collect(),
            other => {
                return Err(Error::hf(
                    path,
                    format!("tensor `{name}` is {other:?}; luoshu imports F32, BF16 and F16"),
                ))
            }
        };
        Ok(Some(HfTensor {
            name: name.to_string(),
            shape: view.shape().to_vec(),
            values,
        }))
    }
}

fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes)
        .map_err(|e| Error::hf(path, format!("not a valid safetensors file: {e}")))
}

/// Little-endian words of `N` bytes.
fn words<const N: usize>(data: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    data.chunks_exact(N).map(|c| {
        let mut word = [0u8; N];
        word.copy_from_slice(c);
        word
    })
}

/// The shard files named by the `weight_map` of the index `index`.
fn shard_paths(dir: &Path, index: &Path) -> Result<Vec<PathBuf>> {
    let json = read_json(index)?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| {
            Error::hf(
                index,
                "field `weight_map` is missing or not a table of tensor → file",
            )
        })?;
    let files = map
        .iter()
        .map(|(tensor, file)| {
            file.as_str().ok_or_else(|| {
                Error::hf(
                    index,
                    format!("field `weight_map.{tensor}` must be a file name, got {file}"),
                )
            })
        })
        .collect::<Result<BTreeSet<&str>>>()?;
    if files.is_empty() {
        return Err(Error::hf(index, "field `weight_map` lists no files"));
    }
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}
