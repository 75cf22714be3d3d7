//! Strided layouts: how a tensor's logical elements map onto storage, and the zero-copy view ops.

use crate::{Error, Result, Shape};

/// How a tensor's logical elements map onto its storage: shape, strides (in elements) and
/// the offset of element `[0, 0, ...]`. Every view op (reshape, permute, slice, broadcast,
/// squeeze) is a pure function from layout to layout and never touches data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Layout {
    shape: Shape,
    strides: Vec<usize>,
    offset: usize,
}

impl Layout {
    /// Row-major contiguous layout starting at `offset`.
    pub fn contiguous_at(shape: impl Into<Shape>, offset: usize) -> Result<Self> {
        let shape = shape.into();
        let offset = if shape.checked_numel()? == 0 {
            0
        } else {
            offset
        };
        let strides = shape.contiguous_strides();
        Ok(Layout {
            shape,
            strides,
            offset,
        })
    }

    /// Row-major contiguous layout starting at storage element 0; fails if the element count
    /// overflows.
    pub fn contiguous(shape: impl Into<Shape>) -> Result<Self> {
        Self::contiguous_at(shape, 0)
    }

    /// A layout from explicit parts; the caller checks it fits its storage with
    /// [`Layout::storage_span`].
    pub fn from_parts(shape: impl Into<Shape>, strides: Vec<usize>, offset: usize) -> Result<Self> {
        let shape = shape.into();
        if strides.len() != shape.rank() {
            return Err(Error::Invalid {
                op: "layout",
                detail: format!("{} strides for shape {shape}", strides.len()),
            });
        }
        // An empty tensor touches no storage; a zero offset keeps every slice of it in bounds.
        let offset = if shape.checked_numel()? == 0 {
            0
        } else {
            offset
        };
        Ok(Layout {
            shape,
            strides,
            offset,
        })
    }

    /// Logical shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }
    /// Logical extents, outermost first.
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }
    /// Storage step (in elements) of each dimension; 0 on broadcast dimensions.
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }
    /// Storage index (in elements) of the first logical element; 0 for an empty tensor.
    pub fn offset(&self) -> usize {
        self.offset
    }
    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.rank()
    }
    /// Number of logical elements (broadcast elements counted as often as they are seen).
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }

    /// True when elements are laid out row-major without gaps (offset may be non-zero).
    pub fn is_contiguous(&self) -> bool {
        if self.numel() == 0 {
            return true;
        }
        let mut expected = 1usize;
        for (&d, &s) in self.dims().iter().zip(&self.strides).rev() {
            if d != 1 && s != expected {
                return false;
            }
            expected *= d;
        }
        true
    }

    /// One past the largest storage index this layout can touch (0 for an empty tensor).
    pub fn storage_span(&self) -> usize {
        if self.numel() == 0 {
            return 0;
        }
        self.offset
            + self
                .dims()
                .iter()
                .zip(&self.strides)
                .map(|(&d, &s)| (d - 1) * s)
                .sum::<usize>()
            + 1
    }

    /// Reshape without copying. Fails with [`Error::ReshapeNeedsCopy`] exactly when the new
    /// shape cannot be expressed with strides over the same storage.
    pub fn reshape(&self, new_shape: impl Into<Shape>) -> Result<Layout> {
        let new_shape = new_shape.into();
        let new_numel = new_shape.checked_numel()?;
        if new_numel != self.numel() {
            return Err(Error::ShapeMismatch {
                op: "reshape",
                expected: self.dims().to_vec(),
                got: new_shape.dims().to_vec(),
            });
        }
        if new_numel == 0 || self.is_contiguous() {
            return Layout::contiguous_at(new_shape, self.offset);
        }
        // Merge the old dims into runs that are contiguous with each other; each new dim must
        // fall inside one run (NumPy's no-copy reshape rule). Size-1 dims carry no constraint.
        let old: Vec<(usize, usize)> = self
            .dims()
            .iter()
            .zip(&self.strides)
            .filter(|(&d, _)| d != 1)
            .map(|(&d, &s)| (d, s))
            .collect();
        let new_dims = new_shape.dims();
        let mut new_strides = vec![0usize; new_dims.len()];
        let (mut oi, mut ni) = (0usize, 0usize);
        while ni < new_dims.len() {
            if new_dims[ni] == 1 {
                new_strides[ni] = 1;
                ni += 1;
                continue;
            }
            // Grow a group of old dims and a group of new dims until their products match.
            let (o_start, n_start) = (oi, ni);
            let (mut op, mut np) = (old[oi].0, new_dims[ni]);
            oi += 1;
            ni += 1;
            while op != np {
                if op < np {
                    op *= old[oi].0;
                    oi += 1;
                } else {
                    np *= new_dims[ni];
                    ni += 1;
                }
            }
            for k in o_start..oi - 1 {
                if old[k].1 != old[k + 1].0 * old[k + 1].1 {
                    return Err(Error::ReshapeNeedsCopy {
                        from: self.dims().to_vec(),
                        strides: self.strides.clone(),
                        to: new_dims.to_vec(),
                    });
                }
            }
            let mut stride = old[oi - 1].1;
            for k in (n_start..ni).rev() {
                new_strides[k] = stride;
                stride *= new_dims[k];
            }
        }
        Layout::from_parts(new_shape, new_strides, self.offset)
    }

    /// Reorder dimensions: output dim `i` is input dim `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Layout> {
        let rank = self.rank();
        let mut seen = vec![false; rank];
        if perm.len() != rank {
            return Err(Error::Invalid {
                op: "permute",
                detail: format!("permutation {perm:?} for a tensor of rank {rank}"),
            });
        }
        for &p in perm {
            if p >= rank || seen[p] {
                return Err(Error::Invalid {
                    op: "permute",
                    detail: format!("{perm:?} is not a permutation of 0..{rank}"),
                });
            }
            seen[p] = true;
        }
        let dims = perm.iter().map(|&p| self.dims()[p]).collect::<Vec<_>>();
        let strides = perm.iter().map(|&p| self.strides[p]).collect();
        Layout::from_parts(dims, strides, self.offset)
    }

    /// Swaps dimensions `a` and `b`; [`Error::DimOutOfRange`] if either does not exist.
    pub fn transpose(&self, a: usize, b: usize) -> Result<Layout> {
        let rank = self.rank();
        for d in [a, b] {
            self.shape.dim("transpose", d)?;
        }
        let mut perm: Vec<usize> = (0..rank).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Elements `start, start+step, ...` below `end` along `dim`.
    pub fn slice(&self, dim: usize, start: usize, end: usize, step: usize) -> Result<Layout> {
        let size = self.shape.dim("slice", dim)?;
        if step == 0 || start > end || end > size {
            return Err(Error::Invalid {
                op: "slice",
                detail: format!(
                    "range {start}..{end} step {step} on dimension {dim} of size {size}"
                ),
            });
        }
        let len = (end - start).div_ceil(step);
        let mut dims = self.dims().to_vec();
        let mut strides = self.strides.clone();
        let offset = if len == 0 {
            self.offset
        } else {
            self.offset + start * self.strides[dim]
        };
        dims[dim] = len;
        strides[dim] *= step;
        Layout::from_parts(dims, strides, offset)
    }

    /// The `len` elements from `start` along `dim`, i.e. `slice(dim, start, start + len, 1)`.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Layout> {
        let end = start.checked_add(len).ok_or(Error::Invalid {
            op: "narrow",
            detail: format!("start {start} + length {len} overflows"),
        })?;
        self.slice(dim, start, end, 1)
    }

    /// Broadcast to `shape` (NumPy rules) with zero strides on the expanded dimensions.
    pub fn broadcast_to(&self, shape: impl Into<Shape>) -> Result<Layout> {
        let shape = shape.into();
        let target = shape.dims();
        if target.len() < self.rank() {
            return Err(Error::NotBroadcastable {
                op: "broadcast_to",
                lhs: self.dims().to_vec(),
                rhs: target.to_vec(),
            });
        }
        let lead = target.len() - self.rank();
        let mut strides = vec![0usize; target.len()];
        for (i, (&d, &s)) in self.dims().iter().zip(&self.strides).enumerate() {
            let t = target[lead + i];
            if d == t {
                strides[lead + i] = s;
            } else if d != 1 {
                return Err(Error::NotBroadcastable {
                    op: "broadcast_to",
                    lhs: self.dims().to_vec(),
                    rhs: target.to_vec(),
                });
            }
        }
        Layout::from_parts(shape, strides, self.offset)
    }

    /// Removes dimension `dim`, which must have extent 1.
    pub fn squeeze(&self, dim: usize) -> Result<Layout> {
        let size = self.shape.dim("squeeze", dim)?;
        if size != 1 {
            return Err(Error::Invalid {
                op: "squeeze",
                detail: format!("dimension {dim} has size {size}, not 1"),
            });
        }
        let mut dims = self.dims().to_vec();
        let mut strides = self.strides.clone();
        dims.remove(dim);
        strides.remove(dim);
        Layout::from_parts(dims, strides, self.offset)
    }

    /// Inserts a dimension of extent 1 before dimension `dim` (`dim == rank` appends it).
    pub fn unsqueeze(&self, dim: usize) -> Result<Layout> {
        if dim > self.rank() {
            return Err(Error::DimOutOfRange {
                op: "unsqueeze",
                dim,
                rank: self.rank(),
            });
        }
        let mut dims = self.dims().to_vec();
        let mut strides = self.strides.clone();
        let stride = if dim < self.rank() {
            self.strides[dim] * self.dims()[dim]
        } else {
            1
        };
        dims.insert(dim, 1);
        strides.insert(dim, stride);
        Layout::from_parts(dims, strides, self.offset)
    }

    /// Storage index of every element in row-major logical order.
    pub fn offsets(&self) -> StridedOffsets<'_> {
        StridedOffsets {
            layout: self,
            index: vec![0; self.rank()],
            next: self.offset,
            remaining: self.numel(),
        }
    }

    /// Storage index of the element at a multi-index.
    pub fn offset_of(&self, index: &[usize]) -> usize {
        self.offset
            + index
                .iter()
                .zip(&self.strides)
                .map(|(&i, &s)| i * s)
                .sum::<usize>()
    }
}

/// Iterator over storage indices in logical order (see [`Layout::offsets`]).
pub struct StridedOffsets<'a> {
    layout: &'a Layout,
    index: Vec<usize>,
    next: usize,
    remaining: usize,
}

impl Iterator for StridedOffsets<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let current = self.next;
        let dims = self.layout.dims();
        let strides = self.layout.strides();
        for d in (0..dims.len()).rev() {
            self.index[d] += 1;
            self.next += strides[d];
            if self.index[d] < dims[d] {
                break;
            }
            self.next -= strides[d] * dims[d];
            self.index[d] = 0;
        }
        Some(current)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for StridedOffsets<'_> {}
