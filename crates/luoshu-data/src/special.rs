/// The special token that ends every document.
pub const END_OF_TEXT: &str = "<|endoftext|>";
