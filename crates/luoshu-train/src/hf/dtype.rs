//! The element type of exported weights.

use std::fmt;
use std::str::FromStr;

/// The dtype of the exported weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HfDtype {
    /// Exactly luoshu's parameters.
    #[default]
    F32,
    /// Half the size; each value rounded to nearest even.
    Bf16,
}

impl HfDtype {
    /// The `torch_dtype` of `config.json`.
    pub(super) fn torch_name(self) -> &'static str {
        match self {
            HfDtype::F32 => "float32",
            HfDtype::Bf16 => "bfloat16",
        }
    }
}

impl FromStr for HfDtype {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" => Ok(HfDtype::F32),
            "bf16" => Ok(HfDtype::Bf16),
            other => Err(format!("unknown dtype `{other}`: use f32 or bf16")),
        }
    }
}

impl fmt::Display for HfDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HfDtype::F32 => "f32",
            HfDtype::Bf16 => "bf16",
        })
    }
}
