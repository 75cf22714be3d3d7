use crate::{Error, Result};
use luoshu_tensor::rng;
use std::path::{Path, PathBuf};

/// Where the training text comes from and how much of it to use.
#[derive(Debug, Clone)]
pub struct CorpusSpec {
    /// A file, a directory (searched recursively) or a glob; `None` means the default corpus:
    /// the Rust sources under the cargo registry.
    pub data: Option<String>,
    /// Stop adding files once this many bytes are selected.
    pub max_bytes: u64,
    /// Files larger than this are skipped (generated tables would dominate a small corpus).
    pub max_file_bytes: u64,
    /// Fraction of files held out for validation (split by file, so no document leaks).
    pub val_fraction: f64,
    pub seed: u64,
}

impl Default for CorpusSpec {
    fn default() -> Self {
        CorpusSpec {
            data: None,
            max_bytes: 4 << 20,
            max_file_bytes: 256 << 10,
            val_fraction: 0.05,
            seed: 0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Document {
    pub path: PathBuf,
    pub text: String,
}

/// What discovery found, for the user's log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CorpusStats {
    pub source: String,
    pub candidates: usize,
    pub used: usize,
    pub skipped_binary: usize,
    pub skipped_large: usize,
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub struct Corpus {
    pub train: Vec<Document>,
    pub val: Vec<Document>,
    pub stats: CorpusStats,
}

/// The default corpus root: `$CARGO_HOME/registry/src`, else `~/.cargo/registry/src`.
fn default_root() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    Some(home.join("registry").join("src"))
}

/// The candidate files of a corpus, before sampling and reading.
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusFiles {
    /// Where they were searched, for messages.
    pub source: String,
    /// Sorted paths.
    pub paths: Vec<PathBuf>,
}

/// Find the candidate files of `spec` (cheap: no file is read), after checking the spec.
pub fn discover_corpus(spec: &CorpusSpec) -> Result<CorpusFiles> {
    if !(0.0..1.0).contains(&spec.val_fraction) {
        return Err(Error::Config(format!(
            "val_fraction must be in [0, 1), got {}",
            spec.val_fraction
        )));
    }
    let (paths, source) = candidates(spec)?;
    Ok(CorpusFiles { source, paths })
}

/// Candidate files and a description of where they were searched.
fn candidates(spec: &CorpusSpec) -> Result<(Vec<PathBuf>, String)> {
    match &spec.data {
        None => {
            let root = default_root().ok_or_else(|| Error::NoData {
                searched:
                    "neither CARGO_HOME nor HOME is set, so the cargo registry cannot be found"
                        .into(),
            })?;
            let files = walk(&root, Some("rs"))?;
            Ok((files, format!("Rust sources under {}", root.display())))
        }
        Some(pattern) if pattern.contains(['*', '?', '[']) => {
            let paths = glob::glob(pattern)
                .map_err(|e| Error::Config(format!("bad glob `{pattern}`: {e}")))?;
            let files = paths
                .filter_map(|p| p.ok())
                .filter(|p| p.is_file())
                .collect();
            Ok((files, format!("files matching {pattern}")))
        }
        Some(path) => {
            let p = Path::new(path);
            if p.is_file() {
                Ok((vec![p.to_path_buf()], format!("the file {path}")))
            } else if p.is_dir() {
                Ok((walk(p, None)?, format!("files under {path}")))
            } else {
                Err(Error::NoData {
                    searched: format!("{path} does not exist"),
                })
            }
        }
    }
}

/// All files under `root` (recursively, skipping hidden and `target` directories), sorted.
fn walk(root: &Path, extension: Option<&str>) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if dir == root => return Err(Error::io(dir, e)),
            Err(_) => continue, // an unreadable subdirectory is skipped, not fatal
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let hidden = name.to_string_lossy().starts_with('.') || name == "target";
            match entry.file_type() {
                Ok(t) if t.is_dir() && !hidden => stack.push(path),
                Ok(t)
                    if t.is_file()
                        && extension
                            .is_none_or(|ext| path.extension().is_some_and(|e| e == ext)) =>
                {
                    files.push(path)
                }
                _ => {}
            }
        }
    }
    files.sort();
    Ok(files)
}

/// A stable 64-bit key of a path under a seed (FNV-1a mixed through the counter RNG).
fn path_key(path: &Path, seed: u64) -> u64 {
    let fnv = path
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
    rng::bits(seed, 0x636f_7270, fnv)
}

/// Find, sample (deterministically from the seed), read and split the corpus.
pub fn load_corpus(spec: &CorpusSpec) -> Result<Corpus> {
    load_corpus_files(spec, discover_corpus(spec)?)
}

/// Sample (deterministically from the seed), read and split the already discovered `files`.
pub fn load_corpus_files(spec: &CorpusSpec, files: CorpusFiles) -> Result<Corpus> {
    let CorpusFiles {
        source,
        paths: files,
    } = files;
    let mut stats = CorpusStats {
        source: source.clone(),
        candidates: files.len(),
        ..CorpusStats::default()
    };
    let mut keyed: Vec<(u64, PathBuf)> = files
        .into_iter()
        .map(|p| (path_key(&p, spec.seed), p))
        .collect();
    keyed.sort();
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (key, path) in keyed {
        if stats.bytes >= spec.max_bytes {
            break;
        }
        let size = std::fs::metadata(&path)
            .map_err(|e| Error::io(&path, e))?
            .len();
        if size > spec.max_file_bytes {
            stats.skipped_large += 1;
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let text = match String::from_utf8(bytes) {
            Ok(t) if !t.contains('\0') && !t.trim().is_empty() => t,
            _ => {
                stats.skipped_binary += 1;
                continue;
            }
        };
        stats.bytes += text.len() as u64;
        stats.used += 1;
        // The low bits of the key decide the split, the high bits decided the order.
        let held_out = (key & 0xffff) as f64 / 65536.0 < spec.val_fraction;
        let doc = Document { path, text };
        if held_out {
            val.push(doc);
        } else {
            train.push(doc);
        }
    }
    if train.is_empty() {
        return Err(Error::NoData {
            searched: format!(
                "{source} ({} candidate files, {} binary or non-UTF-8, {} larger than {} bytes)",
                stats.candidates, stats.skipped_binary, stats.skipped_large, spec.max_file_bytes
            ),
        });
    }
    if val.is_empty() && spec.val_fraction > 0.0 && train.len() > 1 {
        val.extend(train.pop());
    }
    Ok(Corpus { train, val, stats })
}
