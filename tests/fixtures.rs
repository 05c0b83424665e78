//! Numerical fixtures: seqc's interpreter against public reference implementations.
//!
//! Every `tests/fixtures/STEM.json` is one fixture set. STEM is `SPEC` or `SPEC.VARIANT`
//! (e.g. `mamba`, `mamba.t1`); the spec is `ir-specs/SPEC.seq`. Beside the JSON lie
//! `STEM.weights.safetensors` (the spec's params), `STEM.inputs.safetensors` (its inputs) and
//! `STEM.expected.safetensors` (its outputs as the reference computed them). The JSON holds
//! `{"spec": SPEC, "dims": {"B": 2, "T": 13}, "reference": "...", "tolerance": 1e-4,
//! "generator": "..."}`, and optionally `"repository": "OWNER/NAME@COMMIT"` (the paper's code
//! the generator ran, not a package) and `"config"` (an HF model's config.json).
//!
//! For each set the spec is loaded, its dims are bound, the interpreter runs on weights ∪
//! inputs, and every expected output must satisfy
//! `max |got − want| ≤ tolerance · max(1, max |want|)`.
//!
//! The fixtures are written by `xtask/fixtures/generate.py` (see its docstring for the pinned
//! reference versions). `SEQC_FIXTURE=substring` runs only the sets whose STEM contains it.
//!
//! The specs in [`OPTIMISED`] are also checked after the e-graph optimizer (`seqc::opt`):
//! rewrites that change the algorithm against the paper's own code.

use seqc_runtime::HostTensor;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const KINDS: [&str; 3] = ["weights", "inputs", "expected"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The STEMs of every `tests/fixtures/*.json`, sorted.
fn fixture_stems() -> Vec<String> {
    let dir = fixtures_dir();
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut stems: Vec<String> = entries
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter_map(|name| name.strip_suffix(".json").map(str::to_owned))
        .collect();
    stems.sort();
    stems
}

fn spec_of(stem: &str) -> &str {
    stem.split('.').next().unwrap_or(stem)
}

fn read_tensors(path: &Path) -> Result<BTreeMap<String, HostTensor>, String> {
    seqc_runtime::io::read_safetensors(path).map_err(|e| format!("{e}"))
}

/// Row-major multi-index of flat position `i` in `shape`.
fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (k, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            idx[k] = i % d;
            i /= d;
        }
    }
    idx
}

/// Compares one output; returns the worst relative error on success.
fn compare(name: &str, got: &HostTensor, want: &HostTensor, tol: f64) -> Result<String, String> {
    if got.shape != want.shape {
        return Err(format!(
            "output `{name}`: shape {:?}, expected {:?}",
            got.shape, want.shape
        ));
    }
    if got.dtype() != want.dtype() {
        return Err(format!(
            "output `{name}`: dtype {}, expected {}",
            got.dtype(),
            want.dtype()
        ));
    }
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let scale = w.iter().fold(1.0_f64, |m, v| m.max(v.abs()));
    let bound = tol * scale;
    // The worst element; a NaN on either side counts as infinitely wrong.
    let mut worst: Option<(usize, f64)> = None;
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let d = (a - b).abs();
        let d = if d.is_nan() { f64::INFINITY } else { d };
        if worst.is_none_or(|(_, m)| d > m) {
            worst = Some((i, d));
        }
    }
    let Some((i, err)) = worst else {
        return Ok(format!("`{name}` empty"));
    };
    let at = unravel(i, &want.shape);
    if err <= bound {
        Ok(format!("`{name}` max err {err:.2e} ≤ {bound:.2e}"))
    } else {
        let bad = g
            .iter()
            .zip(&w)
            .filter(|&(a, b)| {
                let d = (a - b).abs();
                d.is_nan() || d > bound
            })
            .count();
        Err(format!(
            "output `{name}`: max |got − want| = {err:.3e} > {bound:.3e} (tolerance {tol:e} × \
             scale {scale:.3e}); worst at {at:?}: got {}, want {}; {bad} of {} elements out of \
             tolerance",
            g[i],
            w[i],
            w.len()
        ))
    }
}

/// Specs whose fixtures are also run optimised, each with an operator the optimised graph
/// must hold at least so many times (so that the check cannot pass with the rewrite gone):
/// StreamingLLM's split into sinks and window attention (`sinks-window-attention`);
/// cosFormer's cos(t − s) split (`cos-difference`: only the split form computes a `sin`),
/// and its causal form then chunked; Longformer's local branch fused with its global keys
/// read from the input (one fused attention per branch and layer); Mixtral's and MiniMax's
/// top-2 experts as grouped products (`moe-topk-grouped`: two per MoE layer, gate and up
/// merged into one, so at least two).
const OPTIMISED: &[(&str, &str, usize)] = &[
    ("streaming_llm", "attention_lse", 1),
    ("cosformer", "sin", 1),
    ("cosformer_causal", "linear_attn", 1),
    ("longformer", "attention", 2),
    ("hf_longformer", "attention", 4),
    ("hf_mixtral", "grouped_matmul", 2),
    ("hf_minimax", "grouped_matmul", 2),
];

/// Runs one fixture set, optimised first when `optimised` names the operator the result must
/// hold at least the given number of times; returns a one-line summary.
fn run_fixture(stem: &str, optimised: Option<(&str, usize)>) -> Result<String, String> {
    let dir = fixtures_dir();
    let json_path = dir.join(format!("{stem}.json"));
    let text = std::fs::read_to_string(&json_path)
        .map_err(|e| format!("cannot read {}: {e}", json_path.display()))?;
    let meta: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", json_path.display()))?;

    let spec = spec_of(stem);
    if let Some(named) = meta.get("spec").filter(|n| n.as_str() != Some(spec)) {
        return Err(format!(
            "the JSON names spec {named}, the file name says `{spec}`"
        ));
    }
    let spec_path = repo_root().join("ir-specs").join(format!("{spec}.seq"));
    if !spec_path.is_file() {
        return Err(format!(
            "no matching spec: {} does not exist",
            spec_path.display()
        ));
    }

    let mut dims: BTreeMap<String, i64> = BTreeMap::new();
    if let Some(d) = meta.get("dims") {
        let obj = d.as_object().ok_or("`dims` is not an object")?;
        for (k, v) in obj {
            let n = v
                .as_i64()
                .ok_or_else(|| format!("dim `{k}` is not an integer"))?;
            dims.insert(k.clone(), n);
        }
    }
    let tol = meta
        .get("tolerance")
        .and_then(serde_json::Value::as_f64)
        .ok_or("`tolerance` is missing or not a number")?;

    // Whole-model fixtures carry the checkpoint's HF config.json under "config".
    let config: seqc::frontend::Config = match meta.get("config") {
        Some(serde_json::Value::Object(m)) => m.clone().into_iter().collect(),
        Some(_) => return Err("`config` is not an object".into()),
        None => seqc::frontend::Config::new(),
    };
    let graph = seqc::frontend::load_file_with(&spec_path, &config)
        .map_err(|e| format!("{}: spec errors:\n{e}", spec_path.display()))?;
    let graph = match optimised {
        None => graph,
        Some((op, least)) => {
            let (o, _) = seqc::opt::optimize(&graph, &seqc::opt::OptOptions::default())
                .map_err(|e| format!("optimizer: {e}"))?;
            let n = o.nodes.iter().filter(|n| n.op.name() == op).count();
            if n < least {
                return Err(format!(
                    "the optimised graph has {n} `{op}`, expected at least {least}:\n{o}"
                ));
            }
            o
        }
    };

    let weights = read_tensors(&dir.join(format!("{stem}.weights.safetensors")))?;
    let inputs = read_tensors(&dir.join(format!("{stem}.inputs.safetensors")))?;
    let expected = read_tensors(&dir.join(format!("{stem}.expected.safetensors")))?;
    if expected.is_empty() {
        return Err("the expected file holds no tensor".into());
    }

    let mut tensors = weights;
    for (name, t) in inputs {
        if tensors.insert(name.clone(), t).is_some() {
            return Err(format!("`{name}` is both a weight and an input"));
        }
    }

    let bound = seqc::bind::bind_dims(&graph, &dims, &tensors)
        .map_err(|e| format!("binding dims {dims:?}: {e}"))?;
    let outputs =
        seqc::interp::run(&graph, &bound, &tensors).map_err(|e| format!("interpreter: {e}"))?;

    let mut summary = Vec::new();
    for (name, want) in &expected {
        let got = outputs
            .get(name)
            .ok_or_else(|| format!("output `{name}` is missing from the interpreter's results"))?;
        summary.push(compare(name, got, want, tol)?);
    }
    let unchecked: Vec<&String> = outputs
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    if !unchecked.is_empty() {
        return Err(format!(
            "the spec's outputs {unchecked:?} have no expected values"
        ));
    }
    Ok(summary.join(", "))
}

#[test]
fn fixtures_match_references() {
    let filter = std::env::var("SEQC_FIXTURE").ok();
    let stems: Vec<String> = fixture_stems()
        .into_iter()
        .filter(|s| filter.as_deref().is_none_or(|f| s.contains(f)))
        .collect();
    assert!(
        !stems.is_empty(),
        "no fixture sets in {} (filter {filter:?})",
        fixtures_dir().display()
    );

    let mut failures = String::new();
    let mut failed = 0;
    for stem in &stems {
        match run_fixture(stem, None) {
            Ok(summary) => println!("ok   {stem}: {summary}"),
            Err(e) => {
                println!("FAIL {stem}: {e}");
                failed += 1;
                let _ = writeln!(failures, "{stem}: {e}");
            }
        }
    }
    assert!(
        failed == 0,
        "{failed} of {} fixture sets failed:\n{failures}",
        stems.len()
    );
}

#[test]
fn optimised_fixtures_match_references() {
    let filter = std::env::var("SEQC_FIXTURE").ok();
    let mut ran = 0;
    let mut failures = String::new();
    for stem in fixture_stems() {
        if filter.as_deref().is_some_and(|f| !stem.contains(f)) {
            continue;
        }
        let Some(&(_, op, least)) = OPTIMISED.iter().find(|(s, ..)| *s == spec_of(&stem)) else {
            continue;
        };
        ran += 1;
        match run_fixture(&stem, Some((op, least))) {
            Ok(summary) => println!("ok   {stem} (optimised): {summary}"),
            Err(e) => {
                println!("FAIL {stem} (optimised): {e}");
                let _ = writeln!(failures, "{stem} (optimised): {e}");
            }
        }
    }
    assert!(
        filter.is_some() || ran >= OPTIMISED.len(),
        "only {ran} optimised fixture sets ran"
    );
    assert!(failures.is_empty(), "{failures}");
}

/// Every file in tests/fixtures/ belongs to a fixture set, and every set is complete.
#[test]
fn fixture_files_are_complete() {
    let stems: BTreeSet<String> = fixture_stems().into_iter().collect();
    let mut problems = Vec::new();
    for stem in &stems {
        for kind in KINDS {
            let p = fixtures_dir().join(format!("{stem}.{kind}.safetensors"));
            if !p.is_file() {
                problems.push(format!("{stem}: missing {}", p.display()));
            }
        }
    }
    for entry in std::fs::read_dir(fixtures_dir()).expect("fixtures dir") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let owner = name.strip_suffix(".json").map(str::to_owned).or_else(|| {
            KINDS.iter().find_map(|k| {
                name.strip_suffix(&format!(".{k}.safetensors"))
                    .map(str::to_owned)
            })
        });
        if !owner.is_some_and(|o| stems.contains(&o)) {
            problems.push(format!("{name}: not part of any fixture set"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
