//! Property tests of the view algebra: views compose, and reshape fails exactly when the
//! strides cannot express the new shape.

use luoshu_tensor::{Error, Layout, Tensor};
use proptest::prelude::*;

/// A tensor 0..n of the given dims, so every element names its own position.
fn iota(dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    let values: Vec<f32> = (0..n).map(|i| i as f32).collect();
    Tensor::from_slice(&values, dims.to_vec()).unwrap()
}

/// Elements of `t` in logical order, read through the layout.
fn values(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

/// Row-major elements of `x` permuted by `perm`, computed by index arithmetic only.
fn permuted_values(x: &[f32], dims: &[usize], perm: &[usize]) -> Vec<f32> {
    let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    let in_strides = luoshu_tensor::Shape::new(dims.to_vec()).contiguous_strides();
    let n: usize = out_dims.iter().product();
    (0..n)
        .map(|mut flat| {
            let mut offset = 0;
            for (k, &d) in out_dims.iter().enumerate().rev() {
                offset += (flat % d) * in_strides[perm[k]];
                flat /= d;
            }
            x[offset]
        })
        .collect()
}

fn dims_strategy() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..5, 1..5)
}

fn perm_strategy(rank: usize) -> impl Strategy<Value = Vec<usize>> {
    Just((0..rank).collect::<Vec<_>>()).prop_shuffle()
}

/// Whether `offsets` (in row-major order of `dims`) are `base + Σ index_i · stride_i` for
/// some strides — i.e. expressible as a view.
fn is_strided(offsets: &[usize], dims: &[usize]) -> bool {
    let strides = luoshu_tensor::Shape::new(dims.to_vec()).contiguous_strides();
    let steps: Vec<isize> = (0..dims.len())
        .map(|d| {
            if dims[d] < 2 {
                0
            } else {
                offsets[strides[d]] as isize - offsets[0] as isize
            }
        })
        .collect();
    offsets.iter().enumerate().all(|(flat, &o)| {
        let mut rem = flat;
        let mut expected = offsets[0] as isize;
        for d in (0..dims.len()).rev() {
            expected += (rem % dims[d]) as isize * steps[d];
            rem /= dims[d];
        }
        expected == o as isize
    })
}

proptest! {
    #[test]
    fn permute_of_permute_is_composed_permute(
        (dims, p1, p2) in dims_strategy().prop_flat_map(|d| {
            let r = d.len();
            (Just(d), perm_strategy(r), perm_strategy(r))
        })
    ) {
        let t = iota(&dims);
        let twice = t.permute(&p1).unwrap().permute(&p2).unwrap();
        let composed: Vec<usize> = p2.iter().map(|&i| p1[i]).collect();
        let once = t.permute(&composed).unwrap();
        prop_assert_eq!(twice.layout(), once.layout());
        prop_assert_eq!(values(&once), permuted_values(&values(&t), &dims, &composed));
    }

    #[test]
    fn slice_of_slice_is_composed_slice(
        len in 1usize..40, a in 0usize..40, b in 0usize..40, s1 in 1usize..4,
        c in 0usize..20, d in 0usize..20, s2 in 1usize..4,
    ) {
        let (start1, end1) = (a.min(b).min(len), a.max(b).min(len));
        let t = iota(&[len]);
        let first = t.slice(0, start1, end1, s1).unwrap();
        let n1 = first.dims()[0];
        let (start2, end2) = (c.min(d).min(n1), c.max(d).min(n1));
        let second = first.slice(0, start2, end2, s2).unwrap();
        let expected: Vec<f32> = (0..second.dims()[0])
            .map(|k| (start1 + s1 * (start2 + s2 * k)) as f32)
            .collect();
        prop_assert_eq!(values(&second), expected);
    }

    #[test]
    fn reshape_fails_exactly_when_strides_cannot_express_it(
        (dims, perm) in dims_strategy().prop_flat_map(|d| { let r = d.len(); (Just(d), perm_strategy(r)) }),
        split in 0usize..4,
    ) {
        let t = iota(&dims).permute(&perm).unwrap();
        let n: usize = dims.iter().product();
        let pdims = t.dims().to_vec();
        let mut targets = vec![vec![n]];
        if pdims.len() >= 2 {
            let i = split % (pdims.len() - 1);
            let mut merged = pdims.clone();
            let m = merged.remove(i + 1);
            merged[i] *= m;
            targets.push(merged);
        }
        let offsets: Vec<usize> = t.layout().offsets().collect();
        for target in targets {
            match t.reshape(target.clone()) {
                Ok(view) => {
                    prop_assert!(std::sync::Arc::ptr_eq(view.storage(), t.storage()));
                    prop_assert_eq!(values(&view), values(&t));
                }
                Err(Error::ReshapeNeedsCopy { .. }) => {
                    prop_assert!(!is_strided(&offsets, &target));
                }
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }
    }

    #[test]
    fn broadcast_repeats_values(dims in dims_strategy(), extra in 1usize..4) {
        let t = iota(&dims);
        let mut target = vec![extra];
        target.extend(&dims);
        let v = values(&t.broadcast_to(target).unwrap());
        let base = values(&t);
        for k in 0..extra {
            prop_assert_eq!(&v[k * base.len()..(k + 1) * base.len()], &base[..]);
        }
    }

    #[test]
    fn unsqueeze_then_squeeze_is_identity(dims in dims_strategy(), at in 0usize..5) {
        let t = iota(&dims);
        let at = at % (dims.len() + 1);
        let back = t.unsqueeze(at).unwrap().squeeze(at).unwrap();
        prop_assert_eq!(back.layout(), t.layout());
    }
}

#[test]
fn reshape_of_transposed_matrix_needs_copy() {
    let t = iota(&[2, 3]).transpose(0, 1).unwrap();
    assert!(matches!(
        t.reshape([6]),
        Err(Error::ReshapeNeedsCopy { .. })
    ));
    assert_eq!(
        values(&t.reshape([3, 2]).unwrap()),
        vec![0., 3., 1., 4., 2., 5.]
    );
}

#[test]
fn views_outside_storage_are_rejected() {
    let t = iota(&[4]);
    let bad = Layout::from_parts([3], vec![2], 0).unwrap();
    assert!(matches!(
        t.with_layout(bad),
        Err(Error::ViewOutOfStorage { .. })
    ));
}

#[test]
fn overflowing_shapes_are_errors() {
    assert!(matches!(
        Tensor::zeros(luoshu_tensor::DType::F32, [usize::MAX, 2]),
        Err(Error::SizeOverflow { .. })
    ));
}

#[test]
fn bad_view_arguments_are_errors() {
    let t = iota(&[2, 3]);
    assert!(t.permute(&[0, 0]).is_err());
    assert!(t.permute(&[0]).is_err());
    assert!(t.slice(1, 2, 5, 1).is_err());
    assert!(t.slice(1, 0, 2, 0).is_err());
    assert!(t.squeeze(0).is_err());
    assert!(t.unsqueeze(3).is_err());
    assert!(t.broadcast_to([3, 3]).is_err());
    assert!(t.reshape([5]).is_err());
    assert!(t.transpose(0, 2).is_err());
}

#[test]
fn element_conversions_round_trip() {
    let t = Tensor::from_f64(&[1.5, -2.0, 3.25], luoshu_tensor::DType::BF16, [3]).unwrap();
    assert_eq!(t.to_f64_vec(), vec![1.5, -2.0, 3.25]);
    assert!(t.to_vec::<f32>().is_err());
    let b = Tensor::from_bools(&[true, false], [2]).unwrap();
    assert_eq!(b.to_f64_vec(), vec![1.0, 0.0]);
}
