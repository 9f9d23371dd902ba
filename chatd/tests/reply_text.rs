//! The new text of replies by mail, over the sample replies in `tests/fixtures/replies/`: each
//! `NAME.eml` is a reply as a mail client sends it to a reminder, and `NAME.expected.txt` holds
//! the text [`new_text`] must find in it, followed by one newline (so that editors leave the
//! file alone). Adding a pair adds a case.

use std::{fs, path::PathBuf};

use chatd::reply::{is_automatic, new_text};

/// Fewer samples than this means the folder lost some: one per client style the brief lists.
const MIN_FIXTURES: usize = 14;

fn fixtures() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/replies");
    let mut emls: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a readable folder entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
        .collect();
    emls.sort();
    emls
}

#[test]
fn every_fixture_reply_gives_its_expected_text() {
    let emls = fixtures();
    assert!(
        emls.len() >= MIN_FIXTURES,
        "only {} fixtures in tests/fixtures/replies, want at least {MIN_FIXTURES}",
        emls.len()
    );
    let mut failures = Vec::new();
    for eml in &emls {
        let name = eml.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
        let expected_path = eml.with_file_name(format!("{name}.expected.txt"));
        let expected = fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        let raw = fs::read(eml).unwrap_or_else(|e| panic!("{}: {e}", eml.display()));
        match new_text(&raw) {
            Ok(reply) if format!("{}\n", reply.text) == expected => {}
            Ok(reply) => failures.push(format!(
                "{name} ({}, removed {:?}):\n--- expected\n{expected}--- got\n{}\n",
                reply.body, reply.removed, reply.text
            )),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures differ:\n\n{}",
        failures.len(),
        emls.len(),
        failures.join("\n")
    );
}

#[test]
fn no_fixture_reply_is_automatic() {
    for eml in fixtures() {
        let raw = fs::read(&eml).unwrap_or_else(|e| panic!("{}: {e}", eml.display()));
        assert_eq!(
            is_automatic(&raw, Some("alice@a.example")),
            None,
            "{}",
            eml.display()
        );
    }
}
