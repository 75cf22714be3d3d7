//! Which strategy runs each length bucket: `"256:dp2,1024:tp2"` means sequences up to 256
//! tokens run under dp2 and those up to 1024 under tp2.

use crate::{Error, Result};
use luoshu_dist::Strategy;
use std::fmt;
use std::str::FromStr;

/// Ascending upper edges of sequence length, each with its strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketStrategies {
    edges: Vec<(usize, Strategy)>,
}

impl BucketStrategies {
    /// Buckets from `(upper edge, strategy)` pairs; [`Error::Config`] unless there is at least
    /// one, the edges ascend and every strategy uses the same number of devices.
    pub fn new(edges: Vec<(usize, Strategy)>) -> Result<Self> {
        if edges.is_empty() {
            return Err(Error::Config(
                "hot switching needs at least one `EDGE:STRATEGY` entry, e.g. `256:dp2`".into(),
            ));
        }
        if let Some(w) = edges.windows(2).find(|w| w[0].0 >= w[1].0) {
            return Err(Error::Config(format!(
                "bucket edges must ascend: {} comes after {}",
                w[1].0, w[0].0
            )));
        }
        if let Some(&(edge, s)) = edges
            .iter()
            .find(|(_, s)| s.devices() != edges[0].1.devices())
        {
            return Err(Error::Config(format!(
                "every bucket's strategy must use the same ranks: {edge}:{s} uses {}, {}:{} uses \
                 {}",
                s.devices(),
                edges[0].0,
                edges[0].1,
                edges[0].1.devices()
            )));
        }
        Ok(BucketStrategies { edges })
    }

    /// The strategy of sequences of `seq_len` tokens.
    pub fn strategy_for(&self, seq_len: usize) -> Result<Strategy> {
        self.edges
            .iter()
            .find(|(edge, _)| seq_len <= *edge)
            .map(|&(_, s)| s)
            .ok_or_else(|| {
                let (last, strategy) = self.edges[self.edges.len() - 1];
                Error::Config(format!(
                    "a bucket of {seq_len}-token sequences is longer than the last hot-switch \
                     edge {last}: add an edge such as `{seq_len}:{strategy}`"
                ))
            })
    }

    /// Every strategy named, in edge order, each once.
    pub fn strategies(&self) -> Vec<Strategy> {
        let mut out: Vec<Strategy> = Vec::new();
        for &(_, s) in &self.edges {
            if !out.contains(&s) {
                out.push(s);
            }
        }
        out
    }

    /// The strategy of the longest bucket (the default update strategy).
    pub fn longest(&self) -> Strategy {
        self.edges[self.edges.len() - 1].1
    }

    /// Ranks every strategy uses.
    pub fn devices(&self) -> usize {
        self.edges[0].1.devices()
    }
}

impl FromStr for BucketStrategies {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let edges = text
            .split(',')
            .map(|entry| {
                let bad = |why: String| {
                    Error::Config(format!(
                        "hot switch entry `{entry}`: {why} (expected `EDGE:STRATEGY`, e.g. \
                         `256:dp2,1024:tp2`)"
                    ))
                };
                let (edge, strategy) = entry
                    .trim()
                    .split_once(':')
                    .ok_or_else(|| bad("no `:`".into()))?;
                let edge: usize = edge
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("`{edge}` is not a sequence length")))?;
                let strategy: Strategy =
                    strategy.trim().parse().map_err(|e| bad(format!("{e}")))?;
                Ok((edge, strategy))
            })
            .collect::<Result<Vec<_>>>()?;
        BucketStrategies::new(edges)
    }
}

impl fmt::Display for BucketStrategies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries: Vec<String> = self.edges.iter().map(|(e, s)| format!("{e}:{s}")).collect();
        write!(f, "{}", entries.join(","))
    }
}
