//! A GPU validation pack's index, `cases.json` (written by `cargo xtask gpu-pack`): per case
//! the spec, its dims, and the paths (relative to the pack) of its artifact, weights, inputs
//! and the interpreter's expected outputs.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The version of `cases.json` this checker reads.
pub const FORMAT: u32 = 1;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    pub format: u32,
    /// The largest relative error that passes.
    pub tolerance: f64,
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub spec: String,
    pub dims: BTreeMap<String, i64>,
    /// The seed the weights and inputs were drawn with (`seqc run --seed`), to reproduce them.
    pub seed: u64,
    pub artifact: String,
    pub weights: String,
    pub inputs: String,
    pub expected: String,
}

impl Case {
    /// `B=2,T=13`.
    pub fn dims_text(&self) -> String {
        let v: Vec<String> = self.dims.iter().map(|(k, v)| format!("{k}={v}")).collect();
        v.join(",")
    }
}

/// Reads and checks `PACK/cases.json`.
pub fn read(pack: &Path) -> Result<Index, String> {
    let path = pack.join("cases.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read the pack index {}: {e}", path.display()))?;
    let index: Index =
        serde_json::from_str(&text).map_err(|e| format!("pack index {}: {e}", path.display()))?;
    if index.format != FORMAT {
        return Err(format!(
            "pack index {}: format {}, expected {FORMAT} (build the pack and the checker from \
             the same seqc)",
            path.display(),
            index.format
        ));
    }
    if !(index.tolerance.is_finite() && index.tolerance >= 0.0) {
        return Err(format!(
            "pack index {}: tolerance {}, expected a finite number ≥ 0",
            path.display(),
            index.tolerance
        ));
    }
    Ok(index)
}
