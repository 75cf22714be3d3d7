//! A tokenized corpus and its byte encoding (the payload of a token cache file).

use super::framed::ByteReader;
use super::{CorpusStats, Holdout};
use crate::Error;

/// Token ids of every training and validation document (each ending with the end-of-text
/// token) and what corpus discovery found, so a cache hit can report the same summary.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizedCorpus {
    /// Token ids of each training document.
    pub train: Vec<Vec<u32>>,
    /// Token ids of each validation document.
    pub val: Vec<Vec<u32>>,
    /// What corpus discovery found.
    pub stats: CorpusStats,
}

impl TokenizedCorpus {
    /// Token count of the training and validation documents.
    pub fn token_counts(&self) -> (usize, usize) {
        let count = |docs: &[Vec<u32>]| docs.iter().map(Vec::len).sum();
        (count(&self.train), count(&self.val))
    }

    /// For a corpus that is one long document ([`Holdout::TailTokens`]): move the last
    /// `val_fraction` of its tokens (at least 2, leaving at least 2) into `val`.
    pub fn hold_out_tail_tokens(&mut self, val_fraction: f64) -> crate::Result<()> {
        let [document] = self.train.as_mut_slice() else {
            return Err(Error::Config(format!(
                "holding out tokens needs exactly one training document, got {}",
                self.train.len()
            )));
        };
        let total = document.len();
        if total < 4 {
            return Err(Error::NoData {
                searched: format!(
                    "{} holds only {total} tokens, too few to keep some for validation",
                    self.stats.source
                ),
            });
        }
        let held = ((total as f64 * val_fraction).ceil() as usize).clamp(2, total - 2);
        self.val.push(document.split_off(total - held));
        Ok(())
    }

    /// Layout: the stats (source as length + UTF-8, then five u64 counts and the hold-out
    /// code), the number of train and validation documents, every document's length, then
    /// all tokens as u32.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let s = &self.stats;
        let (train_tokens, val_tokens) = self.token_counts();
        let docs = self.train.len() + self.val.len();
        let mut out =
            Vec::with_capacity(64 + s.source.len() + 8 * docs + 4 * (train_tokens + val_tokens));
        out.extend_from_slice(&(s.source.len() as u32).to_le_bytes());
        out.extend_from_slice(s.source.as_bytes());
        for n in [
            s.candidates as u64,
            s.used as u64,
            s.skipped_binary as u64,
            s.skipped_large as u64,
            s.bytes,
            holdout_code(s.holdout),
            self.train.len() as u64,
            self.val.len() as u64,
        ] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        let all = || self.train.iter().chain(&self.val);
        for doc in all() {
            out.extend_from_slice(&(doc.len() as u64).to_le_bytes());
        }
        for token in all().flatten() {
            out.extend_from_slice(&token.to_le_bytes());
        }
        out
    }

    /// The inverse of [`TokenizedCorpus::to_bytes`]; the error says where it went wrong.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let mut r = ByteReader::new(bytes);
        let source_len = r.u32()? as usize;
        let source = String::from_utf8(r.take(source_len)?.to_vec())
            .map_err(|e| format!("corpus source is not UTF-8: {e}"))?;
        let mut count = || -> Result<usize, String> {
            let n = r.u64()?;
            usize::try_from(n).map_err(|_| format!("count {n} does not fit in memory"))
        };
        let stats = CorpusStats {
            source,
            candidates: count()?,
            used: count()?,
            skipped_binary: count()?,
            skipped_large: count()?,
            bytes: count()? as u64,
            holdout: holdout_from_code(count()? as u64)?,
        };
        let (train_docs, val_docs) = (count()?, count()?);
        let docs = train_docs
            .checked_add(val_docs)
            .filter(|&d| d <= bytes.len() / 8)
            .ok_or_else(|| format!("{train_docs} + {val_docs} documents cannot fit in the file"))?;
        let lengths = (0..docs).map(|_| count()).collect::<Result<Vec<_>, _>>()?;
        let mut documents = Vec::with_capacity(docs);
        for len in lengths {
            let raw = r.take(len.checked_mul(4).ok_or("document length overflows")?)?;
            let doc = raw
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            documents.push(doc);
        }
        if !r.is_at_end() {
            return Err(format!(
                "{} bytes left over after the last document",
                bytes.len() - r.offset()
            ));
        }
        let val = documents.split_off(train_docs);
        Ok(TokenizedCorpus {
            train: documents,
            val,
            stats,
        })
    }
}

fn holdout_code(holdout: Holdout) -> u64 {
    match holdout {
        Holdout::Files => 0,
        Holdout::TailDocuments => 1,
        Holdout::TailTokens => 2,
    }
}

fn holdout_from_code(code: u64) -> Result<Holdout, String> {
    match code {
        0 => Ok(Holdout::Files),
        1 => Ok(Holdout::TailDocuments),
        2 => Ok(Holdout::TailTokens),
        other => Err(format!("unknown validation hold-out code {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn corpus(train: Vec<Vec<u32>>, val: Vec<Vec<u32>>) -> TokenizedCorpus {
        TokenizedCorpus {
            train,
            val,
            stats: CorpusStats {
                source: "files under ünïcode/".into(),
                candidates: 9,
                used: 5,
                skipped_binary: 2,
                skipped_large: 1,
                bytes: 12345,
                holdout: Holdout::TailTokens,
            },
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        /// The payload reader behind the checksum: mutated payloads decode or are rejected
        /// with a reason, never a panic or an unbounded allocation.
        #[test]
        fn mutated_payloads_never_panic(
            edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6)
        ) {
            let good = corpus(vec![vec![1, 2, 3], vec![4]], vec![vec![5, 6]]).to_bytes();
            if let Err(reason) = TokenizedCorpus::from_bytes(&crate::fuzz::mutate(&good, &edits)) {
                prop_assert!(!reason.is_empty());
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn bytes_round_trip(
            train in prop::collection::vec(prop::collection::vec(any::<u32>(), 0..20), 0..6),
            val in prop::collection::vec(prop::collection::vec(any::<u32>(), 0..20), 0..4),
        ) {
            let original = corpus(train, val);
            let decoded = TokenizedCorpus::from_bytes(&original.to_bytes()).unwrap();
            prop_assert_eq!(decoded, original);
        }
    }

    #[test]
    fn the_tail_tokens_of_one_document_become_validation() {
        let document: Vec<u32> = (0..100).collect();
        let mut tokens = corpus(vec![document.clone()], Vec::new());
        tokens.hold_out_tail_tokens(0.05).unwrap();
        assert_eq!(tokens.train, vec![(0..95).collect::<Vec<u32>>()]);
        assert_eq!(tokens.val, vec![(95..100).collect::<Vec<u32>>()]);

        let mut tiny = corpus(vec![(0..5).collect()], Vec::new());
        tiny.hold_out_tail_tokens(0.01).unwrap();
        assert_eq!(
            (tiny.train[0].len(), tiny.val[0].len()),
            (3, 2),
            "at least 2 held out"
        );

        let err = corpus(vec![vec![1, 2, 3]], Vec::new())
            .hold_out_tail_tokens(0.5)
            .unwrap_err();
        assert!(err.to_string().contains("only 3 tokens"), "{err}");
        let err = corpus(vec![document.clone(), document], Vec::new())
            .hold_out_tail_tokens(0.5)
            .unwrap_err();
        assert!(err.to_string().contains("exactly one"), "{err}");
    }

    #[test]
    fn an_unknown_holdout_code_is_rejected() {
        let mut bytes = corpus(vec![vec![1]], Vec::new()).to_bytes();
        // The code follows the source string and five counts.
        let at = 4 + "files under ünïcode/".len() + 5 * 8;
        bytes[at] = 7;
        let err = TokenizedCorpus::from_bytes(&bytes).unwrap_err();
        assert!(err.contains("hold-out code 7"), "{err}");
    }

    #[test]
    fn truncated_or_padded_payloads_are_rejected() {
        let bytes = corpus(vec![vec![1, 2, 3]], vec![vec![4]]).to_bytes();
        let short = TokenizedCorpus::from_bytes(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(short.contains("ends early"), "{short}");
        let mut long = bytes.clone();
        long.push(0);
        let long = TokenizedCorpus::from_bytes(&long).unwrap_err();
        assert!(long.contains("left over"), "{long}");
    }
}
