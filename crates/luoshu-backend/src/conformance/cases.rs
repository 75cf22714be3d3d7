//! Deterministic random inputs, laid out as every kind of view a kernel must accept.
use crate::Result;
use luoshu_tensor::{rng, DType, Layout, Tensor};

/// Where input values are drawn from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dist {
    /// Uniform in `[lo, hi)`, then rounded to the dtype.
    Uniform(f64, f64),
    /// Integers in `[lo, hi)` (small sets make ties and repeats likely).
    Ints(i64, i64),
}

impl Dist {
    /// A sensible default range for `dtype`.
    pub fn default_for(dtype: DType) -> Dist {
        match dtype {
            DType::U8 => Dist::Ints(0, 100),
            DType::Bool => Dist::Ints(0, 2),
            d if d.is_integer() => Dist::Ints(-50, 50),
            _ => Dist::Uniform(-2.0, 2.0),
        }
    }
}

/// How an input tensor of a given logical shape sits in its storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Contiguous,
    /// Contiguous, but starting a few elements into its storage.
    Offset,
    /// The last two dims swapped (column-major matrices).
    Transposed,
    /// Every other element of the last dim, starting at 1 (stride 2, offset 1).
    Stepped,
    /// Dim 0 broadcast from size 1 (stride 0).
    Broadcast,
}

impl View {
    pub const ALL: [View; 5] = [
        View::Contiguous,
        View::Offset,
        View::Transposed,
        View::Stepped,
        View::Broadcast,
    ];

    pub fn name(self) -> &'static str {
        match self {
            View::Contiguous => "contiguous",
            View::Offset => "offset",
            View::Transposed => "transposed",
            View::Stepped => "stepped",
            View::Broadcast => "broadcast",
        }
    }
}

/// A shape of 67,591 elements: above the 65,536 elements of work (`PARALLEL_MIN_WORK`)
/// from which the CPU backend splits a kernel into rayon tasks, so every op family checks
/// its parallel path against the reference, not only the serial one.
pub const LARGE: [usize; 2] = [257, 263];

/// Elements in front of an [`View::Offset`] view.
const OFFSET: usize = 3;

/// A deterministic generator: each tensor it makes draws from a fresh counter-based stream.
pub struct Gen {
    seed: u64,
    stream: u64,
}

impl Gen {
    pub fn new(seed: u64) -> Self {
        Gen { seed, stream: 0 }
    }

    /// `n` values from `dist`.
    pub fn values(&mut self, n: usize, dist: Dist) -> Vec<f64> {
        self.stream += 1;
        let (seed, stream) = (self.seed, self.stream);
        let u = move |i: usize| rng::uniform(seed, stream, i as u64) as f64;
        match dist {
            Dist::Uniform(lo, hi) => (0..n).map(|i| lo + (hi - lo) * u(i)).collect(),
            Dist::Ints(lo, hi) => (0..n)
                .map(|i| (lo as f64 + ((hi - lo) as f64 * u(i)).floor()).min((hi - 1) as f64))
                .collect(),
        }
    }

    /// A contiguous tensor.
    pub fn tensor(&mut self, dtype: DType, dims: &[usize], dist: Dist) -> Result<Tensor> {
        self.view(dtype, dims, dist, View::Contiguous)
    }

    /// A tensor of logical shape `dims` laid out as `view`. Views a shape cannot express
    /// (a transpose of a vector, a broadcast of a size-1 dim) fall back to a simpler one.
    pub fn view(&mut self, dtype: DType, dims: &[usize], dist: Dist, view: View) -> Result<Tensor> {
        let rank = dims.len();
        let numel: usize = dims.iter().product();
        match view {
            View::Contiguous => Ok(Tensor::from_f64(&self.values(numel, dist), dtype, dims)?),
            View::Transposed if rank >= 2 => {
                let mut swapped = dims.to_vec();
                swapped.swap(rank - 2, rank - 1);
                let t = Tensor::from_f64(&self.values(numel, dist), dtype, swapped)?;
                Ok(t.transpose(rank - 2, rank - 1)?)
            }
            View::Transposed | View::Stepped if rank >= 1 => {
                let last = dims[rank - 1];
                let mut wide = dims.to_vec();
                wide[rank - 1] = 2 * last + 1;
                let n = wide.iter().product();
                let t = Tensor::from_f64(&self.values(n, dist), dtype, wide)?;
                Ok(t.slice(rank - 1, 1, 2 * last + 1, 2)?)
            }
            View::Broadcast if rank >= 1 && dims[0] != 1 => {
                let mut one = dims.to_vec();
                one[0] = 1;
                let n = one.iter().product();
                let t = Tensor::from_f64(&self.values(n, dist), dtype, one)?;
                Ok(t.broadcast_to(dims)?)
            }
            _ => {
                let flat =
                    Tensor::from_f64(&self.values(numel + OFFSET, dist), dtype, [numel + OFFSET])?;
                Ok(flat.with_layout(Layout::contiguous_at(dims, OFFSET)?)?)
            }
        }
    }

    /// Indices in `0..bound` (bound must be positive unless `n == 0`).
    pub fn indices(&mut self, dtype: DType, dims: &[usize], bound: usize) -> Result<Tensor> {
        self.tensor(dtype, dims, Dist::Ints(0, bound.max(1) as i64))
    }
}

/// A fresh contiguous copy with its own storage (host-side, so in-place ops can run on it
/// without touching the input that is compared afterwards).
pub fn fresh(t: &Tensor) -> Result<Tensor> {
    Ok(t.to_contiguous()?)
}

/// A buffer of `dims` plus `OFFSET` leading elements, and the contiguous view of `dims`
/// inside it: checks outputs at a non-zero offset and that nothing outside is written.
pub fn offset_output(
    ops: &crate::Ops<'_>,
    dtype: DType,
    dims: &[usize],
) -> Result<(Tensor, Tensor)> {
    let numel: usize = dims.iter().product();
    let buffer = ops.alloc(dtype, &[numel + OFFSET])?;
    let out = buffer.with_layout(Layout::contiguous_at(dims, OFFSET)?)?;
    Ok((buffer, out))
}

/// A readable label for one input: `f32[3, 5] transposed`.
pub fn label(dtype: DType, dims: &[usize], view: View) -> String {
    format!("{dtype}{dims:?} {}", view.name())
}
