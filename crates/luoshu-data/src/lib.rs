//! The data pipeline: corpus discovery, a byte-level BPE tokenizer, the on-disk cache of
//! tokenized corpora and tokenizers, and the length-bucketing loader that feeds hot
//! switching.

#![deny(missing_docs)]

mod cache;
mod corpus;
mod error;
mod fingerprint;
mod framed;
mod loader;
mod packing;
mod special;
mod tokenized;
mod tokenizer;

pub use cache::{
    corpus_key, default_cache_dir, tokenizer_key, tokens_key, DataCache, CACHE_DIR_ENV,
};
pub use corpus::{
    discover_corpus, load_corpus, load_corpus_files, Corpus, CorpusFiles, CorpusSpec, CorpusStats,
    Document, Holdout,
};
pub use error::{Error, Result};
pub use fingerprint::fingerprint;
pub use framed::Lookup;
pub use loader::{
    BucketBatch, BucketPadding, GlobalBatch, LengthBucketLoader, LoaderConfig, LoaderPosition,
    MicroBatch, IGNORE_INDEX,
};
/// The byte mutator of the fuzz tests (it lives in `luoshu-tensor`, the lowest crate).
pub use luoshu_tensor::fuzz;
pub use packing::{first_fit_decreasing, RowDocuments};
pub use special::END_OF_TEXT;
pub use tokenized::TokenizedCorpus;
pub use tokenizer::{train_tokenizer, TextTokenizer};
