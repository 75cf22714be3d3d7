use crate::special::END_OF_TEXT;
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
    /// Files larger than this are skipped (generated tables would dominate a small corpus),
    /// unless the corpus is a single file named by `data`.
    pub max_file_bytes: u64,
    /// Fraction held out for validation: of the files (split by file, so no document
    /// leaks), or of the only file's documents or tokens (see [`Holdout`]).
    pub val_fraction: f64,
    /// Seeds the choice of files (the sample under `max_bytes` and the validation files).
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

/// One document of the corpus: a file's text, or one `<|endoftext|>`-separated part of it.
#[derive(Debug, Clone)]
pub struct Document {
    /// The file it was read from (for messages and the cache key).
    pub path: PathBuf,
    /// Its text, without the separator.
    pub text: String,
}

/// How the validation text was chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Holdout {
    /// Whole files, picked by seed (the corpus has several usable files).
    #[default]
    Files,
    /// The last documents of the only usable file, whose documents are separated by
    /// `<|endoftext|>`.
    TailDocuments,
    /// The last tokens of the only usable file, which is one long document. The corpus
    /// keeps it whole in `train`; after tokenizing,
    /// [`crate::TokenizedCorpus::hold_out_tail_tokens`] splits it.
    TailTokens,
}

/// What discovery found, for the user's log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CorpusStats {
    /// Where the files were searched.
    pub source: String,
    /// Files the search found.
    pub candidates: usize,
    /// Files read into the corpus.
    pub used: usize,
    /// Files skipped because they are not UTF-8 text.
    pub skipped_binary: usize,
    /// Files skipped for being larger than `max_file_bytes`.
    pub skipped_large: usize,
    /// Bytes of text read.
    pub bytes: u64,
    /// How the validation text was chosen.
    pub holdout: Holdout,
}

/// The documents to train and validate on, and how they were found.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Training documents.
    pub train: Vec<Document>,
    /// Held-out validation documents (empty under [`Holdout::TailTokens`] until tokenized).
    pub val: Vec<Document>,
    /// What discovery found, for the log.
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
    // A file the user named is wanted whatever its size.
    let named_file =
        files.len() == 1 && spec.data.as_deref().is_some_and(|d| Path::new(d).is_file());
    let mut keyed: Vec<(u64, PathBuf)> = files
        .into_iter()
        .map(|p| (path_key(&p, spec.seed), p))
        .collect();
    keyed.sort();
    let mut documents = Vec::new();
    for (key, path) in keyed {
        if stats.bytes >= spec.max_bytes {
            break;
        }
        let size = std::fs::metadata(&path)
            .map_err(|e| Error::io(&path, e))?
            .len();
        if size > spec.max_file_bytes && !named_file {
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
        documents.push((Document { path, text }, held_out));
    }
    let (train, val) = match documents.len() {
        0 => {
            return Err(Error::NoData {
                searched: format!(
                "{source} ({} candidate files, {} binary or non-UTF-8, {} larger than {} bytes)",
                stats.candidates, stats.skipped_binary, stats.skipped_large, spec.max_file_bytes
            ),
            })
        }
        1 if spec.val_fraction > 0.0 => {
            let (doc, _) = documents.remove(0);
            let (train, val, holdout) = split_single_file(doc, spec.val_fraction);
            stats.holdout = holdout;
            (train, val)
        }
        _ => split_files(documents, spec.val_fraction),
    };
    Ok(Corpus { train, val, stats })
}

/// Train and validation files from `(document, held out)` pairs, at least one of each
/// when there are two or more files and validation is wanted.
fn split_files(
    documents: Vec<(Document, bool)>,
    val_fraction: f64,
) -> (Vec<Document>, Vec<Document>) {
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (doc, held_out) in documents {
        if held_out {
            val.push(doc);
        } else {
            train.push(doc);
        }
    }
    if train.is_empty() {
        train.extend(val.pop());
    }
    if val.is_empty() && val_fraction > 0.0 && train.len() > 1 {
        val.extend(train.pop());
    }
    (train, val)
}

/// Hold out the tail of the only file: its last documents when `<|endoftext|>` separates
/// two or more, else (one long document) nothing yet — its tokens are split after
/// tokenizing ([`Holdout::TailTokens`]).
fn split_single_file(doc: Document, val_fraction: f64) -> (Vec<Document>, Vec<Document>, Holdout) {
    let parts: Vec<&str> = doc
        .text
        .split(END_OF_TEXT)
        .map(|part| part.trim_matches(['\n', '\r']))
        .filter(|part| !part.trim().is_empty())
        .collect();
    if parts.len() < 2 {
        return (vec![doc], Vec::new(), Holdout::TailTokens);
    }
    let held = ((parts.len() as f64 * val_fraction).ceil() as usize).clamp(1, parts.len() - 1);
    let to_docs = |parts: &[&str]| -> Vec<Document> {
        parts
            .iter()
            .map(|text| Document {
                path: doc.path.clone(),
                text: text.to_string(),
            })
            .collect()
    };
    let (train, val) = parts.split_at(parts.len() - held);
    (to_docs(train), to_docs(val), Holdout::TailDocuments)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("luoshu-corpus-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn spec(data: &Path, val_fraction: f64) -> CorpusSpec {
        CorpusSpec {
            data: Some(data.to_string_lossy().into_owned()),
            val_fraction,
            ..CorpusSpec::default()
        }
    }

    #[test]
    fn a_single_file_of_documents_holds_out_its_last_documents() {
        let dir = temp_dir("docs");
        let file = dir.join("stories.txt");
        let text: String = (0..10)
            .map(|i| format!("story {i} begins and ends.\n{END_OF_TEXT}\n"))
            .collect();
        std::fs::write(&file, text).unwrap();
        let corpus = load_corpus(&spec(&file, 0.25)).unwrap();
        assert_eq!(corpus.stats.holdout, Holdout::TailDocuments);
        let texts = |docs: &[Document]| docs.iter().map(|d| d.text.clone()).collect::<Vec<_>>();
        let expected = |range: std::ops::Range<usize>| {
            range
                .map(|i| format!("story {i} begins and ends."))
                .collect::<Vec<_>>()
        };
        assert_eq!(texts(&corpus.train), expected(0..7));
        assert_eq!(texts(&corpus.val), expected(7..10), "ceil(10 × 0.25) = 3");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_single_long_document_is_kept_whole_for_a_token_split() {
        let dir = temp_dir("long");
        let file = dir.join("book.txt");
        let text = "a line of a long book\n".repeat(20_000);
        std::fs::write(&file, &text).unwrap();
        let spec = spec(&file, 0.1);
        assert!(
            text.len() as u64 > spec.max_file_bytes,
            "named files ignore the size limit"
        );
        let corpus = load_corpus(&spec).unwrap();
        assert_eq!(corpus.stats.holdout, Holdout::TailTokens);
        assert_eq!(corpus.train.len(), 1);
        assert_eq!(corpus.train[0].text, text);
        assert!(corpus.val.is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_directory_with_one_usable_file_is_treated_as_that_file() {
        let dir = temp_dir("one-usable");
        std::fs::write(dir.join("a.txt"), format!("one{END_OF_TEXT}two")).unwrap();
        std::fs::write(dir.join("b.bin"), [0u8, 1, 2, 3]).unwrap();
        let corpus = load_corpus(&spec(&dir, 0.05)).unwrap();
        assert_eq!(corpus.stats.skipped_binary, 1);
        assert_eq!(corpus.stats.holdout, Holdout::TailDocuments);
        assert_eq!(
            (corpus.train[0].text.as_str(), corpus.val[0].text.as_str()),
            ("one", "two")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A tree with nested, hidden, `target` and other-extension files.
    fn tree(tag: &str) -> PathBuf {
        let dir = temp_dir(tag);
        for sub in ["src/deep/deeper", ".git", "target/debug", "docs"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        for file in [
            "lib.rs",
            "src/main.rs",
            "src/deep/deeper/z.rs",
            "src/deep/notes.txt",
            ".git/config.rs",
            "target/debug/build.rs",
            "docs/guide.md",
            ".hidden.rs",
        ] {
            std::fs::write(dir.join(file), format!("text of {file}")).unwrap();
        }
        dir
    }

    fn relative(root: &Path, paths: &[PathBuf]) -> Vec<String> {
        paths
            .iter()
            .map(|p| p.strip_prefix(root).unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_walker_recurses_sorted_skipping_hidden_and_target_directories() {
        let dir = tree("walk");
        let all = walk(&dir, None).unwrap();
        assert_eq!(
            relative(&dir, &all),
            [
                ".hidden.rs",
                "docs/guide.md",
                "lib.rs",
                "src/deep/deeper/z.rs",
                "src/deep/notes.txt",
                "src/main.rs",
            ],
            "hidden files are kept, hidden and target directories are not"
        );
        let rust = walk(&dir, Some("rs")).unwrap();
        assert_eq!(
            relative(&dir, &rust),
            [
                ".hidden.rs",
                "lib.rs",
                "src/deep/deeper/z.rs",
                "src/main.rs"
            ]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_missing_root_is_an_error_naming_it() {
        let dir = temp_dir("missing").join("nowhere");
        let e = walk(&dir, None).unwrap_err().to_string();
        assert!(e.contains("nowhere"), "{e}");
        let e = discover_corpus(&spec(&dir, 0.05)).unwrap_err().to_string();
        assert!(e.contains("nowhere does not exist"), "{e}");
    }

    #[test]
    fn discovery_takes_a_file_a_directory_or_a_glob() {
        let dir = tree("discover");
        let found = |data: &Path| discover_corpus(&spec(data, 0.05)).unwrap();
        let file = found(&dir.join("lib.rs"));
        assert_eq!(file.paths, [dir.join("lib.rs")]);
        assert_eq!(relative(&dir, &found(&dir).paths).len(), 6);
        let glob = found(&dir.join("src/*.rs"));
        assert_eq!(relative(&dir, &glob.paths), ["src/main.rs"]);
        assert!(glob.source.starts_with("files matching"), "{}", glob.source);
        let bad = CorpusSpec {
            val_fraction: 1.0,
            ..spec(&dir, 0.0)
        };
        let e = discover_corpus(&bad).unwrap_err().to_string();
        assert!(e.contains("val_fraction must be in [0, 1), got 1"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Files over `max_file_bytes` are skipped and counted; reading stops once `max_bytes`
    /// are selected (the file that crosses it is kept whole).
    #[test]
    fn loading_skips_large_files_and_stops_at_the_byte_budget() {
        let dir = temp_dir("budget");
        for i in 0..6 {
            std::fs::write(dir.join(format!("{i}.txt")), "x".repeat(100)).unwrap();
        }
        std::fs::write(dir.join("big.txt"), "y".repeat(1000)).unwrap();
        let limited = CorpusSpec {
            max_bytes: 250,
            max_file_bytes: 500,
            ..spec(&dir, 0.0)
        };
        let corpus = load_corpus(&limited).unwrap();
        assert_eq!(corpus.stats.used, 3, "100 + 100 + 100 crosses 250");
        assert_eq!(corpus.stats.bytes, 300);
        assert_eq!(corpus.train.len(), 3);
        let everything = CorpusSpec {
            max_bytes: 1 << 20,
            ..limited
        };
        let corpus = load_corpus(&everything).unwrap();
        assert_eq!((corpus.stats.used, corpus.stats.skipped_large), (6, 1));
        assert_eq!(corpus.stats.candidates, 7);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn several_files_always_give_both_train_and_validation_files() {
        let doc = |name: &str| Document {
            path: PathBuf::from(name),
            text: name.into(),
        };
        let (train, val) = split_files(vec![(doc("a"), true), (doc("b"), true)], 0.5);
        assert_eq!((train.len(), val.len()), (1, 1));
        let (train, val) = split_files(vec![(doc("a"), false), (doc("b"), false)], 0.5);
        assert_eq!((train.len(), val.len()), (1, 1));
        let (train, val) = split_files(vec![(doc("a"), false), (doc("b"), false)], 0.0);
        assert_eq!((train.len(), val.len()), (2, 0), "no validation wanted");
    }
}
