//! End-to-end tests of the `seqc` binary: every command on the shipped specs, and every
//! bad-input path of `seqc run` giving a clear error (naming the tensor or dim, what was
//! expected and what was found) with exit status 1 and no panic.

use seqc_runtime::{HostTensor, TensorData, io};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn seqc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seqc"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("seqc runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("seqc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Runs and expects failure with exit status 1, stderr containing every `needle`.
fn fails_with(args: &[&str], needles: &[&str]) {
    let o = seqc(args);
    let (out, err) = text(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{args:?} should fail\nstdout: {out}\nstderr: {err}"
    );
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: stderr lacks `{n}`:\n{err}");
    }
}

const LA: &str = "ir-specs/linear_attention.seq";

#[test]
fn check_accepts_every_spec() {
    for e in std::fs::read_dir(root().join("ir-specs")).unwrap() {
        let p = e.unwrap().path();
        let o = seqc(&["check", p.to_str().unwrap()]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{}: {err}", p.display());
        assert!(out.starts_with("ok: "), "{out}");
    }
}

#[test]
fn check_rejects_with_diagnostics() {
    fails_with(
        &["check", "tests/errors/broadcast_mismatch.seq"],
        &[
            "tests/errors/broadcast_mismatch.seq:5:12",
            "do not broadcast",
        ],
    );
    fails_with(
        &["check", "no/such/file.seq"],
        &["cannot read `no/such/file.seq`"],
    );
}

#[test]
fn dump_prints_canonical_text() {
    let g = seqc::frontend::load_file(&root().join(LA)).unwrap();
    let o = seqc(&["dump", LA, "--stage", "ir"]);
    assert!(o.status.success());
    assert_eq!(text(&o).0, seqc::ir::print::print_graph(&g));
    let o = seqc(&["dump", LA, "--stage", "ast"]);
    assert!(o.status.success());
    let (ast, _) = text(&o);
    assert!(ast.contains("dim B, T;"), "{ast}");
    fails_with(
        &["dump", "tests/errors/missing_rparen.seq", "--stage", "ast"],
        &["expected `)`"],
    );
}

#[test]
fn info_is_json_with_the_interface() {
    let o = seqc(&["info", "ir-specs/mamba.seq"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["dims"], serde_json::json!(["B", "T"]));
    assert_eq!(v["inputs"][0]["name"], "x");
    assert_eq!(v["inputs"][0]["shape"], serde_json::json!(["B", "T", "16"]));
    let params: Vec<&str> = v["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        params.contains(&"conv1d.weight") && params.contains(&"A_log"),
        "{params:?}"
    );
    assert_eq!(v["outputs"][0]["dtype"], "f32");
}

#[test]
fn run_fills_missing_tensors_and_says_so() {
    let out = tmp("filled.safetensors");
    let o = seqc(&[
        "run",
        LA,
        "--dims",
        "B=1,T=5",
        "--seed",
        "3",
        "-o",
        out.to_str().unwrap(),
    ]);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("filled") && err.contains("seed 3"), "{err}");
    assert!(stdout.starts_with("y: f32[1, 5, "), "{stdout}");
    let t = io::read_safetensors(&out).unwrap();
    assert_eq!(t["y"].shape[..2], [1, 5]);
    // Same seed, same values; another seed, other values.
    let again = tmp("filled2.safetensors");
    seqc(&[
        "run",
        LA,
        "--dims",
        "B=1,T=5",
        "--seed",
        "3",
        "-o",
        again.to_str().unwrap(),
    ]);
    assert_eq!(io::read_safetensors(&again).unwrap(), t);
    let other = tmp("filled3.safetensors");
    seqc(&[
        "run",
        LA,
        "--dims",
        "B=1,T=5",
        "--seed",
        "4",
        "-o",
        other.to_str().unwrap(),
    ]);
    assert_ne!(io::read_safetensors(&other).unwrap(), t);
}

#[test]
fn run_on_a_fixture_matches_the_reference() {
    let f = root().join("tests/fixtures");
    let out = tmp("mamba.safetensors");
    let o = seqc(&[
        "run",
        "ir-specs/mamba.seq",
        "--weights",
        f.join("mamba.weights.safetensors").to_str().unwrap(),
        "--inputs",
        f.join("mamba.inputs.safetensors").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let got = io::read_safetensors(&out).unwrap();
    let want = io::read_safetensors(&f.join("mamba.expected.safetensors")).unwrap();
    let (g, w) = (got["y"].to_f64_vec(), want["y"].to_f64_vec());
    let scale = w.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    let err = g
        .iter()
        .zip(&w)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(err <= 1e-4 * scale, "max error {err}");
}

fn write(name: &str, tensors: &[(&str, HostTensor)]) -> PathBuf {
    let p = tmp(name);
    let map: BTreeMap<String, HostTensor> = tensors
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    io::write_safetensors(&p, &map).unwrap();
    p
}

fn f32s(shape: &[usize]) -> HostTensor {
    HostTensor::f32(shape.to_vec(), vec![0.5; shape.iter().product()])
}

#[test]
fn run_rejects_bad_inputs_clearly() {
    // Wrong shape: x is [B, T, 64].
    let p = write("bad_shape.safetensors", &[("x", f32s(&[1, 5, 31]))]);
    fails_with(
        &["run", LA, "--inputs", p.to_str().unwrap()],
        &["`x`", "32", "31"],
    );
    // Wrong dtype.
    let p = write(
        "bad_dtype.safetensors",
        &[(
            "x",
            HostTensor {
                shape: vec![1, 5, 64],
                data: TensorData::I32(vec![0; 320]),
            },
        )],
    );
    fails_with(
        &["run", LA, "--inputs", p.to_str().unwrap()],
        &["`x`", "f32", "i32"],
    );
    // Unknown tensor name.
    let p = write(
        "unknown.safetensors",
        &[("x", f32s(&[1, 5, 32])), ("xx", f32s(&[2]))],
    );
    fails_with(&["run", LA, "--inputs", p.to_str().unwrap()], &["`xx`"]);
    // A dim inconsistent with --dims.
    let p = write("dims.safetensors", &[("x", f32s(&[1, 5, 32]))]);
    fails_with(
        &["run", LA, "--inputs", p.to_str().unwrap(), "--dims", "T=6"],
        &["T", "6", "5"],
    );
    // Unbound dims.
    fails_with(&["run", LA], &["B"]);
    // A dim the spec does not declare, and malformed --dims.
    fails_with(&["run", LA, "--dims", "B=1,T=4,Q=2"], &["Q"]);
    fails_with(&["run", LA, "--dims", "B=1,T=four"], &["four"]);
    fails_with(&["run", LA, "--dims", "B=1,T=-3"], &["T"]);
    // Not a safetensors file.
    let p = tmp("garbage.safetensors");
    std::fs::write(&p, b"\x05\x00\x00\x00\x00\x00\x00\x00garbage").unwrap();
    fails_with(
        &["run", LA, "--weights", p.to_str().unwrap()],
        &["garbage.safetensors", "safetensors"],
    );
    fails_with(
        &["run", LA, "--weights", "missing.safetensors"],
        &["missing.safetensors"],
    );
}

#[test]
fn hf_longformer_takes_attention_window_as_a_list_or_one_int() {
    // `LongformerConfig` accepts one int for every layer as well as a per-layer list: both
    // give the same graph; an odd window or a list of the wrong length is refused by name.
    let dump = |cfg: &str| {
        let p = tmp(&format!("aw-{}.json", cfg.len()));
        std::fs::write(&p, cfg).unwrap();
        let o = seqc(&[
            "dump",
            "ir-specs/hf_longformer.seq",
            "--stage",
            "ir",
            "--config",
            p.to_str().unwrap(),
        ]);
        let (out, err) = text(&o);
        (o.status.code(), out, err)
    };
    let (c1, list, e1) = dump(r#"{"attention_window": [6, 6]}"#);
    let (c2, int, e2) = dump(r#"{"attention_window": 6}"#);
    assert_eq!((c1, c2), (Some(0), Some(0)), "{e1}\n{e2}");
    assert_eq!(list, int);
    let (_, default, _) = dump(r#"{"attention_window": [4, 4]}"#);
    assert_ne!(list, default, "the window must reach the graph");
    let (c, _, e) = dump(r#"{"attention_window": 5}"#);
    assert_eq!(c, Some(1));
    assert!(e.contains("attention_window entries must be even"), "{e}");
    let (c, _, e) = dump(r#"{"attention_window": [4]}"#);
    assert_eq!(c, Some(1));
    assert!(e.contains("must have num_hidden_layers entries"), "{e}");
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    // `seqc info X | head -0`: the reader is gone before anything is written. The write
    // fails with a broken pipe, which must not panic.
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let o = Command::new(env!("CARGO_BIN_EXE_seqc"))
        .args(["info", "ir-specs/hf_llama.seq"])
        .current_dir(root())
        .stdout(writer)
        .output()
        .expect("seqc runs");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(0), "{err}");
}

#[test]
fn hf_reformer_reads_its_axial_position_shapes_from_the_config() {
    let info = |cfg: &str| {
        let p = tmp(&format!("axial-{}.json", cfg.len()));
        std::fs::write(&p, cfg).unwrap();
        let o = seqc(&[
            "info",
            "ir-specs/hf_reformer.seq",
            "--config",
            p.to_str().unwrap(),
        ]);
        let (out, err) = text(&o);
        (o.status.code(), out, err)
    };
    let (code, out, err) =
        info(r#"{"hidden_size": 16, "axial_pos_shape": [8, 4], "axial_pos_embds_dim": [6, 10]}"#);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let shape = |name: &str| -> Vec<String> {
        let p = v["params"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no param {name}"));
        serde_json::from_value(p["shape"].clone()).unwrap()
    };
    assert_eq!(
        shape("embeddings.position_embeddings.weights.0"),
        ["8", "1", "6"]
    );
    assert_eq!(
        shape("embeddings.position_embeddings.weights.1"),
        ["1", "4", "10"]
    );
    let (code, _, err) = info(r#"{"hidden_size": 16, "axial_pos_embds_dim": [6, 6]}"#);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("axial_pos_embds_dim must sum to hidden_size"),
        "{err}"
    );
}

#[test]
fn hf_reformer_draws_its_rotations_from_hash_seed_and_refuses_a_config_without_one() {
    let info = |name: &str, cfg: &str| {
        let p = tmp(name);
        std::fs::write(&p, cfg).unwrap();
        let o = seqc(&[
            "info",
            "ir-specs/hf_reformer.seq",
            "--config",
            p.to_str().unwrap(),
        ]);
        let (out, err) = text(&o);
        (o.status.code(), out, err)
    };
    // No rotations input any more: only the ids and the mask.
    let (code, out, err) = info(
        "seed-set.json",
        r#"{"model_type": "reformer", "hash_seed": 7}"#,
    );
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let inputs: Vec<&str> = v["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(inputs, ["input_ids", "attention_mask"]);
    for cfg in [
        r#"{"model_type": "reformer", "hash_seed": null}"#,
        r#"{"model_type": "reformer"}"#,
    ] {
        let (code, _, err) = info("seed-unset.json", cfg);
        assert_eq!(code, Some(1), "{cfg}");
        assert!(
            err.contains("the config must set hash_seed to a non-negative integer"),
            "{cfg}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn cost_targets_are_named_and_apply_to_the_optimizer_only() {
    let spec = root().join("ir-specs/mamba.seq");
    let spec = spec.to_str().unwrap();
    fails_with(
        &["dump", spec, "--stage", "ir", "--target", "h100"],
        &["--target", "--stage opt"],
    );
    // An unknown target is a usage error (clap's exit status 2) naming the choices.
    let o = seqc(&["stats", spec, "--stage", "opt", "--target", "tpu"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    for n in ["'tpu'", "--target", "cpu, h100"] {
        assert!(err.contains(n), "stderr lacks `{n}`:\n{err}");
    }
}

#[test]
fn run_saves_the_weights_and_inputs_it_used() {
    let (w, i) = (tmp("saved.w.safetensors"), tmp("saved.i.safetensors"));
    let (o1, o2, o3) = (
        tmp("saved.o1.safetensors"),
        tmp("saved.o2.safetensors"),
        tmp("saved.o3.safetensors"),
    );
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    let dims = "B=2,T=5";
    let o = seqc(&[
        "run",
        LA,
        "--dims",
        dims,
        "--seed",
        "5",
        "--save-weights",
        &s(&w),
        "--save-inputs",
        &s(&i),
        "-o",
        &s(&o1),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    // The files hold exactly the spec's params and inputs.
    let info: serde_json::Value =
        serde_json::from_slice(&seqc(&["info", LA]).stdout).expect("info is JSON");
    let names = |k: &str| -> Vec<String> {
        let mut v: Vec<String> = info[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["name"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let keys = |p: &Path| -> Vec<String> { io::read_safetensors(p).unwrap().into_keys().collect() };
    assert_eq!(keys(&w), names("params"));
    assert_eq!(keys(&i), names("inputs"));
    // Given back under another seed they reproduce the first run's outputs exactly; that
    // seed alone gives other outputs.
    let o = seqc(&[
        "run",
        LA,
        "--dims",
        dims,
        "--seed",
        "99",
        "--weights",
        &s(&w),
        "--inputs",
        &s(&i),
        "-o",
        &s(&o2),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = seqc(&["run", LA, "--dims", dims, "--seed", "99", "-o", &s(&o3)]);
    assert!(o.status.success(), "{:?}", text(&o));
    let read = |p: &Path| io::read_safetensors(p).unwrap();
    assert_eq!(read(&o1), read(&o2));
    assert_ne!(read(&o1), read(&o3));
    fails_with(
        &[
            "run",
            LA,
            "--dims",
            dims,
            "--save-inputs",
            "/nonexistent-seqc-dir/i.safetensors",
        ],
        &["saving the inputs to /nonexistent-seqc-dir/i.safetensors"],
    );
}
