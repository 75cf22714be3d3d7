//! `bench::measure` on the threads backend: tiny messages, so it checks the bookkeeping
//! (sizes, rounding, bus factors, agreement across ranks), not the speed.

use luoshu_comm::bench::{self, Collective, Measurement};
use luoshu_comm::{threads, Error};

fn measure_on_every_rank(ranks: usize, collective: Collective, bytes: usize) -> Vec<Measurement> {
    threads::run(ranks, |comm| {
        bench::measure(comm.as_ref(), collective, bytes, 1, 3)
    })
    .into_iter()
    .collect::<Result<_, _>>()
    .expect("measure succeeds on every rank")
}

#[test]
fn measurements_are_positive_agree_across_ranks_and_apply_the_bus_factor() {
    for ranks in [2, 3] {
        for collective in Collective::ALL {
            let measurements = measure_on_every_rank(ranks, collective, 4096);
            let m = measurements[0];
            assert!(
                measurements.iter().all(|other| *other == m),
                "{collective} on {ranks} ranks: ranks disagree: {measurements:?}"
            );
            assert_eq!((m.collective, m.ranks), (collective, ranks));
            assert!(m.seconds.is_finite() && m.seconds > 0.0, "{m:?}");
            assert!(m.algbw_gbs.is_finite() && m.algbw_gbs > 0.0, "{m:?}");
            assert!(
                (m.algbw_gbs - m.bytes as f64 / m.seconds / 1e9).abs() <= 1e-9 * m.algbw_gbs,
                "{m:?}"
            );
            let factor = collective.bus_factor(ranks);
            assert!(
                (m.busbw_gbs - m.algbw_gbs * factor).abs() <= 1e-12 * m.algbw_gbs,
                "{m:?}"
            );
        }
    }
}

#[test]
fn bus_factors_follow_nccl_tests() {
    assert_eq!(Collective::AllReduce.bus_factor(4), 1.5);
    assert_eq!(Collective::AllGather.bus_factor(4), 0.75);
    assert_eq!(Collective::ReduceScatter.bus_factor(2), 0.5);
    assert_eq!(Collective::AllReduce.bus_factor(1), 0.0);
}

#[test]
fn sizes_round_down_to_whole_parts_per_rank() {
    // 4096 bytes = 1024 f32: whole for all-reduce, 341 per rank on 3 ranks otherwise.
    assert_eq!(
        measure_on_every_rank(3, Collective::AllReduce, 4097)[0].bytes,
        4096
    );
    assert_eq!(
        measure_on_every_rank(3, Collective::AllGather, 4096)[0].bytes,
        341 * 3 * 4
    );
    assert_eq!(
        measure_on_every_rank(3, Collective::ReduceScatter, 4096)[0].bytes,
        341 * 3 * 4
    );
}

#[test]
fn too_small_messages_and_zero_iterations_fail_on_every_rank() {
    let outcomes = threads::run(3, |comm| {
        let tiny = bench::measure(comm.as_ref(), Collective::AllGather, 8, 0, 1);
        let no_iters = bench::measure(comm.as_ref(), Collective::AllReduce, 4096, 0, 0);
        (tiny, no_iters)
    });
    for (tiny, no_iters) in outcomes {
        assert!(
            matches!(&tiny, Err(Error::InvalidArgument { message, .. }) if message.contains("8 bytes")),
            "{tiny:?}"
        );
        assert!(
            matches!(&no_iters, Err(Error::InvalidArgument { message, .. }) if message.contains("iters = 0")),
            "{no_iters:?}"
        );
    }
}

#[test]
fn memcpy_bandwidth_is_positive_and_default_sizes_span_4k_to_64m() {
    let gbs = bench::memcpy_bandwidth(64 << 10, 3);
    assert!(gbs.is_finite() && gbs > 0.0, "{gbs}");
    assert_eq!(bench::memcpy_bandwidth(0, 3), 0.0);
    let sizes = bench::default_sizes();
    assert_eq!(sizes.first(), Some(&4096));
    assert_eq!(sizes.last(), Some(&(64 << 20)));
    assert!(sizes.windows(2).all(|w| w[1] == 4 * w[0]), "{sizes:?}");
}
