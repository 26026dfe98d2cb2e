//! Replays every committed fuzz corpus file through the fuzz target bodies,
//! so `cargo test` (stable, no libFuzzer) keeps the corpus passing.
//!
//! A target `X` lives in `dataplane/fuzz/fuzz_targets/X.rs` and calls a
//! function of the crate behind its `fuzzing` feature (which the tests
//! enable); register it in `TARGETS` with its corpus
//! directory name.

use std::path::Path;

/// The body of a fuzz target.
type Body = fn(&[u8]);

/// (corpus directory under `dataplane/fuzz/corpus/`, target body).
const TARGETS: &[(&str, Body)] = &[("wire_parse", tack_dataplane::wire::fuzz_parse)];

fn replay(dir: &Path, body: Body) -> usize {
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    for path in entries {
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| body(&data));
        assert!(result.is_ok(), "fuzz corpus input {} fails", path.display());
        n += 1;
    }
    n
}

#[test]
fn corpus_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (name, body) in TARGETS {
        let n = replay(&root.join(name), *body);
        assert!(n > 0, "corpus {name} is empty");
        eprintln!("{name}: replayed {n} inputs");
    }
}
