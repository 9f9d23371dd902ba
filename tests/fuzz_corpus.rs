//! The fuzz targets' seed corpus as an ordinary test on the stable toolchain: every file of
//! `fuzz/corpus/<target>/` goes through the same function its fuzz target calls
//! (`fuzz/src/lib.rs`, included here), which panics when a property it checks breaks. Also
//! checks that every target has its corpus folder, its file in `fuzz/fuzz_targets/` and its
//! `[[bin]]` in `fuzz/Cargo.toml`, so that a new target cannot go without seeds.

#[path = "../fuzz/src/lib.rs"]
mod targets;

use std::{fs, path::PathBuf};

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

#[test]
fn every_seed_of_every_target_runs_without_a_panic() {
    for (name, target) in targets::TARGETS {
        let dir = fuzz_dir().join("corpus").join(name);
        let mut seeds = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus of {name} at {}: {e}", dir.display()))
            .map(|entry| entry.expect("a corpus entry").path())
            .collect::<Vec<_>>();
        seeds.sort();
        assert!(seeds.len() >= 2, "{name} has too few seeds: {seeds:?}");
        for seed in seeds {
            let data = fs::read(&seed).expect("a seed file");
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name} panicked on {}", seed.display());
            // The seed cut short: the fuzzer's first mutations, and the inputs that end inside
            // a quote, a fold or a MIME part.
            for len in [
                0,
                1,
                data.len() / 3,
                data.len() / 2,
                data.len().saturating_sub(1),
            ] {
                let cut = &data[..len.min(data.len())];
                let outcome = std::panic::catch_unwind(|| target(cut));
                assert!(
                    outcome.is_ok(),
                    "{name} panicked on the first {len} bytes of {}",
                    seed.display()
                );
            }
        }
    }
}

#[test]
fn every_target_has_a_fuzz_target_file_and_a_bin() {
    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let mut files = fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .expect("fuzz/fuzz_targets")
        .map(|entry| {
            let path = entry.expect("an entry").path();
            let stem = path.file_stem().expect("a file name").to_string_lossy();
            stem.into_owned()
        })
        .collect::<Vec<_>>();
    files.sort();
    let mut names = targets::TARGETS
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect::<Vec<_>>();
    names.sort();
    assert_eq!(files, names, "fuzz_targets/ and TARGETS differ");
    for name in &names {
        let body = fs::read_to_string(fuzz_dir().join(format!("fuzz_targets/{name}.rs")))
            .expect("the target file");
        assert!(
            body.contains(&format!("chmail_fuzz::{name}(data)")),
            "fuzz_targets/{name}.rs does not call chmail_fuzz::{name}"
        );
        assert!(
            manifest.contains(&format!(
                "name = \"{name}\"\npath = \"fuzz_targets/{name}.rs\""
            )),
            "fuzz/Cargo.toml has no [[bin]] for {name}"
        );
    }
}
