//! Helpers the backend tests share: the spec list and the comparison with the interpreter.

#![allow(dead_code)] // (why: each test binary includes this module and uses part of it)

use seqc_runtime::HostTensor;
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

/// Largest |a − b| over max |b|; NaN and infinities must coincide.
pub fn rel_err(name: &str, got: &HostTensor, want: &HostTensor) -> Result<f64, String> {
    if got.shape != want.shape || got.dtype() != want.dtype() {
        return Err(format!(
            "`{name}`: {}{:?} vs {}{:?}",
            got.dtype(),
            got.shape,
            want.dtype(),
            want.shape
        ));
    }
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let scale = w
        .iter()
        .filter(|x| x.is_finite())
        .fold(0.0f64, |m, x| m.max(x.abs()));
    let mut err = 0.0f64;
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        if !b.is_finite() || !a.is_finite() {
            if !(a.is_nan() && b.is_nan() || a == b) {
                return Err(format!("`{name}`[{i}]: {a} vs {b}"));
            }
            continue;
        }
        if !want.dtype().is_float() && a != b {
            return Err(format!("`{name}`[{i}]: {a} vs {b} (must be exact)"));
        }
        err = err.max((a - b).abs() / scale.max(1e-6));
    }
    Ok(err)
}
