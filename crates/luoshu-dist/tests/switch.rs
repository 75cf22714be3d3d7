//! The switch planner and executor: random placements (distributed states over subsets of
//! the world, ZeRO-style flat ranges, tensors held twice in different layouts), run on
//! threads ranks, must deliver every destination piece exactly, receive exactly the lower
//! bound, and never cross nodes when a holder on the receiver's node exists.

mod common;

use luoshu_backend::{backend_by_name, Ops};
use luoshu_comm::threads;
use luoshu_dist::switch::{
    allocate_pieces, execute_switch, plan_switch, SenderChoice, SwitchPieces,
};
use luoshu_dist::{
    shard_range, DState, LinkClass, Piece, Placement, Region, SwitchPlanner, SwitchReport, Topology,
};
use luoshu_tensor::Tensor;
use proptest::prelude::*;
use std::time::Duration;

/// How one component of a placement lays the tensor out over its group.
#[derive(Debug, Clone)]
enum Layout {
    State(DState),
    /// The whole tensor's row-major order cut into one flat range per rank (ZeRO-1).
    Flat,
}

/// One layout over an ordered group of world ranks.
#[derive(Debug, Clone)]
struct Component {
    layout: Layout,
    group: Vec<usize>,
}

fn place(dims: &[usize], components: &[Component]) -> Placement {
    let mut placement = Placement::nothing(dims);
    let whole = Region::whole(dims).unwrap();
    for c in components {
        match &c.layout {
            Layout::State(state) => {
                let part = Placement::from_state(dims, state, &c.group).unwrap();
                for h in part.holdings {
                    for r in h.ranks {
                        placement.add(h.piece, r);
                    }
                }
            }
            Layout::Flat => {
                for (i, &rank) in c.group.iter().enumerate() {
                    let r = shard_range(whole.numel(), c.group.len(), i);
                    let piece = Piece {
                        region: whole,
                        flat: Some((r.start, r.end)),
                    };
                    placement.add(piece, rank);
                }
            }
        }
    }
    placement
}

/// A component over `size` (1–4) of the `world` ranks: a non-partial state or flat ranges.
fn component(world: usize, rank: usize) -> impl Strategy<Value = Component> {
    (1..=world.min(4)).prop_flat_map(move |size| {
        let layout = prop_oneof![
            common::state(size, rank)
                .prop_filter("placements are not partial", |s| s.partial == 1)
                .prop_map(Layout::State),
            Just(Layout::Flat),
        ];
        let group = Just((0..world).collect::<Vec<usize>>())
            .prop_shuffle()
            .prop_map(move |ranks| ranks[..size].to_vec());
        (layout, group).prop_map(|(layout, group)| Component { layout, group })
    })
}

/// World 1–8 ranks, 1–4 per node, 1–3 tensors of rank 1–3 (lengths 1–5), each with a
/// source of 1–2 components and a destination of 1–2 components.
#[allow(clippy::type_complexity)]
fn case() -> impl Strategy<Value = (usize, usize, Vec<(Vec<usize>, Placement, Placement)>)> {
    (1usize..=8, 1usize..=4).prop_flat_map(|(world, per_node)| {
        let tensor = (1usize..=3).prop_flat_map(move |rank| {
            let dims = prop::collection::vec(1usize..=5, rank);
            let side = || prop::collection::vec(component(world, rank), 1..=2);
            (dims, side(), side()).prop_map(
                |(dims, src, dst): (Vec<usize>, Vec<Component>, Vec<Component>)| {
                    let (from, to) = (place(&dims, &src), place(&dims, &dst));
                    (dims, from, to)
                },
            )
        });
        (
            Just(world),
            Just(per_node),
            prop::collection::vec(tensor, 1..=3),
        )
    })
}

fn canonical(dims: &[usize], seed: u64) -> Tensor {
    Tensor::from_vec(common::full_values(dims, seed), dims.to_vec()).unwrap()
}

fn topology(world: usize, per_node: usize) -> Topology {
    Topology::gpu_cluster(world, per_node).unwrap()
}

/// Every rank of `placement` holding all of `region`.
fn holders(placement: &Placement, region: &Region) -> Vec<usize> {
    let mut ranks: Vec<usize> = placement
        .holdings
        .iter()
        .filter(|h| h.piece.boxes().iter().any(|(_, b)| b.contains(region)))
        .flat_map(|h| h.ranks.iter().copied())
        .collect();
    ranks.sort_unstable();
    ranks.dedup();
    ranks
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn switches_deliver_the_destination_with_the_least_communication(
        (world, per_node, tensors) in case()
    ) {
        let topo = topology(world, per_node);
        let from: Vec<Placement> = tensors.iter().map(|(_, f, _)| f.clone()).collect();
        let to: Vec<Placement> = tensors.iter().map(|(_, _, t)| t.clone()).collect();
        let plan = SwitchPlanner::new().plan(&from, &to, &topo, 4).unwrap();
        let report = SwitchReport::of(&plan, tensors.len(), &topo);

        // Receives exactly the lower bound, rank by rank.
        let mut received = vec![0usize; world];
        for t in plan.transfers.iter().filter(|t| t.from != t.to) {
            received[t.to] += t.region.numel() * 4;
        }
        prop_assert_eq!(&received, &plan.lower_bound_per_rank);
        prop_assert_eq!(report.received, report.lower_bound);

        // Same node first: a cell crosses nodes only when no holder shares the node.
        for t in &plan.transfers {
            if topo.link(t.from, t.to) == LinkClass::OtherNode {
                let local = holders(&from[t.tensor], &t.region)
                    .into_iter()
                    .any(|h| topo.node_of(h) == topo.node_of(t.to));
                prop_assert!(!local, "{t:?} crosses nodes although a holder is on the node");
            }
        }

        // Running it delivers every destination piece exactly.
        let backend = backend_by_name("cpu").unwrap();
        let values: Vec<Tensor> = tensors
            .iter()
            .enumerate()
            .map(|(i, (dims, _, _))| canonical(dims, i as u64))
            .collect();
        let results = threads::run_with_timeout(world, Duration::from_secs(30), |comm| {
            let ops = Ops::new(backend.as_ref());
            let rank = comm.rank();
            let src: Vec<Vec<Tensor>> = from
                .iter()
                .zip(&values)
                .map(|(p, v)| p.cut_for(&ops, rank, v))
                .collect::<Result<_, _>>()?;
            let dst = allocate_pieces(&ops, &to, rank, luoshu_tensor::DType::F32)?;
            let pieces = SwitchPieces {
                src: &src,
                dst: &dst,
            };
            execute_switch(&plan, &from, &to, &*comm, &ops, pieces, 7)?;
            let expected: Vec<Vec<Tensor>> = to
                .iter()
                .zip(&values)
                .map(|(p, v)| p.cut_for(&ops, rank, v))
                .collect::<Result<_, _>>()?;
            let same = dst.iter().flatten().zip(expected.iter().flatten()).all(|(a, b)| {
                a.dims() == b.dims() && a.to_vec::<f32>().unwrap() == b.to_vec::<f32>().unwrap()
            });
            Ok::<bool, luoshu_dist::Error>(same)
        });
        let outcomes: Vec<String> = results
            .into_iter()
            .map(|r| match r {
                Ok(true) => "ok".to_string(),
                Ok(false) => "wrong pieces".to_string(),
                Err(e) => e.to_string(),
            })
            .collect();
        prop_assert!(outcomes.iter().all(|o| o == "ok"), "{outcomes:#?}");

        // A switch to the same layout moves nothing between ranks.
        let stay = plan_switch(
            &from.iter().map(|p| (p, p)).collect::<Vec<_>>(),
            &topo,
            4,
            SenderChoice::Balanced,
        )
        .unwrap();
        prop_assert!(stay.transfers.iter().all(|t| t.from == t.to));
    }

    #[test]
    fn placements_from_states_cover_every_element_once_per_replica(
        (dims, state) in (1usize..=3).prop_flat_map(|rank| {
            let state = (1usize..=4).prop_flat_map(move |devices| {
                common::state(devices, rank).prop_filter("not partial", |s| s.partial == 1)
            });
            (prop::collection::vec(1usize..=6, rank), state)
        })
    ) {
        // Odd ranks only: rank 0 holds nothing.
        let group: Vec<usize> = (0..state.devices).map(|i| 2 * i + 1).collect();
        let placement = Placement::from_state(&dims, &state, &group).unwrap();
        prop_assert!(placement.coverage().iter().all(|&c| c == state.duplicate));
        prop_assert!(placement.pieces_of(0).is_empty());
    }
}

#[test]
fn the_planner_balances_sends_where_the_naive_plan_does_not() {
    // Four replicas of a 4×8 tensor on ranks 0–3 (one node), needed split in 8 pieces by
    // ranks 4–7 on a second node: the planner spreads the sends, the naive plan makes
    // rank 0 send everything.
    let dims = [4, 8];
    let from =
        Placement::from_state(&dims, &DState::duplicated(4).unwrap(), &[0, 1, 2, 3]).unwrap();
    let split = DState::new(&[(luoshu_dist::Axis::Split(1), 4)]).unwrap();
    let to = Placement::from_state(&dims, &split, &[4, 5, 6, 7]).unwrap();
    let topo = topology(8, 4);
    let balanced = plan_switch(&[(&from, &to)], &topo, 4, SenderChoice::Balanced).unwrap();
    let naive = plan_switch(&[(&from, &to)], &topo, 4, SenderChoice::FirstHolder).unwrap();
    let (b, n) = (
        SwitchReport::of(&balanced, 1, &topo),
        SwitchReport::of(&naive, 1, &topo),
    );
    assert_eq!(b.received, n.received);
    assert_eq!(b.max_send, 32);
    assert_eq!(n.max_send, 128);
    assert!(b.estimated_seconds < n.estimated_seconds);
}

#[test]
fn a_source_that_misses_elements_is_an_error() {
    let dims = [4];
    let split = DState::new(&[(luoshu_dist::Axis::Split(0), 2)]).unwrap();
    let full = Placement::from_state(&dims, &split, &[0, 1]).unwrap();
    let mut half = full.clone();
    half.holdings.pop();
    let to = Placement::from_state(&dims, &DState::duplicated(2).unwrap(), &[0, 1]).unwrap();
    let err = plan_switch(&[(&half, &to)], &topology(2, 2), 4, SenderChoice::Balanced)
        .unwrap_err()
        .to_string();
    assert!(err.contains("held by no rank"), "{err}");
}
