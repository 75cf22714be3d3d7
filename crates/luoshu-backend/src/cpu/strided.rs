//! Strided iteration without per-element index math: dimensions are coalesced, and a walk
//! visits *runs* along the innermost dimension, handing each run's starting offsets to a
//! tight inner loop that knows the operands' inner strides.

use std::ops::Range;

/// Ranks up to this walk with an index on the stack.
const STACK_RANK: usize = 8;

/// A row-major walk over a shape shared by `N` strided operands.
pub(crate) struct Walker<const N: usize> {
    /// Coalesced dims, outermost first; never empty.
    dims: Vec<usize>,
    /// Per coalesced dim, each operand's stride.
    strides: Vec<[usize; N]>,
    numel: usize,
}

impl<const N: usize> Walker<N> {
    /// Dims of size 1 are dropped and neighbours merged wherever every operand steps
    /// through them as through one dimension.
    pub(crate) fn new(dims: &[usize], strides: [&[usize]; N]) -> Self {
        let numel = dims.iter().product();
        let mut out_dims: Vec<usize> = Vec::with_capacity(dims.len());
        let mut out_strides: Vec<[usize; N]> = Vec::with_capacity(dims.len());
        for (d, &size) in dims.iter().enumerate() {
            if size == 1 {
                continue;
            }
            let s: [usize; N] = std::array::from_fn(|k| strides[k][d]);
            if let (Some(last_dim), Some(last)) = (out_dims.last_mut(), out_strides.last_mut()) {
                if (0..N).all(|k| last[k] == s[k] * size) {
                    *last_dim *= size;
                    *last = s;
                    continue;
                }
            }
            out_dims.push(size);
            out_strides.push(s);
        }
        if out_dims.is_empty() {
            out_dims.push(1);
            out_strides.push([0; N]);
        }
        Walker {
            dims: out_dims,
            strides: out_strides,
            numel,
        }
    }

    pub(crate) fn numel(&self) -> usize {
        self.numel
    }

    /// Length of the innermost (coalesced) dimension.
    pub(crate) fn inner_len(&self) -> usize {
        self.dims[self.dims.len() - 1]
    }

    /// Each operand's stride along the innermost dimension.
    pub(crate) fn inner_strides(&self) -> [usize; N] {
        self.strides[self.strides.len() - 1]
    }

    /// Each operand's offset of the element at row-major position `pos`.
    pub(crate) fn offsets_of(&self, mut pos: usize) -> [usize; N] {
        let mut offs = [0; N];
        for (&d, s) in self.dims.iter().zip(&self.strides).rev() {
            let i = pos % d;
            pos /= d;
            for k in 0..N {
                offs[k] += i * s[k];
            }
        }
        offs
    }

    /// Calls `f(pos, len, offsets)` for every run of the innermost dimension inside
    /// `range` (row-major positions): elements `pos..pos + len`, operand `k` starting at
    /// `offsets[k]` and stepping by `inner_strides()[k]`.
    pub(crate) fn for_each_run(
        &self,
        range: Range<usize>,
        mut f: impl FnMut(usize, usize, [usize; N]),
    ) {
        if range.start >= range.end {
            return;
        }
        let rank = self.dims.len();
        let inner = self.inner_len();
        let inner_strides = self.inner_strides();
        if rank == 1 {
            let offs = inner_strides.map(|s| s * range.start);
            f(range.start, range.end - range.start, offs);
            return;
        }
        let mut stack = [0usize; STACK_RANK];
        let mut heap = Vec::new();
        let index: &mut [usize] = if rank <= STACK_RANK {
            &mut stack[..rank]
        } else {
            heap.resize(rank, 0);
            &mut heap
        };
        let mut rest = range.start;
        for (i, &d) in index.iter_mut().zip(&self.dims).rev() {
            *i = rest % d;
            rest /= d;
        }
        let mut offs = self.offsets_of(range.start);
        let mut pos = range.start;
        loop {
            let col = index[rank - 1];
            let len = (inner - col).min(range.end - pos);
            f(pos, len, offs);
            pos += len;
            if pos >= range.end {
                return;
            }
            // The run ended at the end of the inner dimension: rewind it, carry outward.
            for (o, s) in offs.iter_mut().zip(inner_strides) {
                *o -= col * s;
            }
            index[rank - 1] = 0;
            for d in (0..rank - 1).rev() {
                index[d] += 1;
                for (o, s) in offs.iter_mut().zip(self.strides[d]) {
                    *o += s;
                }
                if index[d] < self.dims[d] {
                    break;
                }
                for (o, s) in offs.iter_mut().zip(self.strides[d]) {
                    *o -= s * self.dims[d];
                }
                index[d] = 0;
            }
        }
    }
}

/// One operand along a run: `data[0]`, `data[stride]`, ... (stride 0 is a broadcast value).
#[derive(Clone, Copy)]
pub(crate) struct Lane<'a, T> {
    pub(crate) data: &'a [T],
    pub(crate) stride: usize,
}

impl<'a, T> Lane<'a, T> {
    pub(crate) fn new(data: &'a [T], offset: usize, stride: usize) -> Self {
        Lane {
            data: &data[offset..],
            stride,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs<const N: usize>(w: &Walker<N>, range: Range<usize>) -> Vec<(usize, usize, [usize; N])> {
        let mut v = Vec::new();
        w.for_each_run(range, |p, l, o| v.push((p, l, o)));
        v
    }

    #[test]
    fn contiguous_dims_coalesce_into_one_run() {
        let w = Walker::new(&[2, 3, 4], [&[12, 4, 1]]);
        assert_eq!(runs(&w, 0..24), vec![(0, 24, [0])]);
        assert_eq!(runs(&w, 5..9), vec![(5, 4, [5])]);
    }

    #[test]
    fn transposed_walk_visits_columns() {
        // A [3, 2] view of a row-major [2, 3] buffer.
        let w = Walker::new(&[3, 2], [&[1, 3]]);
        assert_eq!(runs(&w, 1..6), vec![(1, 1, [3]), (2, 2, [1]), (4, 2, [2])]);
        assert_eq!(w.offsets_of(5), [5]);
    }

    #[test]
    fn broadcast_and_size_one_dims() {
        let w = Walker::new(&[2, 1, 3], [&[1, 7, 0], &[3, 9, 1]]);
        assert_eq!(w.inner_strides(), [0, 1]);
        assert_eq!(runs(&w, 0..6), vec![(0, 3, [0, 0]), (3, 3, [1, 3])]);
    }
}
