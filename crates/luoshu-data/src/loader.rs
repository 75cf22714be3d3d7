use crate::packing::{first_fit_decreasing, RowDocuments};
use crate::{Error, Result};
use luoshu_tensor::rng;

/// Target value of padding positions: never counted in the loss.
pub const IGNORE_INDEX: i64 = -100;

/// How the loader cuts documents into sequences, buckets them and batches them.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderConfig {
    /// Longest training sequence (targets per row); longer documents are chunked.
    pub max_len: usize,
    /// Sequence-length bucket edges, ascending; the last must equal `max_len`. A sequence
    /// of length `l` goes to the smallest edge `>= l` and is padded to it.
    pub bucket_edges: Vec<usize>,
    /// Padded tokens per micro-batch (rows × bucket length), the memory budget.
    pub tokens_per_micro_batch: usize,
    /// Real target tokens per optimizer step (a global batch stops once it reaches this).
    pub global_batch_tokens: usize,
    /// Seeds the order in which sequences are served (per epoch).
    pub seed: u64,
    /// Pack the sequences of a bucket first-fit-decreasing into rows of the bucket's length
    /// (several documents per row) instead of one sequence per row.
    pub packing: bool,
}

impl LoaderConfig {
    /// Refuses settings that cannot batch (no edges, edges not ascending or not ending at
    /// `max_len`, a micro-batch smaller than one sequence, ...), saying which.
    pub fn validate(&self) -> Result<()> {
        let sorted = self.bucket_edges.windows(2).all(|w| w[0] < w[1]);
        if self.bucket_edges.is_empty() || !sorted || self.bucket_edges[0] == 0 {
            return Err(Error::Config(format!(
                "bucket_edges must be positive and strictly ascending, got {:?}",
                self.bucket_edges
            )));
        }
        if self.bucket_edges.last() != Some(&self.max_len) {
            return Err(Error::Config(format!(
                "the last bucket edge must equal max_len ({}), got {:?}",
                self.max_len, self.bucket_edges
            )));
        }
        if self.tokens_per_micro_batch < self.max_len {
            return Err(Error::Config(format!(
                "tokens_per_micro_batch ({}) must hold at least one sequence of max_len ({})",
                self.tokens_per_micro_batch, self.max_len
            )));
        }
        if self.global_batch_tokens == 0 {
            return Err(Error::Config("global_batch_tokens must be positive".into()));
        }
        Ok(())
    }
}

/// One micro-batch: `rows × seq_len` input tokens and targets (padding targets are
/// [`IGNORE_INDEX`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MicroBatch {
    /// Rows (sequences, or packed rows) in the batch.
    pub rows: usize,
    /// Tokens per row: the bucket's length.
    pub seq_len: usize,
    /// Input token ids, `rows × seq_len`, row-major.
    pub inputs: Vec<i64>,
    /// Next-token targets, same layout; padding is [`IGNORE_INDEX`].
    pub targets: Vec<i64>,
    /// Targets that count in the loss (not [`IGNORE_INDEX`]).
    pub target_tokens: usize,
    /// Packed rows: where each row's documents lie. `None`: one document per row from
    /// position 0. A document's targets are its own next tokens (each sequence carries
    /// `len + 1` tokens), so no target ever crosses into the next document.
    pub documents: Option<RowDocuments>,
}

/// The micro-batches of one length bucket within a global batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketBatch {
    /// The bucket's edge: every row of its micro-batches has this length.
    pub seq_len: usize,
    /// Its micro-batches, each within the token budget.
    pub micro_batches: Vec<MicroBatch>,
}

impl BucketBatch {
    /// `(target tokens, token slots)` of the bucket's micro-batches.
    fn fill(&self) -> (usize, usize) {
        let micro = &self.micro_batches;
        let tokens = micro.iter().map(|m| m.target_tokens).sum();
        (tokens, micro.iter().map(|m| m.rows * m.seq_len).sum())
    }
}

/// How much of one bucket's rows is padding, over all the sequences of a loader.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketPadding {
    /// The bucket's edge.
    pub seq_len: usize,
    /// Rows the bucket's sequences fill.
    pub rows: usize,
    /// Padding slots / all token slots of the bucket's rows.
    pub padding_fraction: f64,
}

/// Everything one optimizer step consumes. The loss of the step is the sum of per-token
/// losses divided by `target_tokens`, so splitting it across buckets and strategies does
/// not change the gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalBatch {
    /// The buckets the step draws sequences from, each with its micro-batches.
    pub buckets: Vec<BucketBatch>,
    /// Targets that count in the loss over every bucket: the loss's divisor.
    pub target_tokens: usize,
}

impl GlobalBatch {
    /// A global batch of `buckets`, counting its target tokens.
    pub fn of_buckets(buckets: Vec<BucketBatch>) -> Self {
        let target_tokens = buckets
            .iter()
            .flat_map(|b| &b.micro_batches)
            .map(|m| m.target_tokens)
            .sum();
        GlobalBatch {
            buckets,
            target_tokens,
        }
    }
}

/// Where the loader is in the data, saved in checkpoints for bit-identical resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoaderPosition {
    /// Passes over the data completed.
    pub epoch: u64,
    /// Sequences of this epoch's order already served.
    pub cursor: usize,
}

/// Chunks documents into training sequences and serves global batches grouped into
/// length buckets, in an order that depends only on the seed and the epoch.
#[derive(Debug, Clone)]
pub struct LengthBucketLoader {
    config: LoaderConfig,
    /// Each sequence holds `len + 1` tokens: inputs are `[..len]`, targets `[1..]`.
    sequences: Vec<Vec<u32>>,
    pad_token: u32,
    order: Vec<usize>,
    position: LoaderPosition,
}

impl LengthBucketLoader {
    /// `documents` are token ids (each already ending with the end-of-text token).
    pub fn new(config: LoaderConfig, documents: &[Vec<u32>], pad_token: u32) -> Result<Self> {
        config.validate()?;
        let sequences: Vec<Vec<u32>> = documents
            .iter()
            .flat_map(|doc| doc.chunks(config.max_len + 1))
            .filter(|chunk| chunk.len() >= 2)
            .map(|chunk| chunk.to_vec())
            .collect();
        if sequences.is_empty() {
            return Err(Error::Config(
                "the documents hold no sequence of at least 2 tokens".into(),
            ));
        }
        let mut loader = LengthBucketLoader {
            config,
            sequences,
            pad_token,
            order: Vec::new(),
            position: LoaderPosition::default(),
        };
        loader.shuffle();
        Ok(loader)
    }

    /// The settings the loader was built with.
    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// Training sequences one epoch serves.
    pub fn num_sequences(&self) -> usize {
        self.sequences.len()
    }

    /// Target lengths of all sequences (for choosing bucket edges and strategies).
    pub fn sequence_lengths(&self) -> impl Iterator<Item = usize> + '_ {
        self.sequences.iter().map(|s| s.len() - 1)
    }

    /// Where the next batch starts, for a checkpoint.
    pub fn position(&self) -> LoaderPosition {
        self.position
    }

    /// Continue from a saved position.
    pub fn seek(&mut self, position: LoaderPosition) -> Result<()> {
        if position.cursor > self.sequences.len() {
            return Err(Error::Config(format!(
                "saved data position {} is past the {} sequences of this corpus; was the data changed?",
                position.cursor,
                self.sequences.len()
            )));
        }
        self.position = position;
        self.shuffle();
        Ok(())
    }

    fn shuffle(&mut self) {
        let epoch = self.position.epoch;
        let seed = self.config.seed;
        let mut keyed: Vec<(u64, usize)> = (0..self.sequences.len())
            .map(|i| (rng::bits(seed, epoch, i as u64), i))
            .collect();
        keyed.sort_unstable();
        self.order = keyed.into_iter().map(|(_, i)| i).collect();
    }

    /// The next global batch (wrapping into the next epoch as needed).
    pub fn next_batch(&mut self) -> GlobalBatch {
        let mut chosen = Vec::new();
        let mut tokens = 0;
        while tokens < self.config.global_batch_tokens {
            if self.position.cursor == self.order.len() {
                self.position = LoaderPosition {
                    epoch: self.position.epoch + 1,
                    cursor: 0,
                };
                self.shuffle();
            }
            let index = self.order[self.position.cursor];
            self.position.cursor += 1;
            tokens += self.sequences[index].len() - 1;
            chosen.push(index);
        }
        self.assemble(&chosen)
    }

    /// Every sequence once, in corpus order, as global batches (for validation).
    pub fn all_batches(&self) -> Vec<GlobalBatch> {
        let mut batches = Vec::new();
        let mut chosen = Vec::new();
        let mut tokens = 0;
        for (i, s) in self.sequences.iter().enumerate() {
            chosen.push(i);
            tokens += s.len() - 1;
            if tokens >= self.config.global_batch_tokens {
                batches.push(self.assemble(&chosen));
                chosen.clear();
                tokens = 0;
            }
        }
        if !chosen.is_empty() {
            batches.push(self.assemble(&chosen));
        }
        batches
    }

    fn bucket_of(&self, len: usize) -> usize {
        self.config.bucket_edges.partition_point(|&edge| edge < len)
    }

    /// Padding per bucket when every sequence is served once (as [`Self::all_batches`]
    /// serves them), with this loader's packing setting.
    pub fn padding_by_bucket(&self) -> Vec<BucketPadding> {
        let edges = &self.config.bucket_edges;
        let mut fill = vec![(0, 0, 0); edges.len()];
        for bucket in self.all_batches().iter().flat_map(|b| &b.buckets) {
            let at = self.bucket_of(bucket.seq_len);
            let (tokens, slots) = bucket.fill();
            let rows: usize = bucket.micro_batches.iter().map(|m| m.rows).sum();
            fill[at] = (fill[at].0 + tokens, fill[at].1 + slots, fill[at].2 + rows);
        }
        edges
            .iter()
            .zip(fill)
            .filter(|(_, (_, slots, _))| *slots > 0)
            .map(|(&seq_len, (tokens, slots, rows))| BucketPadding {
                seq_len,
                rows,
                padding_fraction: 1.0 - tokens as f64 / slots as f64,
            })
            .collect()
    }

    /// Group sequences by bucket and pack each bucket into micro-batches.
    fn assemble(&self, chosen: &[usize]) -> GlobalBatch {
        let edges = &self.config.bucket_edges;
        let mut per_bucket: Vec<Vec<&[u32]>> = vec![Vec::new(); edges.len()];
        for &i in chosen {
            let seq = &self.sequences[i];
            per_bucket[self.bucket_of(seq.len() - 1)].push(seq);
        }
        let mut total = 0;
        let buckets = per_bucket
            .into_iter()
            .zip(edges)
            .filter(|(seqs, _)| !seqs.is_empty())
            .map(|(seqs, &seq_len)| {
                let rows_per_micro = (self.config.tokens_per_micro_batch / seq_len).max(1);
                let micro_batches = self
                    .rows(&seqs, seq_len)
                    .chunks(rows_per_micro)
                    .map(|rows| self.pack(rows, seq_len))
                    .collect::<Vec<_>>();
                total += micro_batches.iter().map(|m| m.target_tokens).sum::<usize>();
                BucketBatch {
                    seq_len,
                    micro_batches,
                }
            })
            .collect();
        GlobalBatch {
            buckets,
            target_tokens: total,
        }
    }

    /// The rows of one bucket: each sequence alone, or packed first-fit-decreasing into
    /// rows of `seq_len` targets.
    fn rows<'a>(&self, seqs: &[&'a [u32]], seq_len: usize) -> Vec<Vec<&'a [u32]>> {
        if !self.config.packing {
            return seqs.iter().map(|&seq| vec![seq]).collect();
        }
        let lengths: Vec<usize> = seqs.iter().map(|s| s.len() - 1).collect();
        first_fit_decreasing(&lengths, seq_len)
            .into_iter()
            .map(|row| row.into_iter().map(|i| seqs[i]).collect())
            .collect()
    }

    /// One micro-batch of `rows`, each holding its sequences one after another.
    fn pack(&self, rows: &[Vec<&[u32]>], seq_len: usize) -> MicroBatch {
        let mut inputs = vec![self.pad_token as i64; rows.len() * seq_len];
        let mut targets = vec![IGNORE_INDEX; rows.len() * seq_len];
        let mut target_tokens = 0;
        for (r, row) in rows.iter().enumerate() {
            let mut at = r * seq_len;
            for seq in row {
                let n = seq.len() - 1;
                for t in 0..n {
                    inputs[at + t] = seq[t] as i64;
                    targets[at + t] = seq[t + 1] as i64;
                }
                at += n;
                target_tokens += n;
            }
        }
        let documents = self.config.packing.then(|| RowDocuments {
            rows: rows
                .iter()
                .map(|row| row.iter().map(|seq| seq.len() - 1).collect())
                .collect(),
        });
        MicroBatch {
            rows: rows.len(),
            seq_len,
            inputs,
            targets,
            target_tokens,
            documents,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAD: u32 = 99;
    const NO: i64 = IGNORE_INDEX;

    fn config(
        bucket_edges: Vec<usize>,
        tokens_per_micro_batch: usize,
        packing: bool,
    ) -> LoaderConfig {
        LoaderConfig {
            max_len: 4,
            bucket_edges,
            tokens_per_micro_batch,
            global_batch_tokens: 100,
            seed: 7,
            packing,
        }
    }

    /// Chunked into sequences of at most 5 tokens (4 targets): `[1..=5]`, `[6..=10]`,
    /// `[20, 21, 22]` and `[40, 41]`; the one-token document `[30]` has no target.
    fn documents() -> Vec<Vec<u32>> {
        vec![(1..=10).collect(), vec![20, 21, 22], vec![30], vec![40, 41]]
    }

    fn loader(config: LoaderConfig) -> LengthBucketLoader {
        LengthBucketLoader::new(config, &documents(), PAD).unwrap()
    }

    #[test]
    fn documents_are_chunked_into_sequences_of_at_most_max_len_targets() {
        let l = loader(config(vec![2, 4], 4, false));
        assert_eq!(l.sequence_lengths().collect::<Vec<_>>(), [4, 4, 2, 1]);
        let none = LengthBucketLoader::new(config(vec![4], 4, false), &[vec![5]], PAD);
        assert!(none
            .unwrap_err()
            .to_string()
            .contains("no sequence of at least 2 tokens"));
    }

    /// Lengths 1 and 2 go to the bucket of 2, lengths 4 to the bucket of 4; each micro-batch
    /// holds `tokens_per_micro_batch / seq_len` rows; padding has the pad input and
    /// [`IGNORE_INDEX`] target.
    #[test]
    fn sequences_go_to_the_smallest_bucket_that_holds_them_and_are_padded_to_it() {
        let batches = loader(config(vec![2, 4], 4, false)).all_batches();
        assert_eq!(batches.len(), 1);
        let batch = &batches[0];
        assert_eq!(batch.target_tokens, 4 + 4 + 2 + 1);
        let short = &batch.buckets[0];
        assert_eq!((short.seq_len, short.micro_batches.len()), (2, 1));
        let m = &short.micro_batches[0];
        assert_eq!((m.rows, m.seq_len, m.target_tokens), (2, 2, 3));
        assert_eq!(m.inputs, [20, 21, 40, PAD as i64]);
        assert_eq!(m.targets, [21, 22, 41, NO]);
        assert_eq!(m.documents, None);
        let long = &batch.buckets[1];
        assert_eq!(long.seq_len, 4);
        let rows: Vec<_> = long
            .micro_batches
            .iter()
            .map(|m| (m.rows, m.inputs.clone(), m.targets.clone()))
            .collect();
        assert_eq!(
            rows,
            [
                (1, vec![1, 2, 3, 4], vec![2, 3, 4, 5]),
                (1, vec![6, 7, 8, 9], vec![7, 8, 9, 10])
            ]
        );
    }

    /// One bucket of 4, packed first-fit-decreasing: rows [4], [4], [2, 1]; two rows per
    /// micro-batch.
    #[test]
    fn packing_fills_rows_first_fit_decreasing_and_records_the_documents() {
        let batch = &loader(config(vec![4], 8, true)).all_batches()[0];
        let micro = &batch.buckets[0].micro_batches;
        assert_eq!(micro.len(), 2);
        assert_eq!(micro[0].rows, 2);
        assert_eq!(
            micro[0].documents.as_ref().unwrap().rows,
            [vec![4], vec![4]]
        );
        let last = &micro[1];
        assert_eq!(last.rows, 1);
        assert_eq!(last.inputs, [20, 21, 40, PAD as i64]);
        assert_eq!(last.targets, [21, 22, 41, NO]);
        assert_eq!(last.documents.as_ref().unwrap().rows, [vec![2, 1]]);
        assert_eq!(batch.target_tokens, 11);
    }

    /// Validation batches stop once they reach `global_batch_tokens`: 4 + 4 ≥ 5, then 2 + 1.
    #[test]
    fn validation_batches_take_sequences_in_corpus_order_up_to_the_token_budget() {
        let mut c = config(vec![2, 4], 4, false);
        c.global_batch_tokens = 5;
        let tokens: Vec<usize> = loader(c)
            .all_batches()
            .iter()
            .map(|b| b.target_tokens)
            .collect();
        assert_eq!(tokens, [8, 3]);
    }

    /// With a budget of all 11 target tokens, a training batch is one whole epoch in the
    /// seed's order; the next batch starts the next epoch.
    #[test]
    fn a_training_batch_of_a_whole_epoch_serves_every_sequence_once() {
        let mut c = config(vec![2, 4], 4, false);
        c.global_batch_tokens = 11;
        let mut l = loader(c);
        let mut order = l.order.clone();
        order.sort_unstable();
        assert_eq!(order, [0, 1, 2, 3]);
        for epoch in 0..3 {
            let batch = l.next_batch();
            assert_eq!(batch.target_tokens, 11);
            assert_eq!(l.position(), LoaderPosition { epoch, cursor: 4 });
        }
    }

    /// Each batch reaches the budget with its last sequence; a loader that seeks to a saved
    /// position serves exactly the batches that followed it, across epoch boundaries.
    #[test]
    fn a_seek_to_a_saved_position_replays_the_following_batches() {
        let mut c = config(vec![2, 4], 4, false);
        c.global_batch_tokens = 3;
        let mut l = loader(c.clone());
        let _ = (l.next_batch(), l.next_batch());
        let saved = l.position();
        let later: Vec<GlobalBatch> = (0..6).map(|_| l.next_batch()).collect();
        assert!(later.iter().all(|b| b.target_tokens >= 3));
        assert!(
            l.position().epoch >= 2,
            "six batches of >= 3 of 11 tokens cross epochs"
        );
        let mut replay = loader(c);
        replay.seek(saved).unwrap();
        for batch in &later {
            assert_eq!(&replay.next_batch(), batch);
        }
        let past = replay.seek(LoaderPosition {
            epoch: 0,
            cursor: 5,
        });
        assert!(past
            .unwrap_err()
            .to_string()
            .contains("past the 4 sequences"));
    }

    #[test]
    fn impossible_configs_are_refused_saying_what_must_hold() {
        let refused = |c: LoaderConfig| c.validate().unwrap_err().to_string();
        assert!(refused(config(vec![4, 2], 4, false)).contains("strictly ascending"));
        assert!(refused(config(vec![0, 4], 4, false)).contains("positive"));
        assert!(refused(config(vec![2, 3], 4, false)).contains("must equal max_len (4)"));
        assert!(refused(config(vec![4], 3, false)).contains("at least one sequence of max_len"));
        let mut c = config(vec![4], 4, false);
        c.global_batch_tokens = 0;
        assert!(refused(c).contains("global_batch_tokens must be positive"));
    }
}
