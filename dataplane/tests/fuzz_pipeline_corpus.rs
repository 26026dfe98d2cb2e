//! Replays the committed corpus of the `pipeline` fuzz target
//! (`dataplane/fuzz/corpus/pipeline/`) through its body, and runs a short
//! deterministic mutation pass over it, so `cargo test` (stable, no
//! libFuzzer) keeps the whole pipeline's fuzz invariants checked.

use std::path::Path;

use tack_dataplane::pipeline::fuzz_pipeline;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/pipeline");
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

#[test]
fn corpus_replays_cleanly() {
    let c = corpus();
    assert!(c.len() > 50, "corpus has {} inputs", c.len());
    for (name, data) in &c {
        let r = std::panic::catch_unwind(|| fuzz_pipeline(data));
        assert!(r.is_ok(), "fuzz corpus input {name} fails");
    }
}

/// xorshift64*: a fixed-seed generator, so the pass is the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn mutated_corpus_keeps_invariants() {
    let c = corpus();
    let mut rng = Rng(0x7461_636b_6675_7a7a);
    for round in 0..1000 {
        let (name, base) = &c[round % c.len()];
        let mut data = base.clone();
        for _ in 0..1 + rng.below(8) {
            if data.is_empty() {
                break;
            }
            let i = rng.below(data.len());
            match rng.below(4) {
                0 => data[i] ^= 1 << rng.below(8),
                1 => data[i] = rng.next() as u8,
                2 => data[i] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)],
                _ => {
                    // Splice a chunk of another input.
                    let (_, other) = &c[rng.below(c.len())];
                    let j = rng.below(other.len());
                    let n = rng.below(64).min(other.len() - j).min(data.len() - i);
                    data[i..i + n].copy_from_slice(&other[j..j + n]);
                }
            }
        }
        let r = std::panic::catch_unwind(|| fuzz_pipeline(&data));
        assert!(
            r.is_ok(),
            "mutation {round} of {name} fails: {}",
            data.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
    }
}
