//! The C API end to end: `seqc compile` writes an artifact, `cc` builds the C example
//! `runtime/examples/c/run_model.c` against `runtime/include/seqc.h` and the `seqc-capi`
//! shared library, and the program's printed outputs must match the interpreter's values on
//! the same weights and inputs within 1e-4. Its error path: a wrong artifact path and a
//! missing weight give the right status and a message naming the file or the weight.

use seqc::ir::DimBindings;
use seqc::{bind, frontend, interp};
use seqc_runtime::artifact::Manifest;
use seqc_runtime::{HostTensor, TensorData};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// The directory holding `libseqc_capi.so`: cargo builds it (a dev-dependency) into the
/// `deps` directory beside this test binary.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().expect("deps directory").to_path_buf();
    assert!(
        dir.join("libseqc_capi.so").is_file(),
        "libseqc_capi.so is not in {} (cargo builds it as a dev-dependency of seqc)",
        dir.display()
    );
    dir
}

/// Builds the C example into `out`; a missing C compiler is a failure that says so.
fn build_example(out: &Path) -> PathBuf {
    let probe = Command::new("cc").arg("--version").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "the C API tests need a C compiler, and `cc` was not found: install gcc \
         (`cargo xtask setup` does)"
    );
    let exe = out.join("run_model");
    let lib = lib_dir();
    let o = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I"])
        .arg(root().join("runtime/include"))
        .arg(root().join("runtime/examples/c/run_model.c"))
        .arg("-L")
        .arg(&lib)
        .arg("-lseqc_capi")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("cc runs");
    assert!(
        o.status.success(),
        "cc failed on run_model.c:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    exe
}

fn seqc_compile(spec: &Path, out: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_seqc"))
        .arg("compile")
        .arg(spec)
        .arg("-o")
        .arg(out)
        .output()
        .expect("seqc runs");
    assert!(
        o.status.success(),
        "seqc compile failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Input `j`'s element `k`, as run_model.c generates it.
fn c_input(sig_dtype: seqc_runtime::DType, shape: Vec<usize>, j: usize) -> HostTensor {
    let n: usize = shape.iter().product();
    let m = |k: usize| ((37 * k + 11 * j) % 101) as i64;
    let data = match sig_dtype {
        d if d.is_float() => {
            let v: Vec<f64> = (0..n).map(|k| (m(k) - 50) as f64 / 64.0).collect();
            return HostTensor::from_f64(d, shape, &v);
        }
        seqc_runtime::DType::I32 => TensorData::I32((0..n).map(|k| (m(k) % 3) as i32).collect()),
        seqc_runtime::DType::I64 => TensorData::I64((0..n).map(|k| m(k) % 3).collect()),
        _ => TensorData::Bool(vec![true; n]),
    };
    HostTensor::new("input", shape, data).expect("shape")
}

fn run(exe: &Path, args: &[&Path], dims: &[(&str, i64)]) -> Output {
    let mut c = Command::new(exe);
    c.args(args);
    for (d, v) in dims {
        c.arg(format!("{d}={v}"));
    }
    c.output().expect("run_model runs")
}

/// `NAME DTYPE [SHAPE]` lines, each followed by indented value lines.
fn parse(stdout: &str) -> Vec<(String, Vec<usize>, Vec<f64>)> {
    let mut out: Vec<(String, Vec<usize>, Vec<f64>)> = Vec::new();
    for line in stdout.lines() {
        if let Some(values) = line.strip_prefix("  ") {
            let last = out.last_mut().expect("values after a header");
            last.2.extend(
                values
                    .split(' ')
                    .map(|v| v.parse::<f64>().expect("a number")),
            );
        } else {
            let (name, rest) = line.split_once(' ').expect("NAME DTYPE [SHAPE]");
            let shape = rest
                .split_once('[')
                .and_then(|(_, s)| s.strip_suffix(']'))
                .expect("[SHAPE]");
            let shape = shape
                .split(", ")
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().expect("a size"))
                .collect();
            out.push((name.to_string(), shape, Vec::new()));
        }
    }
    out
}

/// Compiles `spec`, writes seeded weights, runs the C example at `dims` and compares every
/// printed output with the interpreter's.
fn check_spec(spec: &str, dims: &[(&str, i64)]) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let spec = root().join(spec);
    let artifact = tmp.path().join("model.seqc");
    seqc_compile(&spec, &artifact);
    let manifest = Manifest::read(&artifact).expect("manifest");
    let g = frontend::load_file(&spec).expect("spec loads");
    let given: DimBindings = dims.iter().map(|(d, v)| (d.to_string(), *v)).collect();
    let mut tensors = BTreeMap::new();
    let bound = bind::bind_dims(&g, &given, &tensors).expect("binds");
    for (j, sig) in manifest.inputs.iter().enumerate() {
        let shape = sig
            .shape
            .iter()
            .map(|d| d.eval(&bound).expect("bound") as usize)
            .collect();
        tensors.insert(sig.name.clone(), c_input(sig.dtype, shape, j));
    }
    bind::fill_missing(&g, &bound, &mut tensors, 11).expect("fills the weights");
    let weights: BTreeMap<String, HostTensor> = manifest
        .params
        .iter()
        .map(|p| (p.name.clone(), tensors[&p.name].clone()))
        .collect();
    let wfile = tmp.path().join("weights.safetensors");
    seqc_runtime::io::write_safetensors(&wfile, &weights).expect("writes weights");
    let want = interp::run(&g, &bound, &tensors).expect("interprets");

    let exe = build_example(tmp.path());
    let o = run(&exe, &[&artifact, &wfile], dims);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "run_model failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let got = parse(&stdout);
    let names: Vec<&str> = got.iter().map(|(n, ..)| n.as_str()).collect();
    let expected: Vec<&str> = manifest.outputs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, expected, "{stdout}");
    for (name, shape, values) in &got {
        let w = &want[name];
        assert_eq!(shape, &w.shape, "output `{name}`");
        let wv = w.to_f64_vec();
        assert_eq!(values.len(), wv.len(), "output `{name}`");
        let scale = wv.iter().fold(1.0f64, |m, x| m.max(x.abs()));
        let err = values
            .iter()
            .zip(&wv)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err / scale <= 1e-4,
            "output `{name}`: max relative error {:.2e} against the interpreter",
            err / scale
        );
        assert!(wv.iter().any(|x| *x != 0.0), "output `{name}` is all zeros");
    }
}

#[test]
fn the_c_example_prints_what_the_interpreter_computes() {
    check_spec("ir-specs/linear_attention.seq", &[("B", 2), ("T", 5)]);
    check_spec("ir-specs/mamba.seq", &[("B", 1), ("T", 6)]);
}

#[test]
fn the_c_example_reports_a_wrong_path_and_a_missing_weight() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let artifact = tmp.path().join("la.seqc");
    seqc_compile(&root().join("ir-specs/linear_attention.seq"), &artifact);
    let exe = build_example(tmp.path());
    let manifest = Manifest::read(&artifact).expect("manifest");
    // Every weight but the first, so the first is missing.
    let weights: BTreeMap<String, HostTensor> = manifest.params[1..]
        .iter()
        .map(|p| {
            let shape: Vec<usize> = p
                .shape
                .iter()
                .map(|d| d.eval(&Default::default()).expect("const") as usize)
                .collect();
            let n = shape.iter().product();
            (p.name.clone(), HostTensor::f32(shape, vec![0.5; n]))
        })
        .collect();
    let wfile = tmp.path().join("w.safetensors");
    seqc_runtime::io::write_safetensors(&wfile, &weights).expect("writes");

    let nowhere = tmp.path().join("no-such.seqc");
    let o = run(&exe, &[&nowhere, &wfile], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: SEQC_STATUS_IO: seqc_model_load:")
            && err.contains("no-such.seqc")
            && err.contains("manifest.json"),
        "{err}"
    );

    let o = run(&exe, &[&artifact, &wfile], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    let missing = &manifest.params[0].name;
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: SEQC_STATUS_WEIGHTS:")
            && err.contains(&format!("`{missing}`"))
            && err.contains("f32[32, 32]"),
        "{err}"
    );
}
