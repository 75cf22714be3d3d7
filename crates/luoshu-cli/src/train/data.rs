//! From text files to loaders: corpus discovery, the run's tokenizer, tokenization.

use super::config::RunConfig;
use luoshu_model::checkpoint::fingerprint;
use luoshu_model::data::{
    load_corpus, train_tokenizer, Document, LengthBucketLoader, TextTokenizer,
};
use std::path::Path;

/// The training loader, the validation batches and the tokenizer's fingerprint.
pub struct RunData {
    pub train: LengthBucketLoader,
    pub val: Vec<luoshu_model::data::GlobalBatch>,
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

/// Load the corpus, train the tokenizer into `tokenizer_path` (or reuse the file there when
/// `reuse_tokenizer`), and build the loaders. `log` receives what was found.
pub fn prepare(
    config: &RunConfig,
    model_vocab: usize,
    tokenizer_path: &Path,
    reuse_tokenizer: bool,
    log: &mut dyn FnMut(String),
) -> Result<RunData, String> {
    let corpus = load_corpus(&config.corpus_spec()).map_err(|e| e.to_string())?;
    let s = &corpus.stats;
    log(format!(
        "corpus: {} — {} of {} files used ({:.1} MB), skipped {} binary/non-UTF-8 and {} too large; {} train / {} validation files",
        s.source,
        s.used,
        s.candidates,
        s.bytes as f64 / 1e6,
        s.skipped_binary,
        s.skipped_large,
        corpus.train.len(),
        corpus.val.len()
    ));
    if corpus.val.is_empty() {
        return Err(format!(
            "the corpus ({}) has a single usable file, so none is left for validation; \
             give --data more files",
            s.source
        ));
    }

    let tokenizer = if reuse_tokenizer && tokenizer_path.exists() {
        log(format!("tokenizer: reusing {}", tokenizer_path.display()));
        TextTokenizer::load(tokenizer_path).map_err(|e| e.to_string())?
    } else {
        let tokenizer =
            train_tokenizer(&corpus.train, config.data.vocab_size).map_err(|e| e.to_string())?;
        tokenizer.save(tokenizer_path).map_err(|e| e.to_string())?;
        log(format!(
            "tokenizer: trained a byte-level BPE of {} tokens → {}",
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

    let train_docs = tokenize(&tokenizer, &corpus.train)?;
    let val_docs = tokenize(&tokenizer, &corpus.val)?;
    let count = |docs: &[Vec<u32>]| docs.iter().map(Vec::len).sum::<usize>();
    log(format!(
        "tokens: {} train, {} validation",
        count(&train_docs),
        count(&val_docs)
    ));
    let pad = tokenizer.end_of_text();
    let loader_config = config.loader_config();
    let train = LengthBucketLoader::new(loader_config.clone(), &train_docs, pad)
        .map_err(|e| format!("training data: {e}"))?;
    let val = LengthBucketLoader::new(loader_config, &val_docs, pad)
        .map_err(|e| format!("validation data: {e}"))?
        .all_batches();
    Ok(RunData {
        train,
        val,
        tokenizer_hash,
    })
}
