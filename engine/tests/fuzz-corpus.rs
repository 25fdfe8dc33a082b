//! The CI-sized run of the fuzz targets (engine/fuzz): every committed seed and regression input,
//! then a bounded, deterministic mutation run from those seeds (bit flips, truncations, splices,
//! inserted bytes). Longer coverage-guided runs use cargo-fuzz; see perf-reports.

use std::path::Path;

use tern_testkit::fuzzing::TARGETS;

const MUTATIONS_PER_SEED: usize = 400;

fn files(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    v.sort();
    v.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut d = seed.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
            1 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] = rng.next() as u8;
            }
            2 => d.truncate(rng.below(d.len() + 1)),
            3 => {
                let i = rng.below(d.len() + 1);
                let n = rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                d.splice(i..i, bytes);
            }
            4 if !other.is_empty() => {
                let at = rng.below(d.len() + 1);
                let from = rng.below(other.len());
                let to = from + rng.below(other.len() - from + 1);
                d.splice(at..at, other[from..to].iter().copied());
            }
            _ => {
                // Interesting values: 0, 0xff, boundaries of length fields.
                if !d.is_empty() {
                    let i = rng.below(d.len());
                    d[i] = [0u8, 0xff, 0x7f, 0x80, 0x01][rng.below(5)];
                }
            }
        }
    }
    d
}

#[test]
fn fuzz_targets_replay_corpus_and_mutations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut total = 0usize;
    for (name, target) in TARGETS {
        let mut seeds = files(&root.join("corpus").join(name));
        seeds.extend(files(&root.join("regressions").join(name)));
        assert!(!seeds.is_empty(), "no seeds for {name}");
        for s in &seeds {
            target(s);
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
        for (i, s) in seeds.iter().enumerate() {
            let other = &seeds[(i + 1) % seeds.len()];
            for _ in 0..MUTATIONS_PER_SEED {
                target(&mutate(&mut rng, s, other));
                total += 1;
            }
        }
    }
    eprintln!("fuzz replay: {total} mutated inputs");
}
