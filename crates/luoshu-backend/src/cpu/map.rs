//! The elementwise engine: `out[i] = f(inputs[i])` over a contiguous output and strided
//! inputs. The walk visits runs of the innermost coalesced dimension; each run's inner loop
//! is specialised for contiguous (stride 1) and broadcast (stride 0) operands so it
//! vectorizes. Large outputs are split into fixed chunks for rayon.

use super::access::View;
use super::parallel::for_chunks;
use super::strided::{Lane, Walker};

/// `dst[t] = f(x[t])` along one run.
#[inline]
pub(crate) fn apply1<I: Copy, O: Copy>(dst: &mut [O], x: Lane<'_, I>, f: &impl Fn(I) -> O) {
    let n = dst.len();
    match x.stride {
        1 => {
            for (d, &v) in dst.iter_mut().zip(&x.data[..n]) {
                *d = f(v);
            }
        }
        0 => dst.fill(f(x.data[0])),
        s => {
            for (d, &v) in dst.iter_mut().zip(x.data.iter().step_by(s)) {
                *d = f(v);
            }
        }
    }
}

/// `dst[t] = f(dst[t], x[t])` along one run (in place).
#[inline]
pub(crate) fn apply1_into<I: Copy, O: Copy>(dst: &mut [O], x: Lane<'_, I>, f: &impl Fn(O, I) -> O) {
    let n = dst.len();
    match x.stride {
        1 => {
            for (d, &v) in dst.iter_mut().zip(&x.data[..n]) {
                *d = f(*d, v);
            }
        }
        0 => {
            let v = x.data[0];
            for d in dst.iter_mut() {
                *d = f(*d, v);
            }
        }
        s => {
            for (d, &v) in dst.iter_mut().zip(x.data.iter().step_by(s)) {
                *d = f(*d, v);
            }
        }
    }
}

/// `dst[t] = f(a[t], b[t])` along one run.
#[inline]
fn apply2<A: Copy, B: Copy, O>(
    dst: &mut [O],
    a: Lane<'_, A>,
    b: Lane<'_, B>,
    f: &impl Fn(A, B) -> O,
) {
    let n = dst.len();
    match (a.stride, b.stride) {
        (1, 1) => {
            for ((d, &x), &y) in dst.iter_mut().zip(&a.data[..n]).zip(&b.data[..n]) {
                *d = f(x, y);
            }
        }
        (1, 0) => {
            let y = b.data[0];
            for (d, &x) in dst.iter_mut().zip(&a.data[..n]) {
                *d = f(x, y);
            }
        }
        (0, 1) => {
            let x = a.data[0];
            for (d, &y) in dst.iter_mut().zip(&b.data[..n]) {
                *d = f(x, y);
            }
        }
        (sa, sb) => {
            for (t, d) in dst.iter_mut().enumerate() {
                *d = f(a.data[t * sa], b.data[t * sb]);
            }
        }
    }
}

/// `out = f(x)` elementwise; `x` has `out`'s shape.
pub(crate) fn map1<I, O>(x: View<'_, I>, out: &mut [O], f: impl Fn(I) -> O + Sync + Send)
where
    I: Copy + Sync,
    O: Copy + Send,
{
    let walker = Walker::new(x.dims, [x.strides]);
    let [sx] = walker.inner_strides();
    for_chunks(out, |start, chunk| {
        walker.for_each_run(start..start + chunk.len(), |pos, len, [ox]| {
            apply1(
                &mut chunk[pos - start..][..len],
                Lane::new(x.data, ox, sx),
                &f,
            )
        })
    });
}

/// `out = f(out)` elementwise (in place).
pub(crate) fn map_in_place<T: Copy + Send>(out: &mut [T], f: impl Fn(T) -> T + Sync + Send) {
    for_chunks(out, |_, chunk| {
        for v in chunk.iter_mut() {
            *v = f(*v);
        }
    });
}

/// `out = f(out, x)` elementwise; `x` has `out`'s shape.
pub(crate) fn map_into<I, O>(x: View<'_, I>, out: &mut [O], f: impl Fn(O, I) -> O + Sync + Send)
where
    I: Copy + Sync,
    O: Copy + Send,
{
    let walker = Walker::new(x.dims, [x.strides]);
    let [sx] = walker.inner_strides();
    for_chunks(out, |start, chunk| {
        walker.for_each_run(start..start + chunk.len(), |pos, len, [ox]| {
            apply1_into(
                &mut chunk[pos - start..][..len],
                Lane::new(x.data, ox, sx),
                &f,
            )
        })
    });
}

/// `out = f(a, b)` elementwise; `a` and `b` have `out`'s shape.
pub(crate) fn map2<A, B, O>(
    a: View<'_, A>,
    b: View<'_, B>,
    out: &mut [O],
    f: impl Fn(A, B) -> O + Sync + Send,
) where
    A: Copy + Sync,
    B: Copy + Sync,
    O: Send,
{
    let walker = Walker::new(a.dims, [a.strides, b.strides]);
    let [sa, sb] = walker.inner_strides();
    for_chunks(out, |start, chunk| {
        walker.for_each_run(start..start + chunk.len(), |pos, len, [oa, ob]| {
            let dst = &mut chunk[pos - start..][..len];
            apply2(
                dst,
                Lane::new(a.data, oa, sa),
                Lane::new(b.data, ob, sb),
                &f,
            )
        })
    });
}

/// `out = f(c, a, b)` elementwise; all have `out`'s shape.
pub(crate) fn map3<C, A, B, O>(
    c: View<'_, C>,
    a: View<'_, A>,
    b: View<'_, B>,
    out: &mut [O],
    f: impl Fn(C, A, B) -> O + Sync + Send,
) where
    C: Copy + Sync,
    A: Copy + Sync,
    B: Copy + Sync,
    O: Send,
{
    let walker = Walker::new(a.dims, [c.strides, a.strides, b.strides]);
    let [sc, sa, sb] = walker.inner_strides();
    for_chunks(out, |start, chunk| {
        walker.for_each_run(start..start + chunk.len(), |pos, len, [oc, oa, ob]| {
            let dst = &mut chunk[pos - start..][..len];
            let (c, a, b) = (&c.data[oc..], &a.data[oa..], &b.data[ob..]);
            if (sc, sa, sb) == (1, 1, 1) {
                for (((d, &x), &y), &z) in
                    dst.iter_mut().zip(&c[..len]).zip(&a[..len]).zip(&b[..len])
                {
                    *d = f(x, y, z);
                }
            } else {
                for (t, d) in dst.iter_mut().enumerate() {
                    *d = f(c[t * sc], a[t * sa], b[t * sb]);
                }
            }
        })
    });
}
