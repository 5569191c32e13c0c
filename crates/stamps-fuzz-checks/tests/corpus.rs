//! The fuzz corpus as ordinary tests: every input kept in
//! `fuzz/corpus/<target>/` (and any crash reproducer kept in
//! `fuzz/regressions/<target>/`), plus each target's hand-written seeds, run
//! through the same check the fuzz target runs. No nightly, no libFuzzer:
//! the checks are this crate's.
//! How to fuzz and refresh the corpus: `docs/FUZZING.md`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use stamps_fuzz_checks::{TARGETS, Target};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `dir`, sorted; none if it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn target(name: &str) -> Target {
    TARGETS.into_iter().find(|t| t.name == name).unwrap()
}

/// Runs the seeds, the corpus and the regressions of one target; the
/// corpus must not be empty (a missing directory would pass silently).
fn replay(name: &str) {
    let target = target(name);
    for seed in (target.seeds)() {
        (target.check)(&seed);
    }
    let corpus = inputs(&fuzz_dir().join("corpus").join(name));
    assert!(!corpus.is_empty(), "no corpus for {name} in fuzz/corpus/");
    let regressions = inputs(&fuzz_dir().join("regressions").join(name));
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).unwrap();
        // Name the input if its check panics.
        let outcome = std::panic::catch_unwind(|| (target.check)(&data));
        assert!(outcome.is_ok(), "{} fails its check", path.display());
    }
}

#[test]
fn jwt_verify_corpus() {
    replay("jwt_verify");
}

#[test]
fn static_token_corpus() {
    replay("static_token");
}

#[test]
fn access_token_body_corpus() {
    replay("access_token_body");
}

#[test]
fn authorization_header_corpus() {
    replay("authorization_header");
}

#[test]
fn every_target_is_replayed() {
    let replayed = [
        "jwt_verify",
        "static_token",
        "access_token_body",
        "authorization_header",
    ];
    let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
    assert_eq!(names, replayed);
}

/// Writes each target's seeds into its corpus directory, as
/// `seed-<target>-<n>`: run once before fuzzing a new target, with
/// `cargo test -p stamps-fuzz-checks --test corpus -- --ignored write_seeds`.
#[test]
#[ignore = "writes files into fuzz/corpus; run by hand"]
fn write_seeds() {
    for target in TARGETS {
        let dir = fuzz_dir().join("corpus").join(target.name);
        std::fs::create_dir_all(&dir).unwrap();
        for (n, seed) in (target.seeds)().into_iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{}-{n}", target.name)), seed).unwrap();
        }
    }
}
