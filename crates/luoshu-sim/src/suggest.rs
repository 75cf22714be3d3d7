//! "Did you mean": the known name closest to a misspelt one.

/// The entry of `known` fewest edits away from `name`, if it is close enough to be a
/// plausible typo (at most a third of the name's length, and at least one character off).
pub fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|&(d, k)| d <= (k.len().max(name.len()) / 3).max(2) || k.starts_with(name))
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances_by_hand() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("h100-node", "h100-node"), 0);
        assert_eq!(
            closest("h100-nod", &["a800-node", "h100-node"]),
            Some("h100-node")
        );
        assert_eq!(closest("tpu-v5", &["a800-node", "h100-node"]), None);
    }
}
