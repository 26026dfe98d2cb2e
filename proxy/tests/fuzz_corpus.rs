//! Replays the committed fuzz corpus of `proxy/fuzz` through the fuzz target
//! bodies, so `cargo test` (stable, no libFuzzer) keeps the corpus passing, and
//! checks that every raw request of the framing differential test is a seed.
//!
//! A target `X` lives in `proxy/fuzz/fuzz_targets/X.rs` and calls a public
//! function of the crate; register it in `TARGETS` with its corpus directory.

mod framing_cases;

use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

/// The body of a fuzz target.
type Body = fn(&[u8]);

/// (corpus directory under `proxy/fuzz/corpus/`, target body).
const TARGETS: &[(&str, Body)] = &[("request_parse", tack_proxy::h1::fuzz_request)];

fn corpus_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn seed_name(data: &[u8]) -> String {
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn corpus_replays_cleanly() {
    for (name, body) in TARGETS {
        let mut n = 0;
        for path in files(&corpus_dir(name)) {
            let data = std::fs::read(&path).unwrap();
            let result = std::panic::catch_unwind(|| body(&data));
            assert!(result.is_ok(), "fuzz corpus input {} fails", path.display());
            n += 1;
        }
        assert!(n > 0, "corpus {name} is empty");
        eprintln!("{name}: replayed {n} inputs");
    }
}

#[test]
fn every_table_case_is_a_seed() {
    let dir = corpus_dir("request_parse");
    let seeds: Vec<Vec<u8>> = files(&dir)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let missing: Vec<&str> = framing_cases::cases()
        .iter()
        .filter(|c| !seeds.contains(&c.raw))
        .map(|c| c.name)
        .collect();
    assert!(
        missing.is_empty(),
        "cases of framing_cases missing from {} (run `cargo test -p tack-proxy --test fuzz_corpus -- --ignored write_table_seeds`): {missing:?}",
        dir.display()
    );
}

/// Write every case of the table as a seed (run by hand after changing it).
#[test]
#[ignore]
fn write_table_seeds() {
    let dir = corpus_dir("request_parse");
    std::fs::create_dir_all(&dir).unwrap();
    for c in framing_cases::cases() {
        std::fs::write(dir.join(seed_name(&c.raw)), &c.raw).unwrap();
    }
}

/// A stand-in for libFuzzer on stable: random byte flips, insertions, deletions
/// and splices of the seeds through every target body (run by hand;
/// `TACK_FUZZ_ITERS` mutations per target, 100000 by default).
#[test]
#[ignore]
fn mutate_seeds() {
    let iters: u64 = std::env::var("TACK_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for (name, body) in TARGETS {
        let seeds: Vec<Vec<u8>> = files(&corpus_dir(name))
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .filter(|s| s.len() < 4096)
            .collect();
        for _ in 0..iters {
            let mut d = seeds[(rand() % seeds.len() as u64) as usize].clone();
            for _ in 0..1 + rand() % 4 {
                let at = (rand() % (d.len() as u64 + 1)) as usize;
                let byte = [b'\r', b'\n', b' ', b'\t', b':', b',', b';', 0, b'0', b'f']
                    [(rand() % 10) as usize];
                match rand() % 5 {
                    0 if at < d.len() => d[at] = rand() as u8,
                    1 if at < d.len() => d[at] = byte,
                    2 => d.insert(at, byte),
                    3 if at < d.len() => {
                        d.remove(at);
                    }
                    _ => {
                        let other = &seeds[(rand() % seeds.len() as u64) as usize];
                        let from = (rand() % (other.len() as u64 + 1)) as usize;
                        d.truncate(at);
                        d.extend_from_slice(&other[from..]);
                    }
                }
            }
            let r = std::panic::catch_unwind(|| body(&d));
            assert!(
                r.is_ok(),
                "{name} fails on {:?}",
                String::from_utf8_lossy(&d)
            );
        }
        eprintln!("{name}: {iters} mutations");
    }
}
