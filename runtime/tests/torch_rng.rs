//! `rng::torch_randn` against draws PyTorch itself produced (`runtime/tests/data/torch_randn.json`,
//! written by `xtask/fixtures/torch_randn.py`).

use seqc_runtime::rng::{Mt19937, torch_randn};

struct Case {
    seed: u64,
    n: usize,
    want: Vec<f32>,
}

fn cases() -> Vec<Case> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/torch_randn.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            seed: c["seed"].as_u64().unwrap(),
            n: c["n"].as_u64().unwrap() as usize,
            want: c["bits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| f32::from_bits(u32::from_str_radix(b.as_str().unwrap(), 16).unwrap()))
                .collect(),
        })
        .collect()
}

/// Distance in units in the last place between two finite f32 of the same sign.
fn ulps(a: f32, b: f32) -> u32 {
    assert_eq!(a.is_sign_negative(), b.is_sign_negative(), "{a} vs {b}");
    (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
}

#[test]
fn fixture_covers_both_paths_and_several_seeds() {
    let cs = cases();
    let sizes: std::collections::BTreeSet<usize> = cs.iter().map(|c| c.n).collect();
    for n in [1, 15, 16, 17, 1000] {
        assert!(sizes.contains(&n), "no case of size {n}");
    }
    assert!(
        cs.iter()
            .map(|c| c.seed)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            >= 4
    );
    assert!(cs.iter().all(|c| c.want.len() == c.n));
}

#[test]
fn small_draws_match_torch_bit_for_bit() {
    for c in cases().iter().filter(|c| c.n < 16) {
        let got = torch_randn(c.seed, c.n);
        let got: Vec<u32> = got.iter().map(|x| x.to_bits()).collect();
        let want: Vec<u32> = c.want.iter().map(|x| x.to_bits()).collect();
        assert_eq!(got, want, "seed {} n {}", c.seed, c.n);
    }
}

#[test]
fn blockwise_draws_match_torch_within_three_ulps() {
    let (mut worst, mut exact, mut total) = (0, 0, 0);
    for c in cases().iter().filter(|c| c.n >= 16) {
        let got = torch_randn(c.seed, c.n);
        assert_eq!(got.len(), c.n);
        for (i, (g, w)) in got.iter().zip(&c.want).enumerate() {
            let u = ulps(*g, *w);
            assert!(
                u <= 3,
                "seed {} n {} [{i}]: {g} vs torch {w} ({u} ulps)",
                c.seed,
                c.n
            );
            worst = worst.max(u);
            exact += usize::from(u == 0);
            total += 1;
        }
    }
    // Most values are exact: a wrong uniform or layout would miss by far more than ulps.
    assert!(
        exact * 2 >= total,
        "only {exact} of {total} exact (worst {worst} ulps)"
    );
}

#[test]
fn mt19937_matches_the_reference_sequence() {
    // The 10000th output of std::mt19937 with its default seed 5489 (C++11 [rand.predef]).
    let mut g = Mt19937::new(5489);
    let v = (0..10000).map(|_| g.next_u32()).last().unwrap();
    assert_eq!(v, 4_123_659_995);
}

#[test]
fn seeds_use_the_low_32_bits_as_torch_does() {
    assert_eq!(torch_randn(7, 20), torch_randn(7 + (1 << 32), 20));
    assert_ne!(torch_randn(7, 20), torch_randn(8, 20));
}

#[test]
fn artifact_random_buffers_keep_the_torch_flag_and_read_old_artifacts() {
    use seqc_runtime::artifact::BufferKind;
    let old: BufferKind =
        serde_json::from_str(r#"{"random": {"seed": 3, "normal": true}}"#).unwrap();
    let want = BufferKind::Random {
        seed: 3,
        normal: true,
        torch: false,
    };
    assert_eq!(old, want);
    assert_eq!(
        serde_json::to_string(&want).unwrap(),
        r#"{"random":{"seed":3,"normal":true}}"#
    );
    let t = BufferKind::Random {
        seed: 3,
        normal: true,
        torch: true,
    };
    let s = serde_json::to_string(&t).unwrap();
    assert_eq!(s, r#"{"random":{"seed":3,"normal":true,"torch":true}}"#);
    assert_eq!(serde_json::from_str::<BufferKind>(&s).unwrap(), t);
}
