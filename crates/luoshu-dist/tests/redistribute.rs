//! Redistribution between distributed states: which lowering is chosen, and that running it
//! on the threads backend delivers exactly the destination shards.

mod common;

use luoshu_backend::backend_by_name;
use luoshu_comm::threads;
use luoshu_dist::redistribute::{AxisGroup, Collective, Step};
use luoshu_dist::{execute, plan, Axis, DState, Error, Kind};
use luoshu_tensor::{DType, Tensor};
use proptest::prelude::*;
use std::time::Duration;

fn state(axes: &[(Axis, usize)]) -> DState {
    DState::new(axes).unwrap()
}

fn kind(src: &[(Axis, usize)], dst: &[(Axis, usize)], dims: &[usize]) -> Kind {
    plan(&state(src), &state(dst), dims, DType::F32)
        .unwrap()
        .kind
}

const P2: (Axis, usize) = (Axis::Partial, 2);
const D2: (Axis, usize) = (Axis::Duplicate, 2);
const S0: (Axis, usize) = (Axis::Split(0), 2);
const S1: (Axis, usize) = (Axis::Split(1), 2);

#[test]
fn classic_cases_choose_their_collective() {
    let dims = [4, 6];
    assert_eq!(kind(&[S0, D2], &[S0, D2], &dims), Kind::Nothing);
    assert_eq!(kind(&[D2], &[S0], &dims), Kind::LocalSlice);
    assert_eq!(kind(&[D2], &[P2], &dims), Kind::LocalSlice);
    assert_eq!(kind(&[S0, D2], &[S0, S1], &dims), Kind::LocalSlice);
    assert_eq!(kind(&[P2], &[D2], &dims), Kind::AllReduce);
    assert_eq!(kind(&[P2], &[S0], &dims), Kind::ReduceScatter);
    assert_eq!(kind(&[S0], &[D2], &dims), Kind::AllGather);
    assert_eq!(kind(&[S0], &[S1], &dims), Kind::AllToAll);
    assert_eq!(kind(&[S0, S1], &[S1, S0], &dims), Kind::PointToPoint);
    assert_eq!(kind(&[P2, D2], &[D2, P2], &dims), Kind::PointToPoint);
    assert_eq!(kind(&[S0], &[P2], &dims), Kind::PointToPoint);
}

#[test]
fn collectives_run_on_the_groups_of_the_changed_axis() {
    let plan = plan(&state(&[S0, P2]), &state(&[S0, D2]), &[4, 6], DType::F32).unwrap();
    assert_eq!(plan.kind, Kind::AllReduce);
    let group = AxisGroup {
        stride: 1,
        extent: 2,
    };
    assert_eq!(
        plan.steps,
        vec![Step::Collective {
            op: Collective::AllReduce,
            group
        }]
    );
    assert_eq!(
        (group.color(3), group.index(3), group.member(3, 0)),
        (2, 1, 2)
    );

    let outer = plan_of(&[P2, S1], &[S0, S1]);
    assert_eq!(outer.kind, Kind::ReduceScatter);
    assert_eq!(
        outer.steps,
        vec![Step::Collective {
            op: Collective::ReduceScatter { dim: 0 },
            group: AxisGroup {
                stride: 2,
                extent: 2
            }
        }]
    );
}

fn plan_of(src: &[(Axis, usize)], dst: &[(Axis, usize)]) -> luoshu_dist::Redistribution {
    plan(&state(src), &state(dst), &[4, 6], DType::F32).unwrap()
}

#[test]
fn bytes_sent_follow_the_lowering() {
    // 4 × 6 f32 = 96 bytes.
    assert_eq!(plan_of(&[S0], &[D2]).bytes_sent, vec![48, 48]);
    assert_eq!(plan_of(&[P2], &[D2]).bytes_sent, vec![96, 96]);
    assert_eq!(plan_of(&[P2], &[S0]).bytes_sent, vec![48, 48]);
    assert_eq!(plan_of(&[S0], &[S1]).bytes_sent, vec![24, 24]);
    assert_eq!(plan_of(&[D2], &[S0]).bytes_sent, vec![0, 0]);
    // Device 0 (summand 0) needs the whole tensor and holds half of it.
    assert_eq!(plan_of(&[S0], &[P2]).bytes_sent, vec![0, 48]);
    assert_eq!(plan_of(&[S0], &[P2]).total_bytes(), 48);
}

#[test]
fn point_to_point_spreads_duplicated_cells_over_their_holders() {
    // Devices keep what they hold: only devices 1 and 2 lack their piece.
    let reorder = plan_of(&[S0, D2], &[D2, S0]);
    assert_eq!(reorder.kind, Kind::PointToPoint);
    assert_eq!(reorder.bytes_sent, vec![48, 0, 48, 0]);
    // Every device needs the half it lacks, held by two duplicates: the sends are
    // balanced between them.
    let gather = plan_of(&[S0, D2], &[(Axis::Duplicate, 4)]);
    assert_eq!(gather.kind, Kind::PointToPoint);
    assert_eq!(gather.bytes_sent, vec![48, 48, 48, 48]);
}

#[test]
fn mismatched_states_and_pieces_are_rejected() {
    let err = plan(
        &state(&[S0]),
        &DState::duplicated(4).unwrap(),
        &[4],
        DType::F32,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::DeviceMismatch {
                src_devices: 2,
                dst_devices: 4,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        plan(&state(&[S1]), &state(&[S0]), &[4], DType::F32).is_err(),
        "dim 1 of a rank-1 tensor"
    );

    let redistribution = plan(&state(&[S0]), &state(&[D2]), &[4], DType::F32).unwrap();
    let backend = backend_by_name("cpu").unwrap();
    let errors = threads::run(2, |comm| {
        let wrong = Tensor::from_vec(vec![0f32; 3], vec![3]).unwrap();
        execute(&*comm, &redistribution, &wrong, &*backend)
            .unwrap_err()
            .to_string()
    });
    assert!(errors[0].contains("expected [2]"), "{}", errors[0]);

    let errors = threads::run(1, |comm| {
        let piece = Tensor::from_vec(vec![0f32; 2], vec![2]).unwrap();
        execute(&*comm, &redistribution, &piece, &*backend)
            .unwrap_err()
            .to_string()
    });
    assert!(errors[0].contains("1 ranks"), "{}", errors[0]);
}

/// A random case: full dims (rank 1–3, lengths 1–5), source and destination states over
/// the same 1–4 devices, and a seed for the values.
fn case() -> impl Strategy<Value = (Vec<usize>, DState, DState, u64)> {
    // One device only ever redistributes nothing: mostly draw more.
    let devices = prop_oneof![1 => Just(1usize), 6 => 2usize..=4];
    (devices, prop::collection::vec(1usize..=5, 1..=3)).prop_flat_map(|(devices, dims)| {
        let rank = dims.len();
        (
            Just(dims),
            common::state(devices, rank),
            common::state(devices, rank),
            any::<u64>(),
        )
    })
}

/// A rank's result: its dims and elements.
type Piece = (Vec<usize>, Vec<f32>);

/// Redistributes on the threads backend; every rank's result.
fn run_case(dims: &[usize], src: &DState, dst: &DState, seed: u64) -> Result<Vec<Piece>, Error> {
    let values = common::full_values(dims, seed);
    let redistribution = plan(src, dst, dims, DType::F32)?;
    let backend = backend_by_name("cpu")?;
    threads::run_with_timeout(src.devices, Duration::from_secs(30), |comm| {
        let rank = comm.rank();
        let piece = common::source_piece(src, rank, &values, dims, seed);
        let local = Tensor::from_vec(piece, src.local_dims(rank, dims)?)?;
        let out = execute(&*comm, &redistribution, &local, &*backend)?;
        Ok((out.dims().to_vec(), out.to_vec::<f32>()?))
    })
    .into_iter()
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn redistribution_delivers_exactly_the_destination_shards(
        (dims, src, dst, seed) in case()
    ) {
        let results = run_case(&dims, &src, &dst, seed).unwrap();
        let values = common::full_values(&dims, seed);
        let partial_axis = dst.order.iter().position(|&a| a == Axis::Partial);
        for (device, (local_dims, _)) in results.iter().enumerate() {
            prop_assert_eq!(local_dims, &dst.local_dims(device, &dims).unwrap());
        }
        for device in 0..dst.devices {
            if dst.partial_index(device).unwrap() != 0 {
                continue;
            }
            // The sum over the summands of this device's box.
            let mut sum = results[device].1.clone();
            if let Some(axis) = partial_axis {
                let mut coords = dst.coords(device).unwrap();
                for p in 1..dst.partial {
                    coords[axis] = p;
                    let holder = dst.device_of(&coords).unwrap();
                    for (s, v) in sum.iter_mut().zip(&results[holder].1) {
                        *s += v;
                    }
                }
            }
            let expected =
                common::region_values(&values, &dims, &dst.shard(device, &dims).unwrap());
            prop_assert_eq!(&sum, &expected, "{} → {} of {:?}, device {}", src, dst, dims, device);
        }
    }
}
