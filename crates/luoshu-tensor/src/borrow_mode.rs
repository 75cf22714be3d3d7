//! Whether a storage claim reads or writes (see `claims.rs`).

/// Whether a claim reads or writes its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BorrowMode {
    /// Shared: any number of readers of overlapping bytes may coexist.
    Read,
    /// Exclusive: no other claim may overlap the bytes.
    Write,
}

impl BorrowMode {
    /// The verb for error messages.
    pub fn verb(self) -> &'static str {
        match self {
            BorrowMode::Read => "read",
            BorrowMode::Write => "write",
        }
    }
}
