//! Byte mutations for the fuzz tests of the readers of bytes luoshu did not necessarily
//! write (cache entries, configs, checkpoints, MPI messages): one definition the crates'
//! tests share, in the lowest crate so every crate can use it.

/// `seed` after `edits`: each `(position, byte, kind)` flips, inserts or deletes a byte, or
/// (rarely) truncates there.
pub fn mutate(seed: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for &(at, byte, kind) in edits {
        let at = at % (bytes.len() + 1);
        match kind % 8 {
            0..=2 if at < bytes.len() => bytes[at] ^= byte.max(1),
            3 | 4 => bytes.insert(at, byte),
            5 | 6 if at < bytes.len() => {
                bytes.remove(at);
            }
            7 => bytes.truncate(at),
            _ => {}
        }
    }
    bytes
}
