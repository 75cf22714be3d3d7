//! Strategy names with context parallelism parse and print back, combinations that do not
//! run are refused with what to use instead, and the mesh puts the ranks of a
//! context-parallel group, and the replicas that sum gradients, where the numbering says.

use luoshu_comm::threads;
use luoshu_dist::{Error, Mesh, Strategy};

#[test]
fn context_parallel_names_parse_and_print_back() {
    for (text, dp, cp, tp) in [
        ("cp2", 1, 2, 1),
        ("dp2cp2", 2, 2, 1),
        ("cp2tp2", 1, 2, 2),
        ("dp2cp4tp2", 2, 4, 2),
    ] {
        let s: Strategy = text.parse().unwrap();
        assert_eq!((s.dp, s.cp, s.tp, s.pp), (dp, cp, tp, 1), "{text}");
        assert_eq!(s.to_string(), text);
        assert_eq!(s.devices(), dp * cp * tp);
        assert_eq!(s.replicas(), dp * cp);
    }
    // Any order of the parts parses; the name prints in the canonical order.
    let s: Strategy = "tp2cp2".parse().unwrap();
    assert_eq!(s.to_string(), "cp2tp2");
}

#[test]
fn context_parallelism_with_pipelines_or_zero1_is_refused() {
    for text in ["cp2pp2", "dp2cp2zero1"] {
        let err = text.parse::<Strategy>().unwrap_err().to_string();
        assert!(
            err.contains("does not combine with `pp` or `zero1`"),
            "{err}"
        );
    }
    let err = "cp0".parse::<Strategy>().unwrap_err();
    assert!(
        matches!(&err, Error::StrategySyntax { text, .. } if text == "cp0"),
        "{err:?}"
    );
    assert!(err.to_string().contains("degree 0"), "{err}");
}

#[test]
fn a_mesh_on_a_communicator_of_another_size_names_both_counts() {
    let strategy: Strategy = "dp2tp2".parse().unwrap();
    let errors = threads::run(2, |world| Mesh::new(strategy, world).err());
    for err in errors {
        let err = err.expect("a 4-rank strategy on 2 ranks is refused");
        assert!(
            matches!(
                &err,
                Error::Devices {
                    needs: 4,
                    has: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("strategy dp2tp2 needs 4 ranks, the communicator has 2"),
            "{err}"
        );
    }
}

#[test]
fn the_mesh_numbers_context_parallel_ranks_between_data_and_tensor_ranks() {
    let strategy: Strategy = "dp2cp2tp2".parse().unwrap();
    let coords = threads::run(strategy.devices(), |world| {
        let mesh = Mesh::new(strategy, world).unwrap();
        let replica = mesh.dp_rank * strategy.cp + mesh.cp_rank;
        assert_eq!(mesh.rank_of(replica, 0, mesh.tp_rank), mesh.world.rank());
        (
            (mesh.dp_rank, mesh.cp_rank, mesh.tp_rank),
            (mesh.cp.size(), mesh.cp.rank()),
            (mesh.replicas.size(), mesh.replicas.rank()),
        )
    });
    for (rank, (at, cp, replicas)) in coords.into_iter().enumerate() {
        assert_eq!(at, (rank / 4, (rank / 2) % 2, rank % 2), "rank {rank}");
        assert_eq!(cp, (2, (rank / 2) % 2), "rank {rank}");
        assert_eq!(replicas, (4, rank / 2), "rank {rank}");
    }
}
