//! The C API's functions called directly (as C would): hand-checked results, the model's
//! queries, outputs reused across calls, several threads on one model, and every refusal — wrong path, corrupt manifest,
//! missing weight, invalid weights file, null pointers, non-UTF-8 strings, unknown codes,
//! indices out of range, wrong input name, dtype, shape or byte length, a kernel failure —
//! each with its status and a message naming the thing.

// unsafe: these tests are the C side of the API: raw pointers in, raw pointers out.
#![allow(unsafe_code)]

use seqc::codegen::artifact::write_artifact;
use seqc::frontend;
use seqc_capi::*;
use seqc_runtime::artifact::MANIFEST_FILE;
use seqc_runtime::{DimValues, HostTensor, Model, TensorData, Weights};
use std::collections::BTreeMap;
use std::ffi::{CStr, CString, c_char};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::{null, null_mut};

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

fn weights(with_e: bool) -> BTreeMap<String, HostTensor> {
    let mut w = BTreeMap::new();
    w.insert(
        "w".to_string(),
        HostTensor::f32(vec![2, 3], vec![1.0, 2.0, 3.0, 0.0, -1.0, 0.5]),
    );
    if with_e {
        w.insert(
            "e".to_string(),
            HostTensor::f32(vec![4, 2], (0..8).map(|v| v as f32).collect()),
        );
    }
    w
}

/// An artifact of SPEC and a weights file (without `e` unless `with_e`).
fn build(dir: &Path, with_e: bool) -> (CString, CString) {
    let g = frontend::load_str("t.seq", SPEC).expect("spec loads");
    write_artifact(&g, "hash", dir, false).expect("compiles");
    let wfile = dir.join("w.safetensors");
    seqc_runtime::io::write_safetensors(&wfile, &weights(with_e)).expect("write");
    (path(dir), path(&wfile))
}

fn path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL")
}

fn last() -> String {
    // SAFETY: never null, NUL-terminated.
    unsafe { CStr::from_ptr(seqc_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn text(p: *const c_char) -> String {
    assert!(!p.is_null());
    // SAFETY: a string the library returned, owned by a live object.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Asserts `status` and that the message holds every one of `parts`.
fn fails(status: SeqcStatus, want: SeqcStatus, parts: &[&str]) {
    let m = last();
    assert_eq!(status, want, "{m}");
    for p in parts {
        assert!(m.contains(p), "`{p}` not in: {m}");
    }
}

fn load(dir: &CString, w: &CString) -> *mut SeqcModel {
    let mut m = null_mut();
    // SAFETY: valid strings and out-pointer.
    let s = unsafe { seqc_model_load(dir.as_ptr(), w.as_ptr(), 2, &mut m) };
    assert_eq!(s, SeqcStatus::Ok, "{}", last());
    m
}

/// An input owned on the Rust side, viewed as a `SeqcInput`.
struct In {
    name: CString,
    dtype: u32,
    shape: Vec<i64>,
    data: Vec<u8>,
}

impl In {
    fn f32(name: &str, shape: &[i64], v: &[f32]) -> In {
        In {
            name: CString::new(name).expect("name"),
            dtype: SeqcDtype::F32 as u32,
            shape: shape.to_vec(),
            data: v.iter().flat_map(|x| x.to_ne_bytes()).collect(),
        }
    }

    fn i32(name: &str, v: &[i32]) -> In {
        In {
            name: CString::new(name).expect("name"),
            dtype: SeqcDtype::I32 as u32,
            shape: vec![v.len() as i64],
            data: v.iter().flat_map(|x| x.to_ne_bytes()).collect(),
        }
    }

    fn view(&self) -> SeqcInput {
        SeqcInput {
            name: self.name.as_ptr(),
            dtype: self.dtype,
            shape: self.shape.as_ptr(),
            rank: self.shape.len(),
            data: self.data.as_ptr().cast(),
            data_bytes: self.data.len(),
        }
    }
}

/// x = 0, 1, 2, … over [1, t, 3]; idx as given.
fn inputs(t: usize, idx: &[i32]) -> Vec<In> {
    let x: Vec<f32> = (0..3 * t).map(|v| v as f32).collect();
    vec![In::f32("x", &[1, t as i64, 3], &x), In::i32("idx", idx)]
}

fn run(m: *const SeqcModel, ins: &[In]) -> (SeqcStatus, *mut SeqcOutputs) {
    let views: Vec<SeqcInput> = ins.iter().map(In::view).collect();
    let mut out = null_mut();
    // SAFETY: views point into `ins`, alive for the call.
    let s = unsafe { seqc_model_run(m, views.as_ptr(), views.len(), null(), 0, &mut out) };
    (s, out)
}

/// Output `name` as (shape, f32 values).
fn output(o: *const SeqcOutputs, name: &str) -> (Vec<i64>, Vec<f32>) {
    let mut v = std::mem::MaybeUninit::<SeqcTensorView>::uninit();
    let n = CString::new(name).expect("name");
    // SAFETY: live outputs, valid string and out-pointer.
    let s = unsafe { seqc_outputs_find(o, n.as_ptr(), v.as_mut_ptr()) };
    assert_eq!(s, SeqcStatus::Ok, "{}", last());
    // SAFETY: written on success.
    let v = unsafe { v.assume_init() };
    assert_eq!(v.dtype, SeqcDtype::F32);
    assert_eq!(text(v.name), name);
    // SAFETY: the view's arrays live as long as `o`.
    unsafe {
        let shape = std::slice::from_raw_parts(v.shape, v.rank).to_vec();
        let data = std::slice::from_raw_parts(v.data.cast::<f32>(), v.data_bytes / 4).to_vec();
        (shape, data)
    }
}

#[test]
fn runs_with_hand_checked_values_and_answers_queries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, w) = build(dir.path(), true);
    let m = load(&d, &w);
    let (s, o) = run(m, &inputs(2, &[3, 0]));
    assert_eq!(s, SeqcStatus::Ok, "{}", last());
    assert_eq!(last(), "");
    // x rows [0,1,2] and [3,4,5]; w rows [1,2,3] and [0,-1,0.5].
    assert_eq!(output(o, "y"), (vec![1, 2, 2], vec![9.0, 1.0, 27.0, -0.5]));
    assert_eq!(output(o, "rows"), (vec![2, 2], vec![6.0, 7.0, 0.0, 1.0]));
    let mut count = 0;
    // SAFETY (this block): live objects, valid out-pointers.
    unsafe {
        assert_eq!(seqc_outputs_count(o, &mut count), SeqcStatus::Ok);
        assert_eq!(count, 2);
        let mut v = std::mem::zeroed::<SeqcTensorView>();
        assert_eq!(seqc_outputs_get(o, 0, &mut v), SeqcStatus::Ok);
        assert_eq!(text(v.name), "y", "outputs in the model's order");
        fails(
            seqc_outputs_get(o, 2, &mut v),
            SeqcStatus::OutOfRange,
            &["seqc_outputs_get", "below 2", "found 2"],
        );
        assert!(v.name.is_null() && v.data.is_null());
        let nope = CString::new("nope").expect("name");
        fails(
            seqc_outputs_find(o, nope.as_ptr(), &mut v),
            SeqcStatus::NotFound,
            &["`nope`", "its outputs: y, rows"],
        );
        seqc_outputs_free(o);

        for (kind, n) in [
            (SeqcKind::Input, 2),
            (SeqcKind::Param, 2),
            (SeqcKind::Output, 2),
        ] {
            assert_eq!(seqc_model_count(m, kind as u32, &mut count), SeqcStatus::Ok);
            assert_eq!(count, n, "{kind:?}");
        }
        let mut info = std::mem::zeroed::<SeqcTensorInfo>();
        assert_eq!(
            seqc_model_tensor(m, SeqcKind::Input as u32, 0, &mut info),
            SeqcStatus::Ok
        );
        let shape: Vec<String> = std::slice::from_raw_parts(info.shape, info.rank)
            .iter()
            .map(|p| text(*p))
            .collect();
        assert_eq!((text(info.name), info.dtype), ("x".into(), SeqcDtype::F32));
        assert_eq!(shape, ["B", "T", "3"]);
        assert_eq!(
            seqc_model_tensor(m, SeqcKind::Input as u32, 1, &mut info),
            SeqcStatus::Ok
        );
        assert_eq!(
            (text(info.name), info.dtype),
            ("idx".into(), SeqcDtype::I32)
        );
        fails(
            seqc_model_tensor(m, SeqcKind::Param as u32, 2, &mut info),
            SeqcStatus::OutOfRange,
            &["seqc_model_tensor", "2 param tensors", "found 2"],
        );
        assert!(info.name.is_null());
        fails(
            seqc_model_count(m, 7, &mut count),
            SeqcStatus::InvalidArgument,
            &["`kind`", "found 7"],
        );
        assert_eq!(seqc_model_dim_count(m, &mut count), SeqcStatus::Ok);
        assert_eq!(count, 2);
        let mut name = null();
        assert_eq!(seqc_model_dim_name(m, 1, &mut name), SeqcStatus::Ok);
        assert_eq!(text(name), "T");
        fails(
            seqc_model_dim_name(m, 2, &mut name),
            SeqcStatus::OutOfRange,
            &["2 dims"],
        );
        seqc_model_free(m);
    }
}

/// `seqc_model_run_into` on `o`.
fn run_into(m: *const SeqcModel, ins: &[In], o: *mut SeqcOutputs) -> SeqcStatus {
    let views: Vec<SeqcInput> = ins.iter().map(In::view).collect();
    // SAFETY: views point into `ins`, alive for the call; `o` is null or live.
    unsafe { seqc_model_run_into(m, views.as_ptr(), views.len(), null(), 0, o) }
}

/// The data pointer of output `name`.
fn data_ptr(o: *const SeqcOutputs, name: &str) -> *const std::ffi::c_void {
    let mut v = std::mem::MaybeUninit::<SeqcTensorView>::uninit();
    let n = CString::new(name).expect("name");
    // SAFETY: live outputs, valid string and out-pointer; written on success.
    unsafe {
        assert_eq!(
            seqc_outputs_find(o, n.as_ptr(), v.as_mut_ptr()),
            SeqcStatus::Ok
        );
        v.assume_init().data
    }
}

#[test]
fn run_into_writes_the_next_call_into_the_same_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, w) = build(dir.path(), true);
    let m = load(&d, &w);
    let (s, o) = run(m, &inputs(3, &[0, 1, 2]));
    assert_eq!(s, SeqcStatus::Ok, "{}", last());
    // Shrink to T = 2: the hand-checked values of the first test, in the same memory.
    let before = data_ptr(o, "y");
    assert_eq!(
        run_into(m, &inputs(2, &[3, 0]), o),
        SeqcStatus::Ok,
        "{}",
        last()
    );
    assert_eq!(output(o, "y"), (vec![1, 2, 2], vec![9.0, 1.0, 27.0, -0.5]));
    assert_eq!(output(o, "rows"), (vec![2, 2], vec![6.0, 7.0, 0.0, 1.0]));
    assert_eq!(data_ptr(o, "y"), before, "the output was reallocated");
    // Grow to T = 5: the values of a fresh run.
    let ins = inputs(5, &[1, 2, 3, 0, 1]);
    assert_eq!(run_into(m, &ins, o), SeqcStatus::Ok, "{}", last());
    let (s, fresh) = run(m, &ins);
    assert_eq!(s, SeqcStatus::Ok, "{}", last());
    for name in ["y", "rows"] {
        assert_eq!(output(o, name), output(fresh, name), "{name}");
    }
    // A failed call leaves the object whole: both outputs still there.
    fails(
        run_into(m, &inputs(2, &[0, 9]), o),
        SeqcStatus::Kernel,
        &["seqc_model_run_into", "out of range"],
    );
    let mut count = 0;
    // SAFETY (this block): live objects, valid out-pointers; each freed once.
    unsafe {
        assert_eq!(seqc_outputs_count(o, &mut count), SeqcStatus::Ok);
        assert_eq!(count, 2);
        fails(
            run_into(m, &ins, null_mut()),
            SeqcStatus::NullArgument,
            &["seqc_model_run_into", "outputs"],
        );
        seqc_outputs_free(o);
        seqc_outputs_free(fresh);
        seqc_model_free(m);
    }
}

#[test]
fn load_refuses_a_wrong_path_a_corrupt_manifest_and_a_missing_weight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, w) = build(dir.path(), false);
    let try_load = |d: *const c_char, w: *const c_char| {
        let mut m = std::ptr::dangling_mut::<SeqcModel>();
        // SAFETY: strings null or valid; out-pointer valid.
        let s = unsafe { seqc_model_load(d, w, 0, &mut m) };
        assert!(m.is_null(), "*model is null after a failure");
        s
    };
    fails(
        try_load(d.as_ptr(), w.as_ptr()),
        SeqcStatus::Weights,
        &[
            "seqc_model_load",
            "`e`",
            "f32[4, 2]",
            "no weights file provides",
        ],
    );
    let nowhere = path(&dir.path().join("nowhere"));
    fails(
        try_load(nowhere.as_ptr(), w.as_ptr()),
        SeqcStatus::Io,
        &["nowhere", "manifest.json"],
    );
    fails(
        try_load(d.as_ptr(), nowhere.as_ptr()),
        SeqcStatus::Io,
        &["nowhere"],
    );
    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"not safetensors").expect("write");
    fails(
        try_load(d.as_ptr(), path(&garbage).as_ptr()),
        SeqcStatus::Weights,
        &["garbage.safetensors", "not a valid safetensors file"],
    );
    fails(
        try_load(null(), w.as_ptr()),
        SeqcStatus::NullArgument,
        &["`artifact_dir`", "found null"],
    );
    let bad = CString::new(vec![b'/', 0xff, b'x']).expect("no NUL");
    fails(
        try_load(bad.as_ptr(), w.as_ptr()),
        SeqcStatus::InvalidUtf8,
        &["`artifact_dir`", "UTF-8"],
    );
    // SAFETY: a null out-pointer is refused, not written.
    let s = unsafe { seqc_model_load(d.as_ptr(), w.as_ptr(), 0, null_mut()) };
    fails(s, SeqcStatus::NullArgument, &["`model`"]);
    std::fs::write(dir.path().join(MANIFEST_FILE), "{ \"format_version\": 1, ").expect("w");
    fails(
        try_load(d.as_ptr(), w.as_ptr()),
        SeqcStatus::Artifact,
        &["not a valid manifest"],
    );
    std::fs::write(dir.path().join(MANIFEST_FILE), "{\"format_version\": 7}").expect("w");
    fails(
        try_load(d.as_ptr(), w.as_ptr()),
        SeqcStatus::Artifact,
        &["format version 7", "reads version 2"],
    );
}

#[test]
fn run_refuses_wrong_inputs_and_reports_a_kernel_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, w) = build(dir.path(), true);
    let m = load(&d, &w);
    let check = |ins: Vec<In>, want: SeqcStatus, parts: &[&str]| {
        let (s, o) = run(m, &ins);
        assert!(o.is_null(), "*outputs is null after a failure");
        fails(s, want, &[&["seqc_model_run"], parts].concat());
    };
    let x = |shape: &[i64]| {
        let n = shape.iter().product::<i64>() as usize;
        In::f32("x", shape, &vec![0.5; n])
    };
    check(
        vec![x(&[1, 2, 4]), In::i32("idx", &[0, 1])],
        SeqcStatus::Input,
        &["input `x`", "expected f32[B, T, 3]", "found f32[1, 2, 4]"],
    );
    check(
        vec![x(&[1, 3, 3]), In::i32("idx", &[0, 1])],
        SeqcStatus::Input,
        &["`idx`", "i32[2]"],
    );
    let mut short = x(&[1, 2, 3]);
    short.data.pop();
    check(
        vec![short, In::i32("idx", &[0, 1])],
        SeqcStatus::Input,
        &["input `x`", "needs 24 bytes", "found `data_bytes` = 23"],
    );
    let mut code = x(&[1, 2, 3]);
    code.dtype = 9;
    check(
        vec![code, In::i32("idx", &[0, 1])],
        SeqcStatus::InvalidArgument,
        &["input `x`", "SeqcDtype", "found 9"],
    );
    let mut as_int = x(&[1, 2, 3]);
    as_int.dtype = SeqcDtype::I32 as u32;
    check(
        vec![as_int, In::i32("idx", &[0, 1])],
        SeqcStatus::Input,
        &["input `x`", "expected f32[B, T, 3]", "found i32[1, 2, 3]"],
    );
    check(
        vec![x(&[1, 2, 3]), In::i32("idz", &[0, 1])],
        SeqcStatus::Input,
        &["`idz` is not an input", "x, idx"],
    );
    check(
        vec![x(&[1, 2, 3])],
        SeqcStatus::Input,
        &["input `idx`", "was not given"],
    );
    check(
        vec![x(&[1, 2, 3]), x(&[1, 2, 3])],
        SeqcStatus::Input,
        &["input `x`", "given twice"],
    );
    check(
        vec![
            In::f32("x", &[1, -2, 3], &[0.5; 6]),
            In::i32("idx", &[0, 1]),
        ],
        SeqcStatus::InvalidArgument,
        &["input `x`", "axis 1", "found -2"],
    );
    check(
        inputs(2, &[0, 4]),
        SeqcStatus::Kernel,
        &["`take`", "out of range"],
    );
    // Dims given beside the shapes: agreeing, unknown, twice.
    let ins = inputs(2, &[0, 1]);
    let views: Vec<SeqcInput> = ins.iter().map(In::view).collect();
    let dims = |names: &[(&CString, i64)]| -> Vec<SeqcDim> {
        names
            .iter()
            .map(|(n, v)| SeqcDim {
                name: n.as_ptr(),
                value: *v,
            })
            .collect()
    };
    let (t, q) = (CString::new("T").expect("T"), CString::new("Q").expect("Q"));
    for (given, want, parts) in [
        (vec![(&t, 2)], SeqcStatus::Ok, &[][..]),
        (
            vec![(&q, 2)],
            SeqcStatus::Input,
            &["dim `Q`", "no such dim"][..],
        ),
        (
            vec![(&t, 2), (&t, 2)],
            SeqcStatus::Input,
            &["dim `T`", "given twice"][..],
        ),
        (
            vec![(&t, 3)],
            SeqcStatus::Input,
            &["f32[1, 3, 3]", "found f32[1, 2, 3]"][..],
        ),
    ] {
        let d = dims(&given);
        let mut out = null_mut();
        // SAFETY: every pointer points into live vectors.
        let s = unsafe { seqc_model_run(m, views.as_ptr(), 2, d.as_ptr(), d.len(), &mut out) };
        fails(s, want, parts);
        // SAFETY: null or from seqc_model_run.
        unsafe { seqc_outputs_free(out) };
    }
    // Null pointers: the model, the input array, an input's data.
    let ins = inputs(2, &[0, 1]);
    let mut views: Vec<SeqcInput> = ins.iter().map(In::view).collect();
    let mut out = null_mut();
    // SAFETY (this block): nulls are refused before any dereference; the rest is valid.
    unsafe {
        let s = seqc_model_run(null(), views.as_ptr(), 2, null(), 0, &mut out);
        fails(s, SeqcStatus::NullArgument, &["`model`"]);
        let s = seqc_model_run(m, null(), 2, null(), 0, &mut out);
        fails(s, SeqcStatus::NullArgument, &["`inputs`", "2 elements"]);
        views[0].data = null();
        let s = seqc_model_run(m, views.as_ptr(), 2, null(), 0, &mut out);
        fails(s, SeqcStatus::NullArgument, &["input `x`: `data`"]);
        let s = seqc_model_run(m, views.as_ptr(), 2, null(), 0, null_mut());
        fails(s, SeqcStatus::NullArgument, &["`outputs`"]);
        let mut n = 0;
        fails(
            seqc_outputs_count(null(), &mut n),
            SeqcStatus::NullArgument,
            &["`outputs`"],
        );
        fails(
            seqc_model_count(null(), 0, &mut n),
            SeqcStatus::NullArgument,
            &["`model`"],
        );
        seqc_outputs_free(null_mut());
        seqc_model_free(null_mut());
        seqc_model_free(m);
    }
}

/// Shares the model pointer with threads (the API documents that this is allowed).
#[derive(Clone, Copy)]
struct Shared(*const SeqcModel);
// SAFETY: a SeqcModel is immutable after loading and its Rust model is Send + Sync.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

#[test]
fn one_model_serves_several_threads_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, w) = build(dir.path(), true);
    let m = Shared(load(&d, &w));
    let rust = Model::load(
        dir.path(),
        Weights::from_tensors(&weights(true)).expect("w"),
    )
    .expect("loads");
    let expect = |t: usize| {
        let mut ins = BTreeMap::new();
        ins.insert(
            "x".to_string(),
            HostTensor::f32(vec![1, t, 3], (0..3 * t).map(|v| v as f32).collect()),
        );
        ins.insert(
            "idx".to_string(),
            HostTensor::new("idx", vec![t], TensorData::I32(vec![1; t])).expect("shape"),
        );
        let o = rust.run(&ins, &DimValues::new()).expect("runs");
        match &o["y"].data {
            TensorData::F32(v) => v.clone(),
            d => panic!("y is {:?}", d.dtype()),
        }
    };
    std::thread::scope(|s| {
        let hs: Vec<_> = (1..=8)
            .map(|t| {
                s.spawn(move || {
                    let m = m;
                    let (st, o) = run(m.0, &inputs(t, &vec![1; t]));
                    assert_eq!(st, SeqcStatus::Ok, "{}", last());
                    let y = output(o, "y").1;
                    // SAFETY: from seqc_model_run, freed once.
                    unsafe { seqc_outputs_free(o) };
                    y
                })
            })
            .collect();
        for (t, h) in (1..=8).zip(hs) {
            assert_eq!(h.join().expect("thread"), expect(t), "T = {t}");
        }
    });
    // SAFETY: no thread uses it any more.
    unsafe { seqc_model_free(m.0.cast_mut()) };
}
