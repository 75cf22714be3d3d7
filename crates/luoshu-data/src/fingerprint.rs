/// A 64-bit FNV-1a fingerprint of `bytes`, as 16 hex digits: the integrity check of cache
/// files and checkpoints (detects corrupt files and a changed tokenizer; not a
/// cryptographic hash).
pub fn fingerprint(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    format!("{hash:016x}")
}
