//! From text files to loaders: corpus discovery, the run's tokenizer, tokenization — the
//! last two cached across runs in the data cache (`$LUOSHU_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/luoshu`, else `~/.cache/luoshu`).

use super::config::RunConfig;
use luoshu_data::fingerprint;
use luoshu_data::{
    corpus_key, discover_corpus, load_corpus_files, tokenizer_key, tokens_key, train_tokenizer,
    Corpus, CorpusFiles, CorpusSpec, CorpusStats, DataCache, Document, Holdout, LengthBucketLoader,
    Lookup, TextTokenizer, TokenizedCorpus, CACHE_DIR_ENV, END_OF_TEXT,
};
use std::path::{Path, PathBuf};

/// The training loader, the validation batches and the tokenizer's fingerprint.
pub struct RunData {
    pub train: LengthBucketLoader,
    pub val: Vec<luoshu_data::GlobalBatch>,
    pub tokenizer_hash: String,
}

fn tokenize(tokenizer: &TextTokenizer, docs: &[Document]) -> Result<Vec<Vec<u32>>, String> {
    docs.iter()
        .map(|d| {
            tokenizer
                .encode_document(&d.text)
                .map_err(|e| format!("{}: {e}", d.path.display()))
        })
        .collect()
}

/// `rows (padding %)` of each bucket over one epoch of the training data.
fn describe_padding(loader: &LengthBucketLoader, packing: bool) -> String {
    let buckets: Vec<String> = loader
        .padding_by_bucket()
        .iter()
        .map(|b| {
            format!(
                "≤{} {} rows ({:.1}%)",
                b.seq_len,
                b.rows,
                100.0 * b.padding_fraction
            )
        })
        .collect();
    let how = if packing {
        "packed"
    } else {
        "one document per row"
    };
    format!("padding per bucket ({how}): {}", buckets.join(", "))
}

/// What the corpus is made of and how its validation part was chosen.
fn describe_corpus(tokens: &TokenizedCorpus) -> String {
    let s: &CorpusStats = &tokens.stats;
    let (train, val) = (tokens.train.len(), tokens.val.len());
    let split = match s.holdout {
        Holdout::Files => format!("{train} train / {val} validation files"),
        Holdout::TailDocuments => format!(
            "a single file: validation is its last {val} of {} documents (documents end at \
             `{END_OF_TEXT}`)",
            train + val
        ),
        Holdout::TailTokens => format!(
            "a single file and one long document: validation is its last {} tokens",
            tokens.token_counts().1
        ),
    };
    format!(
        "corpus: {} — {} of {} files used ({:.1} MB), skipped {} binary/non-UTF-8 and {} too \
         large; {split}",
        s.source,
        s.used,
        s.candidates,
        s.bytes as f64 / 1e6,
        s.skipped_binary,
        s.skipped_large,
    )
}

/// The corpus text, read only when something has to be built from it (a cache miss).
struct LazyCorpus {
    spec: CorpusSpec,
    files: Option<CorpusFiles>,
    corpus: Option<Corpus>,
}

impl LazyCorpus {
    fn get(&mut self) -> Result<&Corpus, String> {
        if let Some(files) = self.files.take() {
            let corpus = load_corpus_files(&self.spec, files).map_err(|e| e.to_string())?;
            self.corpus = Some(corpus);
        }
        self.corpus
            .as_ref()
            .ok_or_else(|| "internal: the corpus was neither discovered nor loaded".into())
    }
}

/// The data cache and the corpus's key in it, or `None` (with the reason logged) when
/// there is no cache directory or the corpus files cannot be fingerprinted.
fn open_cache(
    spec: &CorpusSpec,
    files: &CorpusFiles,
    log: &mut dyn FnMut(String),
) -> Option<(DataCache, String)> {
    let Some(cache) = DataCache::from_env() else {
        log(format!(
            "cache: off (no HOME, XDG_CACHE_HOME or {CACHE_DIR_ENV} to put it in)"
        ));
        return None;
    };
    match corpus_key(spec, files) {
        Ok(key) => Some((cache, key)),
        Err(e) => {
            log(format!("warning: cache off for this run: {e}"));
            None
        }
    }
}

/// How to reach one kind of cache entry.
struct Entry<'a, T> {
    what: &'a str,
    key: String,
    path: PathBuf,
    load: fn(&DataCache, &str) -> Lookup<T>,
    store: fn(&DataCache, &str, &T) -> luoshu_data::Result<PathBuf>,
}

/// The cached value of `target`'s entry (no cache: `None`), or `build()` stored into the cache. A damaged entry or a
/// failed write is a warning, never an error: the value is simply built. Returns whether
/// it was a hit.
fn cached<T>(
    target: Option<(&DataCache, Entry<'_, T>)>,
    build: impl FnOnce() -> Result<T, String>,
    log: &mut dyn FnMut(String),
) -> Result<(T, bool), String> {
    let Some((cache, entry)) = target else {
        return Ok((build()?, false));
    };
    let (what, path) = (entry.what, entry.path.display());
    match (entry.load)(cache, &entry.key) {
        Lookup::Hit(value) => {
            log(format!("cache: {what} hit ({path})"));
            return Ok((value, true));
        }
        Lookup::Miss => log(format!("cache: {what} miss; building")),
        Lookup::Invalid(reason) => log(format!(
            "warning: cache entry {path} is unusable ({reason}); rebuilding the {what} and overwriting it"
        )),
    }
    let value = build()?;
    match (entry.store)(cache, &entry.key, &value) {
        Ok(written) => log(format!("cache: {what} stored in {}", written.display())),
        Err(e) => log(format!("warning: could not cache the {what}: {e}")),
    }
    Ok((value, false))
}

/// Load the corpus, train the tokenizer into `tokenizer_path` (or reuse the file there when
/// `reuse_tokenizer`), and build the loaders. Tokenizer and tokens come from the data cache
/// when an earlier run produced them from identical inputs. `log` receives what was found.
pub fn prepare(
    config: &RunConfig,
    model_vocab: usize,
    tokenizer_path: &Path,
    reuse_tokenizer: bool,
    log: &mut dyn FnMut(String),
) -> Result<RunData, String> {
    let spec = config.corpus_spec();
    let files = discover_corpus(&spec).map_err(|e| e.to_string())?;
    let cache = open_cache(&spec, &files, log);
    let mut corpus = LazyCorpus {
        spec,
        files: Some(files),
        corpus: None,
    };

    let tokenizer = if reuse_tokenizer && tokenizer_path.exists() {
        log(format!("tokenizer: reusing {}", tokenizer_path.display()));
        TextTokenizer::load(tokenizer_path).map_err(|e| {
            format!(
                "{e}. The run's tokenizer is damaged or was written by another version of the \
                 tokenizer library; its checkpoints need exactly that tokenizer, so restore \
                 {} from a copy, or start the run over with --overwrite (which trains a new one)",
                tokenizer_path.display()
            )
        })?
    } else {
        let vocab_size = config.data.vocab_size;
        let target = cache.as_ref().map(|(cache, corpus_key)| {
            let key = tokenizer_key(corpus_key, vocab_size);
            let entry = Entry {
                what: "tokenizer",
                path: cache.tokenizer_path(&key),
                key,
                load: DataCache::load_tokenizer,
                store: DataCache::store_tokenizer,
            };
            (cache, entry)
        });
        let train = || -> Result<TextTokenizer, String> {
            let docs = &corpus.get()?.train;
            train_tokenizer(docs, vocab_size).map_err(|e| e.to_string())
        };
        let (tokenizer, hit) = cached(target, train, log)?;
        tokenizer.save(tokenizer_path).map_err(|e| e.to_string())?;
        let origin = if hit { "from the cache" } else { "trained" };
        log(format!(
            "tokenizer: byte-level BPE of {} tokens ({origin}) → {}",
            tokenizer.vocab_size(),
            tokenizer_path.display()
        ));
        tokenizer
    };
    if tokenizer.vocab_size() > model_vocab {
        return Err(format!(
            "the tokenizer has {} tokens but the model's vocab_size is {model_vocab}",
            tokenizer.vocab_size()
        ));
    }
    let bytes =
        std::fs::read(tokenizer_path).map_err(|e| format!("{}: {e}", tokenizer_path.display()))?;
    let tokenizer_hash = fingerprint(&bytes);

    let build_tokens = || -> Result<TokenizedCorpus, String> {
        let corpus = corpus.get()?;
        let mut tokens = TokenizedCorpus {
            train: tokenize(&tokenizer, &corpus.train)?,
            val: tokenize(&tokenizer, &corpus.val)?,
            stats: corpus.stats.clone(),
        };
        if corpus.stats.holdout == Holdout::TailTokens {
            tokens
                .hold_out_tail_tokens(config.data.val_fraction)
                .map_err(|e| e.to_string())?;
        }
        Ok(tokens)
    };
    let target = cache.as_ref().map(|(cache, corpus_key)| {
        let key = tokens_key(corpus_key, &bytes);
        let entry = Entry {
            what: "tokens",
            path: cache.tokens_path(&key),
            key,
            load: DataCache::load_tokens,
            store: DataCache::store_tokens,
        };
        (cache, entry)
    });
    let (tokens, _) = cached(target, build_tokens, log)?;

    log(describe_corpus(&tokens));
    let (train_count, val_count) = tokens.token_counts();
    log(format!(
        "tokens: {train_count} train, {val_count} validation"
    ));
    let pad = tokenizer.end_of_text();
    let loader_config = config.loader_config();
    let train = LengthBucketLoader::new(loader_config.clone(), &tokens.train, pad)
        .map_err(|e| format!("training data: {e}"))?;
    log(describe_padding(&train, loader_config.packing));
    let val = LengthBucketLoader::new(loader_config, &tokens.val, pad)
        .map_err(|e| format!("validation data: {e}"))?
        .all_batches();
    Ok(RunData {
        train,
        val,
        tokenizer_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use luoshu_data::CorpusStats;

    fn tokens() -> TokenizedCorpus {
        TokenizedCorpus {
            train: vec![vec![1, 2, 0]],
            val: vec![vec![3, 0]],
            stats: CorpusStats::default(),
        }
    }

    fn tokens_entry(cache: &DataCache) -> Entry<'static, TokenizedCorpus> {
        Entry {
            what: "tokens",
            key: "k".into(),
            path: cache.tokens_path("k"),
            load: DataCache::load_tokens,
            store: DataCache::store_tokens,
        }
    }

    /// Runs [`cached`] and returns (value, hit, whether `build` ran, log lines).
    fn run(cache: &DataCache) -> (TokenizedCorpus, bool, bool, Vec<String>) {
        let mut lines = Vec::new();
        let mut built = false;
        let build = || {
            built = true;
            Ok(tokens())
        };
        let (value, hit) = cached(Some((cache, tokens_entry(cache))), build, &mut |l| {
            lines.push(l)
        })
        .unwrap();
        (value, hit, built, lines)
    }

    #[test]
    fn miss_then_hit_then_a_corrupt_entry_is_rebuilt_with_a_warning() {
        let root = std::env::temp_dir().join(format!("luoshu-run-data-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let cache = DataCache::new(&root);
        let (value, hit, built, _) = run(&cache);
        assert_eq!((value, hit, built), (tokens(), false, true));
        let (value, hit, built, lines) = run(&cache);
        assert_eq!((value, hit, built), (tokens(), true, false));
        assert!(lines[0].contains("hit"), "{lines:?}");

        let path = cache.tokens_path("k");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 1);
        std::fs::write(&path, bytes).unwrap();
        let (value, hit, built, lines) = run(&cache);
        assert_eq!((value, hit, built), (tokens(), false, true));
        assert!(lines[0].starts_with("warning:"), "{lines:?}");
        let (_, hit, _, _) = run(&cache);
        assert!(hit, "the rebuilt entry must be stored again");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn an_unwritable_cache_is_a_warning_not_an_error() {
        let root =
            std::env::temp_dir().join(format!("luoshu-run-data-file-{}", std::process::id()));
        std::fs::write(&root, "a file where the cache directory should be").unwrap();
        let (value, hit, built, lines) = run(&DataCache::new(&root));
        assert_eq!((value, hit, built), (tokens(), false, true));
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("warning: could not cache")),
            "{lines:?}"
        );
        std::fs::remove_file(&root).unwrap();
    }
}
