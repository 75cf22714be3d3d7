use super::Document;
use crate::special::END_OF_TEXT;
use crate::{Error, Result};
use std::path::Path;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};

/// End-of-text tokens of LLaMA-family tokenizers imported from Hugging Face (LLaMA 3;
/// LLaMA 1/2 and Mistral), used when a tokenizer lacks [`END_OF_TEXT`].
const IMPORTED_END_OF_TEXT: [&str; 2] = ["<|end_of_text|>", "</s>"];

/// A byte-level BPE tokenizer (HF `tokenizers`, saved as a standard `tokenizer.json`).
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    end_of_text: u32,
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

/// Train a byte-level BPE tokenizer with `vocab_size` entries on the documents.
pub fn train_tokenizer(docs: &[Document], vocab_size: usize) -> Result<TextTokenizer> {
    if vocab_size < 257 {
        return Err(Error::Config(format!(
            "vocab_size must be at least 257 (256 bytes + end of text), got {vocab_size}"
        )));
    }
    let mut trainer = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(vocab_size)
        .min_frequency(2)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .special_tokens(vec![AddedToken::from(END_OF_TEXT, true)])
        .build();
    let mut tokenizer = TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_normalizer(None::<tokenizers::NormalizerWrapper>)
        .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
        .with_post_processor(Some(ByteLevel::new(false, true, true)))
        .with_decoder(Some(ByteLevel::new(false, true, true)))
        .build()
        .map_err(tok_err)?;
    tokenizer
        .train(&mut trainer, docs.iter().map(|d| d.text.as_str()))
        .map_err(tok_err)?;
    TextTokenizer::from_inner(tokenizer.into())
}

impl TextTokenizer {
    fn from_inner(inner: Tokenizer) -> Result<Self> {
        let end_of_text = std::iter::once(END_OF_TEXT)
            .chain(IMPORTED_END_OF_TEXT)
            .find_map(|token| inner.token_to_id(token))
            .ok_or_else(|| {
                Error::Tokenizer(format!(
                    "the tokenizer has no end-of-text token (`{END_OF_TEXT}`, `{}`)",
                    IMPORTED_END_OF_TEXT.join("`, `")
                ))
            })?;
        Ok(TextTokenizer { inner, end_of_text })
    }

    /// Read a `tokenizer.json` file (ours or an imported Hugging Face one).
    pub fn load(path: &Path) -> Result<Self> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        Self::from_inner(inner)
    }

    /// Parse a tokenizer from the bytes of a `tokenizer.json`.
    pub fn from_json(json: &[u8]) -> Result<Self> {
        Self::from_inner(Tokenizer::from_bytes(json).map_err(tok_err)?)
    }

    /// The `tokenizer.json` text [`TextTokenizer::save`] writes.
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(false).map_err(tok_err)
    }

    /// Write the tokenizer as a `tokenizer.json` file.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner
            .save(path, false)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))
    }

    /// Tokens in the vocabulary, special tokens included: the model's embedding rows.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Id of the token that ends every document.
    pub fn end_of_text(&self) -> u32 {
        self.end_of_text
    }

    /// The text of token `id` (e.g. `<|endoftext|>` for [`TextTokenizer::end_of_text`]).
    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Token ids of `text` (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .inner
            .encode(text, false)
            .map_err(tok_err)?
            .get_ids()
            .to_vec())
    }

    /// Token ids of a document followed by the end-of-text token.
    pub fn encode_document(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.encode(text)?;
        ids.push(self.end_of_text);
        Ok(ids)
    }

    /// The text of token ids (special tokens dropped).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(tok_err)
    }
}
