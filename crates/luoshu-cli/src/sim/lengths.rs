//! Where `--lengths` comes from: a file of lengths (one per line), or a corpus (a path, or
//! `default`: the Rust sources under the cargo registry) tokenized by our tokenizer.

use luoshu_data::{load_corpus, train_tokenizer, CorpusSpec};
use luoshu_sim::lengths::parse_lengths;

/// Vocabulary of the tokenizer trained on a corpus to measure its document lengths
/// (LLaMA's 32k would take far longer to train for the same distribution shape).
const TOKENIZER_VOCAB: usize = 8192;

/// The observed document lengths of `source`, and a description of where they came from.
pub fn observed_lengths(source: &str) -> Result<(Vec<usize>, String), String> {
    let path = std::path::Path::new(source);
    if path.is_file() {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{source}: {e}"))?;
        if let Ok(lengths) = parse_lengths(&text, source) {
            return Ok((lengths, format!("{source} (file of lengths)")));
        }
    } else if source != "default" && !path.exists() {
        return Err(format!(
            "--lengths {source}: no such file or directory (give a file of lengths, one per \
             line, a corpus path, or `default`)"
        ));
    }
    let spec = CorpusSpec {
        data: (source != "default").then(|| source.to_string()),
        val_fraction: 0.0,
        ..CorpusSpec::default()
    };
    let corpus = load_corpus(&spec).map_err(|e| format!("--lengths {source}: {e}"))?;
    let tokenizer = train_tokenizer(&corpus.train, TOKENIZER_VOCAB)
        .map_err(|e| format!("--lengths {source}: {e}"))?;
    let lengths = corpus
        .train
        .iter()
        .map(|d| tokenizer.encode_document(&d.text).map(|t| t.len()))
        .filter(|len| !matches!(len, Ok(0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--lengths {source}: {e}"))?;
    if lengths.is_empty() {
        return Err(format!("--lengths {source}: the corpus has no documents"));
    }
    Ok((
        lengths,
        format!(
            "{} ({} documents, our BPE tokenizer of {TOKENIZER_VOCAB} tokens)",
            corpus.stats.source,
            corpus.train.len()
        ),
    ))
}
