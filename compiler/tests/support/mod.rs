//! Helpers the backend tests share: the spec list, seeded cases with the interpreter's
//! outputs, and the comparison with them (`seqc_runtime::compare`).

#![allow(dead_code)] // (why: each test binary includes this module and uses part of it)

use seqc_runtime::HostTensor;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every spec in `ir-specs/`, sorted.
pub fn specs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ir-specs");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("ir-specs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seq"))
        .collect();
    v.sort();
    v
}

pub use seqc_runtime::compare::rel_err;

/// One run of a graph: the dims, its seeded weights and inputs, and the interpreter's outputs.
pub struct Case {
    pub t: i64,
    pub bound: seqc::ir::DimBindings,
    pub params: BTreeMap<String, HostTensor>,
    pub inputs: BTreeMap<String, HostTensor>,
    pub want: BTreeMap<String, HostTensor>,
}

/// The cases of `g` at B = 2 and each T of `ts` (values seeded with 3); a T the spec itself
/// rejects (e.g. not a multiple of its block size) is left out.
pub fn cases(g: &seqc::ir::Graph, ts: &[i64]) -> Result<Vec<Case>, String> {
    let mut out = Vec::new();
    for &t in ts {
        let given: seqc::ir::DimBindings = [("B".to_string(), 2), ("T".to_string(), t)]
            .into_iter()
            .collect();
        let mut tensors = BTreeMap::new();
        let bound = seqc::bind::bind_dims(g, &given, &tensors).map_err(|e| e.to_string())?;
        seqc::bind::fill_missing(g, &bound, &mut tensors, 3).map_err(|e| e.to_string())?;
        let Ok(want) = seqc::interp::run(g, &bound, &tensors) else {
            continue;
        };
        let split = |leaves: Vec<&str>| -> BTreeMap<String, HostTensor> {
            leaves
                .into_iter()
                .map(|n| (n.to_string(), tensors[n].clone()))
                .collect()
        };
        out.push(Case {
            t,
            params: split(g.params().map(|(n, _)| n).collect()),
            inputs: split(g.inputs().map(|(n, _)| n).collect()),
            bound,
            want,
        });
    }
    Ok(out)
}

/// Every output of `got` against the interpreter's within `tol` (see [`rel_err`]); the
/// number compared.
pub fn check_outputs(
    what: &str,
    got: &BTreeMap<String, HostTensor>,
    want: &BTreeMap<String, HostTensor>,
    tol: f64,
) -> Result<usize, String> {
    for (name, w) in want {
        let g = got
            .get(name)
            .ok_or_else(|| format!("{what}: no output `{name}`"))?;
        let e = rel_err(name, g, w).map_err(|e| format!("{what}: {e}"))?;
        if e > tol {
            return Err(format!(
                "{what}: `{name}` differs from the interpreter by {e:.3e} (relative)"
            ));
        }
    }
    Ok(want.len())
}

/// `seqc stats FILE --dims T=t,B=1 --stage STAGE` (CPU target) as its JSON; panics with
/// seqc's message when it fails.
pub fn seqc_stats(file: &Path, stage: &str, t: i64) -> serde_json::Value {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_seqc"))
        .args(["stats", file.to_str().expect("UTF-8 path"), "--dims"])
        .arg(format!("T={t},B=1"))
        .args(["--stage", stage])
        .output()
        .expect("runs seqc");
    assert!(
        o.status.success(),
        "seqc stats {}: {}",
        file.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["dims"]["T"], t, "{v}");
    assert_eq!(v["stage"], stage, "{v}");
    v
}

/// The FLOPs `seqc stats` reports (see [`seqc_stats`]).
pub fn seqc_flops(file: &Path, stage: &str, t: i64) -> f64 {
    seqc_stats(file, stage, t)["flops"].as_f64().expect("flops")
}

/// How often `rule` fired over all phases of an optimizer run.
pub fn fired(report: &seqc::opt::OptReport, rule: &str) -> usize {
    report
        .phases
        .iter()
        .filter_map(|p| p.rules_fired.get(rule))
        .sum()
}

/// How many nodes of `g` have operator `name`.
pub fn count_ops(g: &seqc::ir::Graph, name: &str) -> usize {
    g.nodes.iter().filter(|n| n.op.name() == name).count()
}

/// Whether some value of `g` has T in two axes (a [T, T] mask, scores or keys).
pub fn has_quadratic_value(g: &seqc::ir::Graph) -> bool {
    let t = seqc::ir::DimExpr::sym("T");
    g.nodes.iter().any(|n| {
        n.ty.tensor()
            .is_some_and(|ty| ty.shape.iter().filter(|d| **d == t).count() >= 2)
    })
}

/// Dims B = b, T = t.
pub fn bt(b: i64, t: i64) -> seqc::ir::DimBindings {
    [("B".to_string(), b), ("T".to_string(), t)].into()
}
