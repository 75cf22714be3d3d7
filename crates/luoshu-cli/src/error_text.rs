//! The CLI reports every error as text: one conversion for `map_err`.

/// `e` as the message the user sees.
pub fn text<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}
