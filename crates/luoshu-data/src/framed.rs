//! Self-validating cache files: a header naming the format and the cache key, the payload,
//! and a checksum, written atomically (temp file + fsync + rename) so a reader never sees
//! half a file and a damaged one is detected instead of trusted.
//!
//! Layout: `MAGIC (8) | version u32 | key length u32 | key | payload length u64 | payload |
//! checksum (16 hex digits of the FNV-1a fingerprint of everything before it)`, little-endian.

use crate::fingerprint;
use crate::{Error, Result};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

const MAGIC: &[u8; 8] = b"LSHCACHE";
/// Bump when the layout or the meaning of any payload changes; older files are rebuilt.
pub(crate) const FORMAT_VERSION: u32 = 2;
const CHECKSUM_LEN: usize = 16;

/// What reading a cache file found.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup<T> {
    /// A valid entry, decoded.
    Hit(T),
    /// No file for this key.
    Miss,
    /// A file exists but cannot be trusted (the reason says why); rebuild and overwrite it.
    Invalid(String),
}

impl<T> Lookup<T> {
    /// Convert a hit's value; a failed conversion turns the hit into [`Lookup::Invalid`].
    pub fn and_then<U>(self, f: impl FnOnce(T) -> std::result::Result<U, String>) -> Lookup<U> {
        match self {
            Lookup::Hit(value) => match f(value) {
                Ok(converted) => Lookup::Hit(converted),
                Err(reason) => Lookup::Invalid(reason),
            },
            Lookup::Miss => Lookup::Miss,
            Lookup::Invalid(reason) => Lookup::Invalid(reason),
        }
    }
}

/// Write `payload` under `key` to `path` atomically, creating the parent directory.
pub(crate) fn write_framed(path: &Path, key: &str, payload: &[u8]) -> Result<()> {
    let mut bytes = Vec::with_capacity(payload.len() + key.len() + 48);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(key.len() as u32).to_le_bytes());
    bytes.extend_from_slice(key.as_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(payload);
    let checksum = fingerprint(&bytes);
    bytes.extend_from_slice(checksum.as_bytes());

    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // Unique per process and call, so concurrent runs filling the same entry never share a
    // temp file; the last rename wins with a complete file either way.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        // Best effort: a leftover temp file is harmless but wastes space.
        let _ = std::fs::remove_file(&temp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// The payload stored under `key` at `path`, checked against magic, version, key, length
/// and checksum.
pub(crate) fn read_framed(path: &Path, key: &str) -> Lookup<Vec<u8>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
        Err(e) => return Lookup::Invalid(format!("cannot read it: {e}")),
    };
    match unframe(&bytes, key) {
        Ok(payload) => Lookup::Hit(payload.to_vec()),
        Err(reason) => Lookup::Invalid(reason),
    }
}

fn unframe<'a>(bytes: &'a [u8], key: &str) -> std::result::Result<&'a [u8], String> {
    let mut reader = ByteReader::new(bytes);
    if reader.take(MAGIC.len())? != MAGIC {
        return Err("not a luoshu cache file (bad magic)".into());
    }
    let version = reader.u32()?;
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}, this luoshu reads {FORMAT_VERSION}"
        ));
    }
    let key_len = reader.u32()? as usize;
    if reader.take(key_len)? != key.as_bytes() {
        return Err(format!("it was written for another key than {key}"));
    }
    let payload_len = reader.u64()?;
    let expected = reader.offset() as u64 + payload_len + CHECKSUM_LEN as u64;
    if expected != bytes.len() as u64 {
        return Err(format!(
            "length {} bytes, the header implies {expected} (truncated or padded)",
            bytes.len()
        ));
    }
    let payload = reader.take(payload_len as usize)?;
    let (body, stored) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if fingerprint(body).as_bytes() != stored {
        return Err("checksum mismatch (the file is corrupted)".into());
    }
    Ok(payload)
}

/// Little-endian reads from a byte slice that report running past its end.
pub(crate) struct ByteReader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> ByteReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        ByteReader { bytes, offset: 0 }
    }

    pub(crate) fn offset(&self) -> usize {
        self.offset
    }

    pub(crate) fn is_at_end(&self) -> bool {
        self.offset == self.bytes.len()
    }

    pub(crate) fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self
            .offset
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| {
            format!(
                "ends early: wanted {n} bytes at offset {} of {}",
                self.offset,
                self.bytes.len()
            )
        })?;
        let slice = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    pub(crate) fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::mutate;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        /// Every mutation of a cache file is rejected with a reason (a flipped bit anywhere
        /// fails the checksum at the latest), never accepted or a panic.
        #[test]
        fn mutated_cache_files_are_rejected_with_a_reason(
            edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6)
        ) {
            let mut good = Vec::new();
            good.extend_from_slice(MAGIC);
            good.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            good.extend_from_slice(&3u32.to_le_bytes());
            good.extend_from_slice(b"key");
            good.extend_from_slice(&5u64.to_le_bytes());
            good.extend_from_slice(b"hello");
            let checksum = fingerprint(&good);
            good.extend_from_slice(checksum.as_bytes());
            prop_assert_eq!(unframe(&good, "key"), Ok(&b"hello"[..]));
            let damaged = mutate(&good, &edits);
            match unframe(&damaged, "key") {
                Ok(payload) => prop_assert!(damaged == good && payload == b"hello"),
                Err(reason) => prop_assert!(!reason.is_empty()),
            }
        }
    }

    fn temp_path(tag: &str) -> std::path::PathBuf {
        std::env::temp_dir()
            .join(format!("luoshu-framed-{tag}-{}", std::process::id()))
            .join("entry.bin")
    }

    #[test]
    fn round_trip_and_every_kind_of_damage_is_detected() {
        let path = temp_path("damage");
        assert_eq!(read_framed(&path, "k"), Lookup::Miss);
        write_framed(&path, "k", b"payload bytes").unwrap();
        assert_eq!(
            read_framed(&path, "k"),
            Lookup::Hit(b"payload bytes".to_vec())
        );
        assert!(matches!(read_framed(&path, "other"), Lookup::Invalid(_)));

        let good = std::fs::read(&path).unwrap();
        let mut flipped = good.clone();
        flipped[good.len() - CHECKSUM_LEN - 3] ^= 0x40;
        let truncated = good[..good.len() - 5].to_vec();
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        let mut bad_version = good.clone();
        bad_version[MAGIC.len()] = 99;
        for (damaged, expected) in [
            (flipped, "checksum"),
            (truncated, "length"),
            (bad_magic, "magic"),
            (bad_version, "version"),
        ] {
            std::fs::write(&path, damaged).unwrap();
            match read_framed(&path, "k") {
                Lookup::Invalid(reason) => assert!(reason.contains(expected), "{reason}"),
                other => panic!("expected Invalid({expected}), got {other:?}"),
            }
        }
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
