//! Compiled artifacts through the runtime: hand-checked results, weights memory-mapped from a
//! file, reuse across calls and threads, and every refusal — a wrong format version, a
//! missing library, a truncated manifest, a library whose hash differs, another machine, and
//! missing, extra, wrong-dtype or wrong-shape weights and inputs — each with a named error.

use seqc::codegen::artifact::write_artifact;
use seqc::frontend;
use seqc_runtime::artifact::{LIBRARY_FILE, MANIFEST_FILE};
use seqc_runtime::{DimValues, HostTensor, Model, ModelError, TensorData, Weights};
use std::collections::BTreeMap;
use std::path::Path;

/// y[b, t, j] = Σ_i x[b, t, i] · w[j, i] + 1, and idx-selected rows of `e`.
const SPEC: &str = "
dim B, T;
param w: f32[2, 3];
param e: f32[4, 2];
input x: f32[B, T, 3];
input idx: i32[T];
output y = einsum(\"bti,ji->btj\", x, w) + 1.0;
output rows = take(e, idx);
";

fn build(dir: &Path) {
    let g = frontend::load_str("t.seq", SPEC).expect("spec loads");
    write_artifact(&g, "hash", dir, true).expect("compiles");
}

fn weights() -> BTreeMap<String, HostTensor> {
    let mut w = BTreeMap::new();
    w.insert(
        "w".to_string(),
        HostTensor::f32(vec![2, 3], vec![1.0, 2.0, 3.0, 0.0, -1.0, 0.5]),
    );
    w.insert(
        "e".to_string(),
        HostTensor::f32(vec![4, 2], (0..8).map(|v| v as f32).collect()),
    );
    w
}

fn inputs(t: usize, idx: Vec<i32>) -> BTreeMap<String, HostTensor> {
    let mut m = BTreeMap::new();
    m.insert(
        "x".to_string(),
        HostTensor::f32(vec![1, t, 3], (0..3 * t).map(|v| v as f32).collect()),
    );
    m.insert(
        "idx".to_string(),
        HostTensor::new("idx", vec![t], TensorData::I32(idx)).expect("shape"),
    );
    m
}

fn load(dir: &Path) -> Result<Model, ModelError> {
    Model::load(dir, Weights::from_tensors(&weights())?)
}

fn err_text(r: Result<Model, ModelError>) -> String {
    match r {
        Ok(_) => panic!("the artifact was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn runs_with_hand_checked_values_and_mapped_weights() {
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path());
    for f in ["kernels.txt", "llvm.ll", MANIFEST_FILE, LIBRARY_FILE] {
        assert!(dir.path().join(f).exists(), "{f} missing");
    }
    let wfile = dir.path().join("w.safetensors");
    seqc_runtime::io::write_safetensors(&wfile, &weights()).expect("write");
    let m = Model::load(dir.path(), Weights::open(&[&wfile]).expect("mmap")).expect("loads");
    let out = m
        .run(&inputs(2, vec![3, 0]), &DimValues::new())
        .expect("runs");
    // x rows [0,1,2] and [3,4,5]; w rows [1,2,3] and [0,-1,0.5].
    assert_eq!(
        out["y"].data,
        TensorData::F32(vec![
            0.0 + 2.0 + 6.0 + 1.0,
            -1.0 + 1.0 + 1.0,
            3.0 + 8.0 + 15.0 + 1.0,
            -4.0 + 2.5 + 1.0
        ])
    );
    assert_eq!(out["y"].shape, vec![1, 2, 2]);
    assert_eq!(out["rows"].data, TensorData::F32(vec![6.0, 7.0, 0.0, 1.0]));
}

#[test]
fn reusable_across_calls_and_threads() {
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path());
    let m = load(dir.path()).expect("loads");
    let expect = |t: usize| {
        let o = m
            .run(&inputs(t, vec![1; t]), &DimValues::new())
            .expect("runs");
        o["y"].clone()
    };
    let serial: Vec<HostTensor> = (1..=8).map(expect).collect();
    std::thread::scope(|s| {
        let hs: Vec<_> = (1..=8).map(|t| s.spawn(move || expect(t))).collect();
        for (h, want) in hs.into_iter().zip(&serial) {
            assert_eq!(&h.join().expect("thread"), want);
        }
    });
}

#[test]
fn run_into_writes_the_callers_tensors_and_reuses_their_storage() {
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path());
    let m = load(dir.path()).expect("loads");
    let mut out = BTreeMap::new();
    m.run_into(&inputs(2, vec![3, 0]), &DimValues::new(), &mut out)
        .expect("runs");
    // The hand-checked values of `runs_with_hand_checked_values_and_mapped_weights`.
    assert_eq!(out["y"].data, TensorData::F32(vec![9.0, 1.0, 27.0, -0.5]));
    assert_eq!(out["rows"].data, TensorData::F32(vec![6.0, 7.0, 0.0, 1.0]));
    let ptr = |o: &BTreeMap<String, HostTensor>| match &o["y"].data {
        TensorData::F32(v) => v.as_ptr(),
        d => panic!("y is {:?}", d.dtype()),
    };
    // Grow to T = 5, then shrink to T = 3: each call's values are those of a fresh `run`, and
    // the shrinking call keeps the storage (the kernels wrote into it, nothing was copied in).
    for (t, same) in [(5, false), (3, true), (3, true)] {
        let before = ptr(&out);
        let idx: Vec<i32> = (0..t as i32).map(|i| i % 4).collect();
        m.run_into(&inputs(t, idx.clone()), &DimValues::new(), &mut out)
            .expect("runs");
        let fresh = m.run(&inputs(t, idx), &DimValues::new()).expect("runs");
        assert_eq!(out, fresh, "T = {t}");
        if same {
            assert_eq!(ptr(&out), before, "T = {t}: the output was reallocated");
        }
    }
    let run = |o: &mut BTreeMap<String, HostTensor>| {
        m.run_into(&inputs(2, vec![0, 1]), &DimValues::new(), o)
            .unwrap_err()
            .to_string()
    };
    let mut extra = out.clone();
    extra.insert("z".into(), HostTensor::f32(vec![1], vec![0.0]));
    assert_eq!(
        run(&mut extra),
        "`z` is not an output of the model (its outputs: y, rows)"
    );
    let mut wrong = out.clone();
    wrong.insert(
        "y".into(),
        HostTensor::new("y", vec![2], TensorData::I32(vec![0, 0])).expect("shape"),
    );
    assert_eq!(
        run(&mut wrong),
        "output `y`: expected f32[B, T, 2], found i32[2]"
    );
}

#[test]
fn an_index_out_of_range_is_an_error_naming_the_kernel() {
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path());
    let m = load(dir.path()).expect("loads");
    for bad in [4, -1] {
        let e = m
            .run(&inputs(2, vec![0, bad]), &DimValues::new())
            .unwrap_err();
        let s = e.to_string();
        assert!(s.contains("`take`") && s.contains("out of range"), "{s}");
    }
}

fn edit_manifest(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join(MANIFEST_FILE);
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).expect("read")).expect("json");
    f(&mut v);
    std::fs::write(&p, v.to_string()).expect("write");
}

#[test]
fn refuses_a_wrong_format_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path());
    edit_manifest(dir.path(), |v| v["format_version"] = 99.into());
    let e = err_text(load(dir.path()));
    assert!(
        e.contains("format version 99")
            && e.contains(&format!(
                "reads version {}",
                seqc_runtime::artifact::FORMAT_VERSION
            )),
        "{e}"
    );
}

#[test]
fn refuses_a_missing_library() {
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path());
    std::fs::remove_file(dir.path().join(LIBRARY_FILE)).expect("rm");
    let e = err_text(load(dir.path()));
    assert!(e.contains("cannot read the kernel library"), "{e}");
}

#[test]
fn refuses_a_missing_or_truncated_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path());
    let p = dir.path().join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&p).expect("read");
    std::fs::write(&p, &text[..text.len() / 2]).expect("truncate");
    let e = err_text(load(dir.path()));
    assert!(e.contains("not a valid manifest"), "{e}");
    std::fs::remove_file(&p).expect("rm");
    let e = err_text(load(dir.path()));
    assert!(e.contains("cannot read manifest.json"), "{e}");
}

#[test]
fn refuses_a_library_whose_hash_differs() {
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path());
    let p = dir.path().join(LIBRARY_FILE);
    let mut bytes = std::fs::read(&p).expect("read");
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&p, &bytes).expect("write");
    let e = err_text(load(dir.path()));
    assert!(
        e.contains("kernels.so has hash") && e.contains("the manifest expects"),
        "{e}"
    );
    // Truncated, too.
    std::fs::write(&p, &bytes[..n / 2]).expect("write");
    let e = err_text(load(dir.path()));
    assert!(e.contains(&format!("({} bytes)", n / 2)), "{e}");
}

#[test]
fn refuses_another_machine() {
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path());
    edit_manifest(dir.path(), |v| {
        v["cpu"]["target"]["triple"] = "aarch64-unknown-linux-gnu".into();
    });
    let e = err_text(load(dir.path()));
    assert!(e.contains("built for aarch64-unknown-linux-gnu"), "{e}");
    // A CPU feature this machine lacks (when there is a checkable one it lacks).
    let lacking = ["avx512fp16", "avx512f", "avx2", "avx", "fma"]
        .into_iter()
        .find(|f| seqc_runtime::model::features::host_has(f) == Some(false));
    if let Some(f) = lacking {
        build(dir.path());
        edit_manifest(dir.path(), |v| {
            v["cpu"]["target"]["features"]
                .as_array_mut()
                .expect("features")
                .push(f.into())
        });
        let e = err_text(load(dir.path()));
        assert!(e.contains(&format!("a CPU lacking {f}")), "{e}");
    }
}

#[test]
fn refuses_wrong_weights_naming_the_tensor() {
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path());
    let try_with = |f: &dyn Fn(&mut BTreeMap<String, HostTensor>)| {
        let mut w = weights();
        f(&mut w);
        err_text(Model::load(
            dir.path(),
            Weights::from_tensors(&w).expect("weights"),
        ))
    };
    let e = try_with(&|w| {
        w.remove("e");
    });
    assert!(e.contains("needs `e` (f32[4, 2])"), "{e}");
    let e = try_with(&|w| {
        w.insert("extra".into(), HostTensor::f32(vec![1], vec![0.0]));
    });
    assert!(e.contains("`extra` is not a parameter"), "{e}");
    let e = try_with(&|w| {
        w.insert("w".into(), HostTensor::f32(vec![3, 2], vec![0.0; 6]));
    });
    assert!(
        e.contains("weight `w`: expected f32[2, 3], found f32[3, 2]"),
        "{e}"
    );
    let e = try_with(&|w| {
        let t = HostTensor::new("w", vec![2, 3], TensorData::I32(vec![0; 6])).expect("t");
        w.insert("w".into(), t);
    });
    assert!(
        e.contains("weight `w`: expected f32[2, 3], found i32[2, 3]"),
        "{e}"
    );
}

#[test]
fn refuses_wrong_inputs_naming_the_tensor() {
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path());
    let m = load(dir.path()).expect("loads");
    let run =
        |i: &BTreeMap<String, HostTensor>| m.run(i, &DimValues::new()).unwrap_err().to_string();
    let mut i = inputs(2, vec![0, 1]);
    i.remove("x");
    assert!(run(&i).contains("input `x` (f32[B, T, 3]) was not given"));
    let mut i = inputs(2, vec![0, 1]);
    i.insert("z".into(), HostTensor::f32(vec![1], vec![0.0]));
    assert!(run(&i).contains("`z` is not an input"));
    // idx has T = 3 while x has T = 2.
    let mut i = inputs(2, vec![0, 1]);
    i.insert(
        "idx".into(),
        HostTensor::new("idx", vec![3], TensorData::I32(vec![0; 3])).expect("t"),
    );
    let e = run(&i);
    assert!(
        e.contains("input `idx`: expected i32[T] = i32[2], found i32[3]"),
        "{e}"
    );
    let mut i = inputs(2, vec![0, 1]);
    i.insert("x".into(), HostTensor::f32(vec![2, 3], vec![0.0; 6]));
    let e = run(&i);
    assert!(
        e.contains("input `x`: expected f32[B, T, 3], found f32[2, 3]"),
        "{e}"
    );
}
