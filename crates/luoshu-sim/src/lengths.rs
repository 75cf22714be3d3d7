//! Sequence lengths: reading a file of lengths, and drawing a global batch from a
//! distribution given as observed lengths.

use crate::{Error, Result};
use luoshu_tensor::rng;

/// Lengths written one per line (blank lines and `#` comments skipped); `origin` names
/// the source in errors.
pub fn parse_lengths(text: &str, origin: &str) -> Result<Vec<usize>> {
    let mut lengths = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match line.parse::<usize>() {
            Ok(0) | Err(_) => {
                return Err(Error::Input(format!(
                    "{origin}:{}: `{line}` is not a positive sequence length",
                    number + 1
                )))
            }
            Ok(len) => lengths.push(len),
        }
    }
    if lengths.is_empty() {
        return Err(Error::Input(format!("{origin}: no lengths in it")));
    }
    Ok(lengths)
}

/// `count` sequences drawn uniformly (with replacement, by the counter-based generator
/// keyed by `seed`) from `observed`, each cut to `context` tokens (longer documents are
/// truncated, as a loader with that maximum length does).
pub fn global_batch(
    observed: &[usize],
    count: usize,
    context: usize,
    seed: u64,
) -> Result<Vec<usize>> {
    if observed.is_empty() || count == 0 || context == 0 {
        return Err(Error::Input(format!(
            "a global batch needs lengths to draw from ({} given), at least one sequence \
             ({count} asked) and a positive context ({context})",
            observed.len()
        )));
    }
    Ok((0..count as u64)
        .map(|i| {
            let pick = rng::bits(seed, 0, i) % observed.len() as u64;
            observed[pick as usize].min(context)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_of_lengths() {
        assert_eq!(parse_lengths("3\n\n# x\n7 # y\n", "f").unwrap(), vec![3, 7]);
        let err = parse_lengths("3\nabc\n", "f").unwrap_err().to_string();
        assert!(err.contains("f:2") && err.contains("abc"), "{err}");
        assert!(parse_lengths("0\n", "f").is_err());
        assert!(parse_lengths("\n", "f").is_err());
    }

    #[test]
    fn draws_are_deterministic_and_cut_to_the_context() {
        let batch = global_batch(&[10, 100, 1000], 64, 500, 7).unwrap();
        assert_eq!(batch, global_batch(&[10, 100, 1000], 64, 500, 7).unwrap());
        assert!(batch.iter().all(|&l| [10, 100, 500].contains(&l)));
        assert!(batch.contains(&500) && batch.contains(&10));
        assert!(global_batch(&[], 4, 8, 0).is_err());
    }
}
