//! `cargo xtask gpu-pack` and its checker `seqc-check`, end to end without a GPU: a pack of
//! the three linear-attention specs is built (twice, byte for byte the same), checked on the
//! artifacts' CPU code (every case passes), checked again with one expected output corrupted
//! (that case fails, naming the spec, dims and output), and on `cuda:0` (the runtime's clear
//! no-driver or no-device error, or a pass where a GPU is present). The checker's refusals of
//! a bad pack or bad arguments are checked too. The xtask binary and the checker are built by
//! a nested `cargo build` (this test's package has only `seqc` as a binary).

use seqc_runtime::{TensorData, io};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("seqc-gpu-pack-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Builds the xtask binary and the checker (debug) and returns their paths.
fn tools() -> (PathBuf, PathBuf) {
    let o = Command::new(env!("CARGO"))
        .args([
            "build",
            "-q",
            "-p",
            "xtask",
            "-p",
            "seqc-runtime",
            "--features",
            "seqc-runtime/cuda",
            "--bin",
            "xtask",
            "--bin",
            "seqc-check",
        ])
        .current_dir(root())
        .output()
        .expect("cargo runs");
    assert!(o.status.success(), "building the tools: {}", text(&o));
    let bin = root().join("target/debug");
    (bin.join("xtask"), bin.join("seqc-check"))
}

fn pack(xtask: &Path, checker: &Path, out: &Path) {
    let o = Command::new(xtask)
        .arg("gpu-pack")
        .args([
            "--only",
            "linear_attention",
            "--seqc",
            env!("CARGO_BIN_EXE_seqc"),
        ])
        .arg("--checker")
        .arg(checker)
        .arg("--out")
        .arg(out)
        .output()
        .expect("xtask runs");
    assert!(o.status.success(), "gpu-pack: {}", text(&o));
}

fn check(pack: &Path, args: &[&str]) -> Output {
    Command::new("bash")
        .arg(pack.join("run.sh"))
        .args(args)
        .output()
        .expect("bash runs")
}

/// Every file under `dir` (relative path, bytes), sorted.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_path_buf();
                v.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    v.sort();
    v
}

#[test]
fn a_pack_is_built_checked_on_the_cpu_and_catches_a_wrong_output() {
    let (xtask, checker) = tools();
    let (a, b) = (tmp("a"), tmp("b"));
    pack(&xtask, &checker, &a);
    pack(&xtask, &checker, &b);
    let (fa, fb) = (files(&a), files(&b));
    assert_eq!(
        fa.iter().map(|f| &f.0).collect::<Vec<_>>(),
        fb.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in fa.iter().zip(&fb) {
        assert!(
            x == y,
            "{} differs between two builds of the pack",
            name.display()
        );
    }
    let size: usize = fa.iter().map(|f| f.1.len()).sum();
    assert!(size < 64 << 20, "the pack is {size} bytes");

    // The index: three specs at B = 2 and T = 1, 13, 67, each case's files present.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("cases.json")).unwrap()).unwrap();
    let cases = index["cases"].as_array().unwrap();
    let mut seen: Vec<String> = cases
        .iter()
        .map(|c| format!("{} {}", c["spec"].as_str().unwrap(), c["dims"]))
        .collect();
    seen.sort();
    let mut want = Vec::new();
    for s in [
        "linear_attention",
        "linear_attention_bidir",
        "linear_attention_recurrent",
    ] {
        for t in [1, 13, 67] {
            want.push(format!("{s} {{\"B\":2,\"T\":{t}}}"));
        }
    }
    want.sort();
    assert_eq!(seen, want);
    for c in cases {
        for k in ["weights", "inputs", "expected"] {
            assert!(a.join(c[k].as_str().unwrap()).is_file(), "{c}: {k}");
        }
        assert!(
            a.join(c["artifact"].as_str().unwrap())
                .join("kernels.sm_80.ptx")
                .is_file()
        );
    }

    // On this CPU, every case passes; the results file says so.
    let results = a.join("cpu-results.json");
    let o = check(
        &a,
        &["--device", "cpu", "--results", results.to_str().unwrap()],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("9 case(s) on cpu: 9 pass, 0 FAIL, 0 error"),
        "{out}"
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("pass ")).count(),
        9,
        "{out}"
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&results).unwrap()).unwrap();
    assert_eq!(r["summary"]["pass"], 9);
    assert_eq!(r["device"], "cpu");

    // One expected element off by 1 % of the output's scale: that case, and only it, fails.
    let case = cases
        .iter()
        .find(|c| c["spec"] == "linear_attention_bidir" && c["dims"]["T"] == 13)
        .unwrap();
    let path = a.join(case["expected"].as_str().unwrap());
    let mut expected = io::read_safetensors(&path).unwrap();
    let (name, t) = expected.iter_mut().next().unwrap();
    let name = name.clone();
    let TensorData::F32(v) = &mut t.data else {
        panic!("`{name}` is not f32")
    };
    let scale = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    v[3] += 0.01 * scale;
    io::write_safetensors(&path, &expected).unwrap();
    let o = check(&a, &["--device", "cpu"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL ")).collect();
    assert_eq!(fails.len(), 1, "{out}");
    for needle in [
        "linear_attention_bidir",
        "B=2,T=13",
        &format!("output `{name}`"),
    ] {
        assert!(fails[0].contains(needle), "`{needle}` not in: {}", fails[0]);
    }
    assert!(out.contains("8 pass, 1 FAIL, 0 error"), "{out}");

    // On cuda:0 (the default): the runtime's clear error where no GPU is usable, no panic.
    let o = check(&b, &["--only", "linear_attention_bidir"]);
    let out = text(&o);
    assert!(!out.contains("panicked"), "{out}");
    if o.status.code() != Some(0) {
        assert_eq!(o.status.code(), Some(2), "{out}");
        assert!(
            out.contains("cannot run on cuda:0: device `cuda:0`")
                && (out.contains("no CUDA driver found") || out.contains("no such device")),
            "{out}"
        );
    } else {
        assert!(out.contains("3 pass, 0 FAIL, 0 error"), "{out}");
    }
    std::fs::remove_dir_all(&a).unwrap();
    std::fs::remove_dir_all(&b).unwrap();
}

#[test]
fn the_checker_refuses_a_bad_pack_or_bad_arguments_clearly() {
    let (_, checker) = tools();
    let run = |args: &[&str]| {
        let o = Command::new(&checker).args(args).output().expect("runs");
        (o.status.code(), text(&o))
    };
    let d = tmp("bad");
    std::fs::create_dir_all(&d).unwrap();
    let ds = d.to_str().unwrap();
    let refused = |args: &[&str], needles: &[&str]| {
        let (code, out) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {out}");
        assert!(!out.contains("panicked"), "{out}");
        for n in needles {
            assert!(out.contains(n), "{args:?}: `{n}` not in {out}");
        }
    };
    refused(
        &[ds, "--device", "cpu"],
        &["cannot read the pack index", "cases.json"],
    );
    refused(&[ds, "--device", "tpu"], &["device `tpu`: expected `cpu`"]);
    refused(&[], &["missing the pack directory", "usage: seqc-check"]);
    let index = |s: &str| std::fs::write(d.join("cases.json"), s).unwrap();
    index(r#"{"format": 9, "tolerance": 1e-4, "cases": []}"#);
    refused(&[ds, "--device", "cpu"], &["format 9, expected 1"]);
    index(r#"{"format": 1, "tolerance": -1, "cases": []}"#);
    refused(&[ds, "--device", "cpu"], &["tolerance -1"]);
    index(r#"{"format": 1, "tolerance": 1e-4, "cases": [], "extra": 1}"#);
    refused(&[ds, "--device", "cpu"], &["unknown field `extra`"]);
    index(r#"{"format": 1, "tolerance": 1e-4, "cases": []}"#);
    refused(&[ds, "--device", "cpu"], &["no case to check"]);
    // A case whose files are missing is an error line naming the spec, not a stop.
    index(
        r#"{"format": 1, "tolerance": 1e-4, "cases": [{"spec": "ghost", "dims": {"T": 1}, "seed": 1,
        "artifact": "artifacts/ghost", "weights": "w.safetensors", "inputs": "i.safetensors",
        "expected": "e.safetensors"}]}"#,
    );
    let (code, out) = run(&[ds, "--device", "cpu"]);
    assert_eq!(code, Some(1), "{out}");
    let line = out.lines().find(|l| l.starts_with("error ")).expect(&out);
    assert!(
        line.contains("ghost") && line.contains("w.safetensors"),
        "{line}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}
