//! Shared helpers of the luoshu-dist tests: random states and full tensors, and the pieces
//! each device holds of them.

#![allow(dead_code)] // Each test file uses a different part.

use luoshu_dist::{Axis, DState};
use proptest::prelude::*;
use std::ops::Range;

/// The ways to write `devices` (1..=4) as a product of 0–2 extents > 1.
fn factorizations(devices: usize) -> Vec<Vec<usize>> {
    match devices {
        1 => vec![vec![]],
        4 => vec![vec![4], vec![2, 2]],
        n => vec![vec![n]],
    }
}

/// Random states of `devices` (1..=4) devices for tensors of rank `rank`: 0–2 distinct axes
/// among the split dims, partial and duplicate, in random order.
pub fn state(devices: usize, rank: usize) -> impl Strategy<Value = DState> {
    let pool: Vec<Axis> = (0..rank)
        .map(Axis::Split)
        .chain([Axis::Partial, Axis::Duplicate])
        .collect();
    prop::sample::select(factorizations(devices)).prop_flat_map(move |extents| {
        prop::sample::subsequence(pool.clone(), extents.len())
            .prop_shuffle()
            .prop_map(move |axes| {
                let axes: Vec<(Axis, usize)> = axes.into_iter().zip(extents.clone()).collect();
                DState::new(&axes).expect("distinct axes of positive extent")
            })
    })
}

/// A deterministic pseudo-random small integer for `(seed, stream, index)`.
pub fn small_int(seed: u64, stream: u64, index: usize) -> f32 {
    let mut z = seed
        .wrapping_add(stream.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add((index as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9));
    z = (z ^ (z >> 30)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z % 33) as f32 - 16.0
}

/// Integer-valued elements of a full tensor of `dims` (exact in f32 under small sums).
pub fn full_values(dims: &[usize], seed: u64) -> Vec<f32> {
    let n: usize = dims.iter().product();
    (0..n).map(|i| small_int(seed, 0, i)).collect()
}

/// The elements of `values` (a row-major tensor of `dims`) inside `region`, row-major.
pub fn region_values(values: &[f32], dims: &[usize], region: &[Range<usize>]) -> Vec<f32> {
    let mut out = Vec::new();
    if region.iter().any(|r| r.is_empty()) {
        return out;
    }
    let mut index: Vec<usize> = region.iter().map(|r| r.start).collect();
    loop {
        let flat = index.iter().zip(dims).fold(0, |acc, (&i, &n)| acc * n + i);
        out.push(values[flat]);
        let mut dim = region.len();
        loop {
            if dim == 0 {
                return out;
            }
            dim -= 1;
            index[dim] += 1;
            if index[dim] < region[dim].end {
                break;
            }
            index[dim] = region[dim].start;
        }
    }
}

/// What `device` holds of the full tensor `values` in `state`: its box, and for a partial
/// state its summand — random integers for all summands but the last, which makes the sum
/// exact.
pub fn source_piece(
    state: &DState,
    device: usize,
    values: &[f32],
    dims: &[usize],
    seed: u64,
) -> Vec<f32> {
    let region = state.shard(device, dims).expect("valid state");
    let piece = region_values(values, dims, &region);
    let p = state.partial_index(device).expect("valid device");
    let summand = |q: usize, i: usize| small_int(seed, 1 + q as u64, i);
    piece
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if p + 1 < state.partial {
                summand(p, i)
            } else {
                v - (0..p).map(|q| summand(q, i)).sum::<f32>()
            }
        })
        .collect()
}
