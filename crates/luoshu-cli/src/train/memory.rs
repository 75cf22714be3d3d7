//! Refuse a run that cannot fit in memory before anything is allocated: the estimate of
//! `luoshu_train::memory_estimate` against `--memory-per-rank` and the memory this machine
//! has available.

use super::config::RunConfig;
use luoshu_dist::Strategy;
use luoshu_model::ModelConfig;
use luoshu_train::hot::BucketStrategies;
use luoshu_train::memory_estimate::{check_fits, check_hot_fits, MemoryEstimate};

/// How many ranks train, and how many of them share this process's memory.
#[derive(Debug, Clone, Copy)]
pub struct Ranks {
    pub devices: usize,
    pub local: usize,
}

/// Parse a byte count: `123`, `512K`, `64M`, `1.5G`, `2T` (binary units; `GiB`, `GB` and
/// lowercase are accepted too).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let shift = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => {
            return Err(format!(
                "unknown unit in `{text}`: use K, M, G or T (e.g. 16G)"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size: write e.g. 16G, 512M or 1073741824"))?;
    Ok((value * (1u64 << shift) as f64) as u64)
}

/// `MemAvailable` of `/proc/meminfo` in bytes, if this system has it.
pub(crate) fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The bytes one rank may use and where that limit comes from. Ranks that are threads of
/// this process (`local_ranks`) share this machine's available memory;
/// `memory_per_rank` caps each rank further.
fn limit(local_ranks: usize, memory_per_rank: Option<u64>) -> (u64, String) {
    let available = available_memory().map(|bytes| {
        let share = bytes / local_ranks.max(1) as u64;
        let budget = match local_ranks {
            1 => "this machine's available memory (MemAvailable)".to_string(),
            n => format!("this machine's available memory (MemAvailable) shared by {n} ranks"),
        };
        (share, budget)
    });
    let flag = memory_per_rank.map(|bytes| (bytes, "--memory-per-rank".to_string()));
    match (flag, available) {
        (Some(a), Some(b)) => std::cmp::min_by_key(a, b, |(bytes, _)| *bytes),
        (Some(only), None) | (None, Some(only)) => only,
        (None, None) => (u64::MAX, "unlimited".to_string()),
    }
}

/// The per-rank estimate of a static strategy, or an error naming it, the budget and the
/// remedies.
pub fn check(
    config: &RunConfig,
    model: &ModelConfig,
    strategy: Strategy,
    ranks: Ranks,
    memory_per_rank: Option<u64>,
) -> Result<MemoryEstimate, String> {
    let (limit, budget) = limit(ranks.local, memory_per_rank);
    check_fits(
        model,
        strategy,
        config.data.tokens_per_micro_batch,
        limit,
        &budget,
    )
    .map_err(|e| e.to_string())
}

/// The same for hot switching over `buckets` with `update` (a runtime per strategy).
pub fn check_plan(
    config: &RunConfig,
    model: &ModelConfig,
    (buckets, update): (&BucketStrategies, Strategy),
    ranks: Ranks,
    memory_per_rank: Option<u64>,
) -> Result<MemoryEstimate, String> {
    let (limit, budget) = limit(ranks.local, memory_per_rank);
    let mut strategies = vec![update];
    strategies.extend(buckets.strategies().into_iter().filter(|&s| s != update));
    check_hot_fits(
        model,
        &strategies,
        update,
        config.data.tokens_per_micro_batch,
        limit,
        &budget,
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units_and_bad_ones_say_how_to_write_them() {
        assert_eq!(parse_bytes("123").unwrap(), 123);
        assert_eq!(parse_bytes("512K").unwrap(), 512 << 10);
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("1 TB").unwrap(), 1 << 40);
        assert!(parse_bytes("12Q").unwrap_err().contains("use K, M, G or T"));
        assert!(parse_bytes("lots").unwrap_err().contains("e.g. 16G"));
    }
}
