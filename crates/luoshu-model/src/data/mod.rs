//! The data pipeline: corpus discovery, a byte-level BPE tokenizer, and the
//! length-bucketing loader that feeds hot switching.

mod corpus;
mod loader;
mod tokenizer;

pub use corpus::{load_corpus, Corpus, CorpusSpec, CorpusStats, Document};
pub use loader::{
    BucketBatch, GlobalBatch, LengthBucketLoader, LoaderConfig, LoaderPosition, MicroBatch,
    IGNORE_INDEX,
};
pub use tokenizer::{train_tokenizer, TextTokenizer};
