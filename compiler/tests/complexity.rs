//! Complexity through the binary: `seqc stats --stage ir|opt --dims T=1024|4096|16384,B=1`.
//! Causal linear attention written in its naive O(T²) masked form (no decay, Lightning
//! Attention-2's constant per-head decay, Mamba-2's per-step decay) costs FLOPs that grow
//! quadratically in T before optimisation (each 4× in T gives ≥ 12× FLOPs) and linearly
//! after (≤ 4.5×). RWKV-6 and recurrent linear attention are written as recurrences, linear
//! already: for them the test checks that the optimised form is the chunked `linear_attn`
//! and stays linear in T. Linear scans (Mamba-1, RG-LRU, cumsum) on the H100 target: the
//! estimated time of the sequential scan grows with its critical path, ∝ T (≥ 3× per 4× in
//! T from 4k to 16k), that of the chunk-local + carry form (R6) ∝ C + T / C ≈ 2√T plus the
//! work (≤ 2× per 4×).

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
    stat(name, stage, t, "cpu", "flops")
}

/// One figure of `seqc stats --target TARGET` of a spec at one stage and T.
fn stat(name: &str, stage: &str, t: i64, target: &str, key: &str) -> f64 {
    let o = Command::new(env!("CARGO_BIN_EXE_seqc"))
        .args(["stats", spec(name).to_str().unwrap(), "--dims"])
        .arg(format!("T={t},B=1"))
        .args(["--stage", stage, "--target", target])
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
    assert_eq!(v["target"], target);
    v[key].as_f64().unwrap()
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

#[test]
fn chunked_scans_shorten_the_critical_path_on_the_gpu() {
    for name in ["mamba", "griffin_rglru", "switch_moe"] {
        let time = |stage: &str| -> Vec<f64> {
            let v: Vec<f64> = TS
                .iter()
                .map(|&t| stat(name, stage, t, "h100", "est_time_s"))
                .collect();
            v.windows(2).map(|w| w[1] / w[0]).collect()
        };
        let (ir, opt) = (time("ir"), time("opt"));
        assert!(ir[1] >= 3.0, "{name}: ir time growth {ir:?}");
        assert!(
            opt.iter().all(|&g| g <= 2.0),
            "{name}: opt time growth {opt:?}"
        );
    }
}
