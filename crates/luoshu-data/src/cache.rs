//! An on-disk cache, shared across runs, of tokenized corpora and trained tokenizers.
//!
//! Entries are keyed by a fingerprint of everything that determines them: the corpus
//! spec and every candidate file's path, size and modification time, plus the tokenizer's
//! JSON (token entries) or the vocabulary size (tokenizer entries). Files are written
//! atomically and validated on load (see [`super::framed`]); a damaged entry is reported
//! as [`Lookup::Invalid`] so the caller rebuilds and overwrites it.

use super::framed::{read_framed, write_framed, Lookup, FORMAT_VERSION};
use super::{CorpusFiles, CorpusSpec, TextTokenizer, TokenizedCorpus};
use crate::fingerprint;
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Environment variable that overrides the cache directory.
pub const CACHE_DIR_ENV: &str = "LUOSHU_CACHE_DIR";

/// The cache root: `$LUOSHU_CACHE_DIR`, else `$XDG_CACHE_HOME/luoshu`, else
/// `$HOME/.cache/luoshu`; `None` when none of them is set.
pub fn default_cache_dir() -> Option<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    non_empty(CACHE_DIR_ENV)
        .map(PathBuf::from)
        .or_else(|| non_empty("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("luoshu")))
        .or_else(|| non_empty("HOME").map(|h| PathBuf::from(h).join(".cache").join("luoshu")))
}

/// Fingerprint of a corpus's inputs: the spec and each candidate's path, size and mtime.
/// Any added, removed, resized or touched file changes it (each file is `stat`ed, not read).
pub fn corpus_key(spec: &CorpusSpec, files: &CorpusFiles) -> Result<String> {
    let mut material = Vec::new();
    let mut push = |bytes: &[u8]| {
        material.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        material.extend_from_slice(bytes);
    };
    push(b"corpus");
    push(&FORMAT_VERSION.to_le_bytes());
    push(spec.data.as_deref().unwrap_or("\0default").as_bytes());
    for n in [
        spec.max_bytes,
        spec.max_file_bytes,
        spec.val_fraction.to_bits(),
        spec.seed,
    ] {
        push(&n.to_le_bytes());
    }
    push(files.source.as_bytes());
    for path in &files.paths {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        // A file system without mtimes falls back to size alone.
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        push(path.as_os_str().as_encoded_bytes());
        push(&meta.len().to_le_bytes());
        push(&mtime.to_le_bytes());
    }
    Ok(fingerprint(&material))
}

/// Key of the token entry for a corpus tokenized by the tokenizer whose JSON is given.
pub fn tokens_key(corpus_key: &str, tokenizer_json: &[u8]) -> String {
    let tokenizer = fingerprint(tokenizer_json);
    fingerprint(format!("tokens v{FORMAT_VERSION} {corpus_key} {tokenizer}").as_bytes())
}

/// Key of the tokenizer entry trained on a corpus with `vocab_size` entries.
pub fn tokenizer_key(corpus_key: &str, vocab_size: usize) -> String {
    fingerprint(format!("tokenizer v{FORMAT_VERSION} {corpus_key} {vocab_size}").as_bytes())
}

/// A cache directory holding `tokens/<key>.bin` and `tokenizers/<key>.bin`.
#[derive(Debug, Clone)]
pub struct DataCache {
    root: PathBuf,
}

impl DataCache {
    /// A cache kept under the directory `root` (created when the first entry is stored).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataCache { root: root.into() }
    }

    /// The cache at [`default_cache_dir`], if any.
    pub fn from_env() -> Option<Self> {
        default_cache_dir().map(DataCache::new)
    }

    /// The directory the cache lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file holding the tokenized corpus of `key`.
    pub fn tokens_path(&self, key: &str) -> PathBuf {
        self.root.join("tokens").join(format!("{key}.bin"))
    }

    /// The file holding the trained tokenizer of `key`.
    pub fn tokenizer_path(&self, key: &str) -> PathBuf {
        self.root.join("tokenizers").join(format!("{key}.bin"))
    }

    /// The tokenized corpus stored under `key`: a hit, a miss, or an entry that is damaged
    /// or of another format (with the reason, so the caller rebuilds it with a warning).
    pub fn load_tokens(&self, key: &str) -> Lookup<TokenizedCorpus> {
        read_framed(&self.tokens_path(key), key)
            .and_then(|bytes| TokenizedCorpus::from_bytes(&bytes))
    }

    /// Store `corpus` under `key` (atomically); returns the file written.
    pub fn store_tokens(&self, key: &str, corpus: &TokenizedCorpus) -> Result<PathBuf> {
        let path = self.tokens_path(key);
        write_framed(&path, key, &corpus.to_bytes())?;
        Ok(path)
    }

    /// The tokenizer stored under `key`, like [`DataCache::load_tokens`].
    pub fn load_tokenizer(&self, key: &str) -> Lookup<TextTokenizer> {
        read_framed(&self.tokenizer_path(key), key)
            .and_then(|json| TextTokenizer::from_json(&json).map_err(|e| e.to_string()))
    }

    /// Store `tokenizer` under `key` (atomically); returns the file written.
    pub fn store_tokenizer(&self, key: &str, tokenizer: &TextTokenizer) -> Result<PathBuf> {
        let path = self.tokenizer_path(key);
        write_framed(&path, key, tokenizer.to_json()?.as_bytes())?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{discover_corpus, train_tokenizer, CorpusStats, Document, Holdout};
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("luoshu-cache-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn sample() -> TokenizedCorpus {
        TokenizedCorpus {
            train: vec![vec![5, 6, 7, 0], vec![8, 0]],
            val: vec![vec![9, 9, 0]],
            stats: CorpusStats {
                source: "files under x".into(),
                candidates: 4,
                used: 3,
                skipped_binary: 1,
                skipped_large: 0,
                bytes: 99,
                holdout: Holdout::TailDocuments,
            },
        }
    }

    #[test]
    fn a_hit_returns_the_stored_documents() {
        let cache = DataCache::new(temp_dir("hit"));
        assert_eq!(cache.load_tokens("abc"), Lookup::Miss);
        cache.store_tokens("abc", &sample()).unwrap();
        assert_eq!(cache.load_tokens("abc"), Lookup::Hit(sample()));
        assert_eq!(cache.load_tokens("abd"), Lookup::Miss);
        std::fs::remove_dir_all(cache.root()).unwrap();
    }

    #[test]
    fn a_corrupted_entry_is_invalid_and_overwriting_repairs_it() {
        let cache = DataCache::new(temp_dir("corrupt"));
        let path = cache.store_tokens("abc", &sample()).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(cache.load_tokens("abc"), Lookup::Invalid(r) if r.contains("checksum")));
        cache.store_tokens("abc", &sample()).unwrap();
        assert_eq!(cache.load_tokens("abc"), Lookup::Hit(sample()));
        std::fs::remove_dir_all(cache.root()).unwrap();
    }

    #[test]
    fn the_corpus_key_follows_file_contents_and_the_spec() {
        let dir = temp_dir("key");
        std::fs::write(dir.join("a.txt"), "fn main() {}\n").unwrap();
        std::fs::write(dir.join("b.txt"), "struct S;\n").unwrap();
        let spec = CorpusSpec {
            data: Some(dir.to_string_lossy().into_owned()),
            ..CorpusSpec::default()
        };
        let key = || corpus_key(&spec, &discover_corpus(&spec).unwrap()).unwrap();
        let original = key();
        assert_eq!(key(), original, "the key must be stable");
        std::fs::write(dir.join("b.txt"), "struct S; // changed\n").unwrap();
        let changed = key();
        assert_ne!(changed, original, "a changed file must change the key");
        std::fs::write(dir.join("c.txt"), "enum E {}\n").unwrap();
        assert_ne!(key(), changed, "an added file must change the key");
        let reseeded = CorpusSpec {
            seed: 1,
            ..spec.clone()
        };
        let files = discover_corpus(&reseeded).unwrap();
        assert_ne!(corpus_key(&reseeded, &files).unwrap(), key());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tokenizers_round_trip_and_keys_separate_inputs() {
        let cache = DataCache::new(temp_dir("tokenizer"));
        let docs: Vec<Document> = (0..20)
            .map(|i| Document {
                path: PathBuf::from(format!("{i}.rs")),
                text: format!("fn f{i}(x: u32) -> u32 {{ x + {i} }}\n"),
            })
            .collect();
        let tokenizer = train_tokenizer(&docs, 300).unwrap();
        cache.store_tokenizer("t", &tokenizer).unwrap();
        let Lookup::Hit(loaded) = cache.load_tokenizer("t") else {
            panic!("the stored tokenizer must load");
        };
        assert_eq!(loaded.to_json().unwrap(), tokenizer.to_json().unwrap());
        assert_eq!(
            loaded.encode_document(&docs[3].text).unwrap(),
            tokenizer.encode_document(&docs[3].text).unwrap()
        );
        assert_ne!(tokenizer_key("c", 300), tokenizer_key("c", 301));
        assert_ne!(tokens_key("c", b"{}"), tokens_key("c", b"{ }"));
        assert_ne!(tokens_key("c", b"{}"), tokens_key("d", b"{}"));
        std::fs::remove_dir_all(cache.root()).unwrap();
    }
}
