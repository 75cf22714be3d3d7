//! The pass registry lists the passes that exist: every pass in `src/passes` is registered
//! under the name its statistics carry, the pipelines use registered passes only, and an
//! unknown name is an error that lists the known ones.

mod common;

use common::build_with_dead_code;
use luoshu_graph::passes::{pass_by_name, ALL_PASSES, DEFAULT_PIPELINE, FORWARD_PIPELINE};
use luoshu_graph::Error;
use std::path::Path;

/// Passes that need more than the graph (so no registry entry): their callers run them.
const NEED_OPTIONS: &[&str] = &["recompute"];

/// The name every pass in `src/passes` gives its statistics, `PassStats::new("<name>", ..)`.
fn passes_in_source() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/passes");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let source = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for rest in source.split("PassStats::new(\"").skip(1) {
            names.push(rest[..rest.find('"').unwrap()].to_string());
        }
    }
    names.sort();
    names
}

#[test]
fn every_pass_in_the_source_is_registered() {
    let names = passes_in_source();
    assert!(names.len() >= ALL_PASSES.len(), "found passes {names:?}");
    for name in &names {
        assert!(
            pass_by_name(name).is_ok() || NEED_OPTIONS.contains(&name.as_str()),
            "pass `{name}` is not in ALL_PASSES"
        );
    }
    for pass in ALL_PASSES {
        assert!(
            names.iter().any(|n| n == pass.name),
            "{} has no source",
            pass.name
        );
    }
}

#[test]
fn registered_passes_report_under_their_names() {
    let g = build_with_dead_code(&[(0, 0, 0, 1), (2, 0, 1, 0), (0, 4, 0, 2), (1, 5, 2, 0)]);
    for pass in ALL_PASSES {
        let (_, stats) = (pass.run)(&g).unwrap();
        assert_eq!(stats.pass, pass.name);
    }
}

#[test]
fn pipelines_use_registered_passes_only() {
    for pass in DEFAULT_PIPELINE.iter().chain(FORWARD_PIPELINE) {
        assert!(
            pass_by_name(pass.name).is_ok(),
            "{} is not registered",
            pass.name
        );
    }
}

#[test]
fn an_unknown_pass_name_lists_the_known_ones_and_the_closest() {
    let err = pass_by_name("fuse_pattern").err().unwrap();
    assert!(
        matches!(&err, Error::UnknownPass { name, .. } if name == "fuse_pattern"),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(err.contains("did you mean `fuse_patterns`?"), "{err}");
    for pass in ALL_PASSES {
        assert!(err.contains(pass.name), "{err}");
    }
    let err = pass_by_name("vectorize").err().unwrap().to_string();
    assert!(!err.contains("did you mean"), "{err}");
    assert!(err.contains("known passes: fold, simplify, dce"), "{err}");
}
