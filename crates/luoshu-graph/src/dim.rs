//! Symbolic dimensions and shapes.

use crate::{Error, Result};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Values of the symbolic dimensions, bound when a plan is built (e.g. `batch = 8`,
/// `seq = 256`), so one graph serves every bucket length.
pub type Bindings = HashMap<String, usize>;

/// A dimension: a constant times a product of named symbols (`3`, `seq`, `4·batch·seq`).
///
/// Monomials are closed under the products that reshapes of transformer activations need
/// (`[batch, seq, d] -> [batch·seq, d]`, `[.., h·dh] -> [.., h, dh]`) and compare exactly.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dim {
    coeff: usize,
    /// Symbol names, sorted, with repetition for powers.
    syms: Vec<Arc<str>>,
}

impl Dim {
    /// The constant `n`.
    pub fn fixed(n: usize) -> Self {
        Dim {
            coeff: n,
            syms: Vec::new(),
        }
    }

    /// The symbol `name`, bound to a value by [`Bindings`] when a plan is built.
    pub fn sym(name: &str) -> Self {
        Dim {
            coeff: 1,
            syms: vec![Arc::from(name)],
        }
    }

    /// The constant value, if this dimension has no symbols.
    pub fn as_fixed(&self) -> Option<usize> {
        self.syms.is_empty().then_some(self.coeff)
    }

    /// Whether this is the constant 1 (a dim that broadcasting stretches).
    pub fn is_one(&self) -> bool {
        self.as_fixed() == Some(1)
    }

    /// The symbol names of the product, sorted, a name repeated once per power.
    pub fn symbols(&self) -> impl Iterator<Item = &str> {
        self.syms.iter().map(|s| s.as_ref())
    }

    /// Product of two dimensions.
    pub fn mul(&self, other: &Dim) -> Dim {
        let coeff = self.coeff.saturating_mul(other.coeff);
        if coeff == 0 {
            return Dim::fixed(0);
        }
        let mut syms: Vec<Arc<str>> = self.syms.iter().chain(&other.syms).cloned().collect();
        syms.sort();
        Dim { coeff, syms }
    }

    /// `self + other` when it is a monomial: both have the same symbols (`seq + 2·seq =
    /// 3·seq`), or one of them is zero.
    pub fn add(&self, other: &Dim) -> Option<Dim> {
        if other.coeff == 0 {
            return Some(self.clone());
        }
        if self.coeff == 0 {
            return Some(other.clone());
        }
        if self.syms != other.syms {
            return None;
        }
        Some(Dim {
            coeff: self.coeff.checked_add(other.coeff)?,
            syms: self.syms.clone(),
        })
    }

    /// `self / other` when it is exact as monomials (`4·seq / 2 = 2·seq`).
    pub fn div_exact(&self, other: &Dim) -> Option<Dim> {
        if other.coeff == 0 || !self.coeff.is_multiple_of(other.coeff) {
            return None;
        }
        let mut syms = self.syms.clone();
        for s in &other.syms {
            let pos = syms.iter().position(|x| x == s)?;
            syms.remove(pos);
        }
        Some(Dim {
            coeff: self.coeff / other.coeff,
            syms,
        })
    }

    /// The value under `bindings`; an error names the first unbound symbol.
    pub fn eval(&self, bindings: &Bindings) -> Result<usize> {
        self.syms.iter().try_fold(self.coeff, |acc, s| {
            let v = bindings.get(s.as_ref()).ok_or_else(|| Error::UnboundDim {
                name: s.to_string(),
            })?;
            acc.checked_mul(*v).ok_or_else(|| Error::Invalid {
                detail: format!("dimension {self} overflows usize under the bindings"),
            })
        })
    }
}

/// Product of all dims (the element count of a shape).
pub fn numel(dims: &[Dim]) -> Dim {
    dims.iter().fold(Dim::fixed(1), |acc, d| acc.mul(d))
}

/// Evaluate every dim of a shape.
pub fn eval_shape(dims: &[Dim], bindings: &Bindings) -> Result<Vec<usize>> {
    dims.iter().map(|d| d.eval(bindings)).collect()
}

/// A shape of constant dims.
pub fn fixed_shape(dims: &[usize]) -> Vec<Dim> {
    dims.iter().map(|&d| Dim::fixed(d)).collect()
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.syms.is_empty() {
            return write!(f, "{}", self.coeff);
        }
        if self.coeff != 1 {
            write!(f, "{}·", self.coeff)?;
        }
        let names: Vec<&str> = self.symbols().collect();
        write!(f, "{}", names.join("·"))
    }
}

impl fmt::Debug for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Self {
        Dim::fixed(n)
    }
}

impl From<&str> for Dim {
    fn from(name: &str) -> Self {
        Dim::sym(name)
    }
}
