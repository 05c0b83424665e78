//! The CPU backend against the interpreter: every spec in `ir-specs/` the backend supports is
//! compiled (with and without the e-graph optimizer), loaded through the runtime and run at
//! B = 2 and T ∈ {1, 7, 13}; every output must match the interpreter's within 1e-4 relative
//! error (integer and bool outputs exactly). The specs the backend cannot compile yet are
//! listed with the operator that stops each, so the gap is visible and the test fails when a
//! listed spec starts working or a supported one stops. The optimised artifact of every spec
//! is also loaded and run through the C API (`seqc_model_load`, `seqc_model_run`, weights
//! from a safetensors file), whose outputs must be the Rust runtime's, byte for byte.

// unsafe: the C API is called as C would call it: raw pointers in, raw pointers out.
#![allow(unsafe_code)]

use seqc::ir::{DimBindings, Graph};
use seqc::kernel::{self, KernelError};
use seqc::{frontend, interp, opt};
use seqc_capi::{
    SeqcDim, SeqcDtype, SeqcInput, SeqcStatus, SeqcTensorView, seqc_last_error, seqc_model_free,
    seqc_model_load, seqc_model_run, seqc_outputs_find, seqc_outputs_free,
};
use seqc_runtime::{DType, HostTensor, Model, Weights};
use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::path::Path;

/// Specs the CPU backend does not compile yet, with the first operator it refuses: none
/// (`scan_fn`, the last, lowers since issue #5).
const UNSUPPORTED: &[(&str, &str)] = &[];

const TS: [i64; 3] = [1, 7, 13];
const TOL: f64 = 1e-4;

mod support;
use support::{cases, check_outputs, rel_err, specs};

fn c_dtype(d: DType) -> SeqcDtype {
    match d {
        DType::F32 => SeqcDtype::F32,
        DType::F16 => SeqcDtype::F16,
        DType::BF16 => SeqcDtype::Bf16,
        DType::I32 => SeqcDtype::I32,
        DType::I64 => SeqcDtype::I64,
        DType::Bool => SeqcDtype::Bool,
    }
}

fn last_error() -> String {
    // SAFETY: never null, NUL-terminated.
    unsafe { CStr::from_ptr(seqc_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// Loads the artifact in `dir` with the weights file `wfile` through the C API, runs it on
/// `inputs` at `dims` and checks that every output of `want` (the Rust runtime's) comes back
/// with the same shape, dtype and bytes.
fn check_c_api(
    dir: &Path,
    wfile: &Path,
    inputs: &BTreeMap<String, HostTensor>,
    dims: &DimBindings,
    want: &BTreeMap<String, HostTensor>,
) -> Result<(), String> {
    let cstr = |s: &str| CString::new(s).map_err(|e| e.to_string());
    let (d, w) = (
        cstr(&dir.to_string_lossy())?,
        cstr(&wfile.to_string_lossy())?,
    );
    let mut m = std::ptr::null_mut();
    // SAFETY: valid strings and out-pointer.
    if unsafe { seqc_model_load(d.as_ptr(), w.as_ptr(), 2, &mut m) } != SeqcStatus::Ok {
        return Err(format!("C load: {}", last_error()));
    }
    let held: Vec<(CString, Vec<i64>, Vec<u8>, DType)> = inputs
        .iter()
        .map(|(n, t)| {
            Ok((
                cstr(n)?,
                t.shape.iter().map(|&x| x as i64).collect(),
                seqc_runtime::io::tensor_bytes(t),
                t.dtype(),
            ))
        })
        .collect::<Result<_, String>>()?;
    let views: Vec<SeqcInput> = held
        .iter()
        .map(|(n, shape, bytes, dt)| SeqcInput {
            name: n.as_ptr(),
            dtype: c_dtype(*dt) as u32,
            shape: shape.as_ptr(),
            rank: shape.len(),
            data: bytes.as_ptr().cast(),
            data_bytes: bytes.len(),
        })
        .collect();
    let names: Vec<CString> = dims.keys().map(|k| cstr(k)).collect::<Result<_, _>>()?;
    let cdims: Vec<SeqcDim> = names
        .iter()
        .zip(dims.values())
        .map(|(n, v)| SeqcDim {
            name: n.as_ptr(),
            value: *v,
        })
        .collect();
    let mut out = std::ptr::null_mut();
    // SAFETY: the views point into `held`, the dims into `names`, alive for the call.
    let s = unsafe {
        seqc_model_run(
            m,
            views.as_ptr(),
            views.len(),
            cdims.as_ptr(),
            cdims.len(),
            &mut out,
        )
    };
    let mut result = Ok(());
    if s != SeqcStatus::Ok {
        result = Err(format!("C run: {}", last_error()));
    }
    for (name, t) in want.iter().filter(|_| s == SeqcStatus::Ok) {
        let n = cstr(name)?;
        let mut v = std::mem::MaybeUninit::<SeqcTensorView>::uninit();
        // SAFETY: live outputs, valid string and out-pointer; the view's arrays live as long
        // as `out`.
        let got = unsafe {
            if seqc_outputs_find(out, n.as_ptr(), v.as_mut_ptr()) != SeqcStatus::Ok {
                result = Err(format!("C output `{name}`: {}", last_error()));
                break;
            }
            let v = v.assume_init();
            (
                v.dtype,
                std::slice::from_raw_parts(v.shape, v.rank).to_vec(),
                std::slice::from_raw_parts(v.data.cast::<u8>(), v.data_bytes).to_vec(),
            )
        };
        let shape: Vec<i64> = t.shape.iter().map(|&x| x as i64).collect();
        if got != (c_dtype(t.dtype()), shape, seqc_runtime::io::tensor_bytes(t)) {
            result = Err(format!("C output `{name}` differs from the Rust runtime's"));
            break;
        }
    }
    // SAFETY: from seqc_model_run / seqc_model_load (or null), freed once.
    unsafe {
        seqc_outputs_free(out);
        seqc_model_free(m);
    }
    result
}

/// Compiles `g` into a temporary artifact, then checks it at every T against the interpreter.
/// Returns how many (T, output) pairs were compared.
fn check(spec: &str, g: &Graph, label: &str) -> Result<usize, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    seqc::codegen::artifact::write_artifact(g, "test", dir.path(), false)
        .map_err(|e| format!("{spec} ({label}): compile: {e}"))?;
    let mut model: Option<Model> = None;
    let mut compared = 0;
    for c in cases(g, &TS)? {
        let t = c.t;
        if model.is_none() {
            let w = Weights::from_tensors(&c.params).map_err(|e| e.to_string())?;
            model = Some(Model::load(dir.path(), w).map_err(|e| format!("{spec}: load: {e}"))?);
        }
        let m = model.as_ref().expect("loaded");
        let got = m
            .run(&c.inputs, &c.bound)
            .map_err(|e| format!("{spec} ({label}) T={t}: run: {e}"))?;
        if label == "opt" {
            let wfile = dir.path().join("weights.safetensors");
            if !wfile.exists() {
                seqc_runtime::io::write_safetensors(&wfile, &c.params)
                    .map_err(|e| format!("{spec}: weights file: {e}"))?;
            }
            check_c_api(dir.path(), &wfile, &c.inputs, &c.bound, &got)
                .map_err(|e| format!("{spec} ({label}) T={t}: {e}"))?;
        }
        compared += check_outputs(&format!("{spec} ({label}) T={t}"), &got, &c.want, TOL)?;
    }
    Ok(compared)
}

/// Checks the specs whose index in sorted order is `shard` mod `SHARDS` (the shards are
/// separate tests so that the harness runs them in parallel).
fn run_shard(shard: usize) {
    let mut unsupported: Vec<(String, String)> = Vec::new();
    let mut mine: Vec<String> = Vec::new();
    let mut failures = Vec::new();
    for (i, path) in specs().into_iter().enumerate() {
        if i % SHARDS != shard {
            continue;
        }
        let spec = path
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        mine.push(spec.clone());
        let g = frontend::load_file(&path).unwrap_or_else(|e| panic!("{spec}: {e:?}"));
        match kernel::lower(&g) {
            Err(KernelError::Unsupported { op, .. }) => {
                unsupported.push((spec, op));
                continue;
            }
            Err(e) => {
                failures.push(format!("{spec}: {e}"));
                continue;
            }
            Ok(_) => {}
        }
        // As the compile path runs it: avoiding what the backend cannot lower yet.
        let opts = opt::OptOptions {
            avoid_ops: seqc::kernel::UNSUPPORTED_OPT_OPS.to_vec(),
            ..Default::default()
        };
        let (o, _) = opt::optimize(&g, &opts).expect("optimizer");
        for (label, graph) in [("ir", &g), ("opt", &o)] {
            match check(&spec, graph, label) {
                Ok(0) => failures.push(format!("{spec} ({label}): no T ran on the interpreter")),
                Ok(_) => {}
                Err(e) => failures.push(e),
            }
        }
    }
    let listed: Vec<(String, String)> = UNSUPPORTED
        .iter()
        .filter(|(s, _)| mine.iter().any(|m| m == s))
        .map(|(s, o)| (s.to_string(), o.to_string()))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        unsupported, listed,
        "the specs the CPU backend refuses changed: update UNSUPPORTED"
    );
}

const SHARDS: usize = 4;

#[test]
fn specs_match_the_interpreter_0() {
    run_shard(0);
}

#[test]
fn specs_match_the_interpreter_1() {
    run_shard(1);
}

#[test]
fn specs_match_the_interpreter_2() {
    run_shard(2);
}

#[test]
fn specs_match_the_interpreter_3() {
    run_shard(3);
}

/// The chunk-local + carry form of R6 (which the cost model takes for the H100 target: pads
/// with symbolic amounts, chunk-local scans from an initial state, carry scans of ⌈T / C⌉
/// steps) compiles and matches the interpreter: Mamba-1, RG-LRU and cumsum.
#[test]
fn chunked_scans_match_the_interpreter() {
    for spec in ["mamba", "griffin_rglru", "switch_moe"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../ir-specs")
            .join(format!("{spec}.seq"));
        let g = frontend::load_file(&path).unwrap_or_else(|e| panic!("{spec}: {e:?}"));
        let opts = opt::OptOptions {
            target: opt::Target::h100(),
            avoid_ops: seqc::kernel::UNSUPPORTED_OPT_OPS.to_vec(),
            ..Default::default()
        };
        let (o, _) = opt::optimize(&g, &opts).expect("optimizer");
        let chunked = o.nodes.iter().any(|n| {
            matches!(n.op, seqc::ir::Op::Scan { axis, .. }
                if o.ty(n.inputs[1]).tensor().is_some_and(|t| t.shape[axis].is_const()))
        });
        assert!(chunked, "{spec}: no chunk-local scan");
        let n = check(spec, &o, "opt for h100").unwrap_or_else(|e| panic!("{e}"));
        assert!(n > 0, "{spec}: nothing compared");
    }
}

#[test]
fn every_listed_unsupported_spec_exists() {
    let names: Vec<String> = specs()
        .iter()
        .map(|p| p.file_stem().expect("name").to_string_lossy().into_owned())
        .collect();
    for (s, _) in UNSUPPORTED {
        assert!(
            names.iter().any(|n| n == s),
            "UNSUPPORTED lists `{s}`, which is no spec"
        );
    }
    assert!(names.len() > UNSUPPORTED.len());
}

/// Selection with NaN (the largest value) and ties (broken by index), against the interpreter.
#[test]
fn selection_with_nan_and_ties_matches_the_interpreter() {
    let g = frontend::load_str(
        "sel.seq",
        "dim B, T;
input x: f32[B, T];
output s = sort(x);
output sd = sort(x, descending = true);
output a = argsort(x);
output ad = argsort(x, descending = true);
output k = topk(x, 3);
output ks = argtopk(x, 2, largest = false);
output m = argmax(x);",
    )
    .expect("spec loads");
    let x = vec![
        2.0,
        f32::NAN,
        -1.0,
        2.0,
        0.5,
        f32::NAN,
        -1.0,
        7.0,
        0.0,
        -0.0,
        3.0,
        3.0,
        f32::NAN,
        1.0,
    ];
    let mut tensors = BTreeMap::new();
    tensors.insert("x".to_string(), HostTensor::f32(vec![2, 7], x));
    let dims: DimBindings = [("B".to_string(), 2), ("T".to_string(), 7)]
        .into_iter()
        .collect();
    let want = interp::run(&g, &dims, &tensors).expect("interp");
    let dir = tempfile::tempdir().expect("tempdir");
    seqc::codegen::artifact::write_artifact(&g, "t", dir.path(), false).expect("compiles");
    let m = Model::load(dir.path(), Weights::default()).expect("loads");
    let got = m.run(&tensors, &bound_none()).expect("runs");
    for (name, w) in &want {
        assert_eq!(rel_err(name, &got[name], w), Ok(0.0), "{name}");
    }
}

fn bound_none() -> DimBindings {
    DimBindings::new()
}
