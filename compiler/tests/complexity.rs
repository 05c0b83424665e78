//! Complexity through the binary: `seqc stats --stage ir|opt --dims T=1024|4096|16384,B=1`.
//! Causal linear attention written in its naive O(T²) masked form (no decay, Lightning
//! Attention-2's constant per-head decay, Mamba-2's per-step decay) costs FLOPs that grow
//! quadratically in T before optimisation (each 4× in T gives ≥ 12× FLOPs) and linearly
//! after (≤ 4.5×). RWKV-6 and recurrent linear attention are written as recurrences, linear
//! already: for them the test checks that the optimised form is the chunked `linear_attn`
//! and stays linear in T.

use std::path::{Path, PathBuf};
use std::process::Command;

fn spec(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("ir-specs")
        .join(format!("{name}.seq"))
}

const TS: [i64; 3] = [1024, 4096, 16384];

/// `seqc stats` FLOPs of a spec at one stage and T.
fn flops(name: &str, stage: &str, t: i64) -> f64 {
    let o = Command::new(env!("CARGO_BIN_EXE_seqc"))
        .args(["stats", spec(name).to_str().unwrap(), "--dims"])
        .arg(format!("T={t},B=1"))
        .args(["--stage", stage])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["stage"], stage);
    assert_eq!(v["dims"]["T"], t);
    v["flops"].as_u64().unwrap() as f64
}

/// The growth factors between consecutive Ts.
fn growth(name: &str, stage: &str) -> Vec<f64> {
    let f: Vec<f64> = TS.iter().map(|&t| flops(name, stage, t)).collect();
    f.windows(2).map(|w| w[1] / w[0]).collect()
}

#[test]
fn masked_quadratic_forms_become_linear_in_t() {
    for name in ["linear_attention", "lightning_attention", "mamba2"] {
        let ir = growth(name, "ir");
        let opt = growth(name, "opt");
        assert!(ir.iter().all(|&g| g >= 12.0), "{name}: ir growth {ir:?}");
        assert!(opt.iter().all(|&g| g <= 4.5), "{name}: opt growth {opt:?}");
    }
}

#[test]
fn recurrences_stay_linear_as_chunked_linear_attn() {
    for name in ["rwkv6", "linear_attention_recurrent"] {
        let ir = growth(name, "ir");
        let opt = growth(name, "opt");
        assert!(ir.iter().all(|&g| g <= 4.5), "{name}: ir growth {ir:?}");
        assert!(opt.iter().all(|&g| g <= 4.5), "{name}: opt growth {opt:?}");
        let o = Command::new(env!("CARGO_BIN_EXE_seqc"))
            .args(["dump", spec(name).to_str().unwrap(), "--stage", "opt"])
            .output()
            .unwrap();
        assert!(o.status.success());
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("= linear_attn("), "{name}:\n{text}");
        assert!(!text.contains("= scan("), "{name}:\n{text}");
    }
}
