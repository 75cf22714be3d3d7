//! Geometry of distributed states: coordinates, shards, uneven splits, validation.

mod common;

use luoshu_dist::{shard_range, Axis, DState, Error};
use proptest::prelude::*;
use std::collections::HashMap;

/// Random states of 1–3 axes of extent 1–3 over a random tensor of rank 0–3 with dims
/// 0–6, returned with the tensor's dims.
fn state_and_dims() -> impl Strategy<Value = (DState, Vec<usize>)> {
    prop::collection::vec(0usize..=6, 0..=3).prop_flat_map(|dims| {
        let pool: Vec<Axis> = (0..dims.len())
            .map(Axis::Split)
            .chain([Axis::Partial, Axis::Duplicate])
            .collect();
        let axes = (1..=3usize.min(pool.len()))
            .prop_flat_map(move |n| prop::sample::subsequence(pool.clone(), n).prop_shuffle());
        let extents = prop::collection::vec(1usize..=3, 3);
        (axes, extents).prop_map(move |(axes, extents)| {
            let axes: Vec<(Axis, usize)> = axes.into_iter().zip(extents).collect();
            (DState::new(&axes).expect("distinct axes"), dims.clone())
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn shards_tile_the_tensor_once_per_replica((state, dims) in state_and_dims()) {
        state.validate(&dims).unwrap();
        // (summand, copy) → how often each element is held.
        let mut counts: HashMap<(usize, usize), Vec<usize>> = HashMap::new();
        let numel: usize = dims.iter().product();
        for device in 0..state.devices {
            let key = (
                state.partial_index(device).unwrap(),
                state.axis_index(device, Axis::Duplicate).unwrap(),
            );
            let shard = state.shard(device, &dims).unwrap();
            let local: Vec<usize> = shard.iter().map(|r| r.len()).collect();
            prop_assert_eq!(&state.local_dims(device, &dims).unwrap(), &local);
            let flat: Vec<f32> = (0..numel).map(|i| i as f32).collect();
            let count = counts.entry(key).or_insert_with(|| vec![0; numel]);
            for i in common::region_values(&flat, &dims, &shard) {
                count[i as usize] += 1;
            }
        }
        prop_assert_eq!(counts.len(), state.partial * state.duplicate);
        for count in counts.values() {
            prop_assert!(count.iter().all(|&c| c == 1), "{}: {:?}", state, count);
        }
    }

    #[test]
    fn coords_and_device_of_roundtrip((state, _dims) in state_and_dims()) {
        let mut seen = Vec::new();
        for device in 0..state.devices {
            let coords = state.coords(device).unwrap();
            for (&c, &axis) in coords.iter().zip(&state.order) {
                prop_assert!(c < state.extent(axis));
            }
            prop_assert_eq!(state.device_of(&coords).unwrap(), device);
            prop_assert!(!seen.contains(&coords));
            seen.push(coords);
        }
        prop_assert!(state.coords(state.devices).is_err());
    }

    #[test]
    fn uneven_pieces_are_contiguous_bigger_first_and_differ_by_at_most_one(
        len in 0usize..40,
        parts in 1usize..9,
    ) {
        let pieces: Vec<_> = (0..parts).map(|i| shard_range(len, parts, i)).collect();
        prop_assert_eq!(pieces[0].start, 0);
        prop_assert_eq!(pieces[parts - 1].end, len);
        for pair in pieces.windows(2) {
            prop_assert_eq!(pair[0].end, pair[1].start);
            prop_assert!(pair[0].len() >= pair[1].len());
            prop_assert!(pair[0].len() - pair[1].len() <= 1);
        }
        prop_assert!(pieces[0].len() - pieces[parts - 1].len() <= 1);
    }
}

#[test]
fn coordinates_are_mixed_radix_with_the_first_axis_slowest() {
    let state = DState::new(&[(Axis::Split(0), 2), (Axis::Duplicate, 3)]).unwrap();
    assert_eq!(state.coords(4).unwrap(), vec![1, 1]);
    assert_eq!(state.axis_index(4, Axis::Duplicate).unwrap(), 1);
    assert_eq!(state.axis_index(4, Axis::Partial).unwrap(), 0);
    assert_eq!(state.shard(4, &[5, 7]).unwrap(), vec![3..5, 0..7]);
    assert_eq!(state.shard(2, &[5, 7]).unwrap(), vec![0..3, 0..7]);
}

#[test]
fn more_pieces_than_elements_leaves_empty_trailing_pieces() {
    let state = DState::new(&[(Axis::Split(0), 3)]).unwrap();
    assert_eq!(state.local_dims(0, &[1, 2]).unwrap(), vec![1, 2]);
    assert_eq!(state.local_dims(1, &[1, 2]).unwrap(), vec![0, 2]);
    assert_eq!(state.local_dims(2, &[1, 2]).unwrap(), vec![0, 2]);
}

#[test]
fn display_lists_the_axes_in_device_order() {
    let state = DState::new(&[
        (Axis::Split(1), 2),
        (Axis::Partial, 2),
        (Axis::Duplicate, 3),
    ]);
    assert_eq!(state.unwrap().to_string(), "S1:2,P2,D3");
    assert_eq!(DState::duplicated(1).unwrap().to_string(), "D1");
    assert_eq!(DState::duplicated(4).unwrap().to_string(), "D4");
}

#[test]
fn validation_names_the_problem() {
    let state = DState::new(&[(Axis::Split(2), 2)]).unwrap();
    let err = state.validate(&[4, 4]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::SplitBeyondRank {
                dim: 2,
                rank: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("splits dim 2"), "{err}");

    let mut wrong_count = DState::duplicated(4).unwrap();
    wrong_count.devices = 3;
    let err = wrong_count.check().unwrap_err();
    assert!(
        matches!(
            err,
            Error::DeviceCount {
                product: 4,
                devices: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("multiply to 4"), "{err}");

    let mut missing_axis = DState::duplicated(2).unwrap();
    missing_axis.partial = 2;
    missing_axis.devices = 4;
    let err = missing_axis.check().unwrap_err();
    assert!(
        matches!(
            err,
            Error::AxisNotInOrder {
                axis: Axis::Partial,
                extent: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("not in the order"), "{err}");

    let twice = DState::new(&[(Axis::Split(0), 2), (Axis::Split(0), 2)]).unwrap_err();
    assert!(
        matches!(&twice, Error::RepeatedAxis { axis, .. } if axis == "Split(0)"),
        "{twice:?}"
    );
    assert!(twice.to_string().contains("appears twice"), "{twice}");

    let none = DState::duplicated(0).unwrap_err();
    assert!(
        matches!(&none, Error::ZeroExtent { axis, .. } if axis == "Duplicate"),
        "{none:?}"
    );
    assert!(
        none.to_string().contains("extent 0"),
        "zero devices is an error: {none}"
    );

    let bad_coords = DState::duplicated(2).unwrap().device_of(&[2]).unwrap_err();
    assert!(
        matches!(
            bad_coords,
            Error::CoordinateOutOfRange {
                axis: Axis::Duplicate,
                coord: 2,
                extent: 2,
                ..
            }
        ),
        "{bad_coords:?}"
    );
    assert!(
        bad_coords.to_string().contains("coordinate 2"),
        "{bad_coords}"
    );
    let too_many = DState::duplicated(2)
        .unwrap()
        .device_of(&[0, 1])
        .unwrap_err();
    assert!(
        matches!(&too_many, Error::CoordinateCount { coords, axes: 1, .. } if coords == &[0, 1]),
        "{too_many:?}"
    );
    let beyond = DState::duplicated(2).unwrap().shard(2, &[4]).unwrap_err();
    assert!(
        matches!(
            beyond,
            Error::DeviceOutOfRange {
                device: 2,
                devices: 2,
                ..
            }
        ),
        "{beyond:?}"
    );
}
