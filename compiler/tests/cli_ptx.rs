//! End-to-end tests of the GPU backend's commands: `seqc compile --target ptx` and
//! `--target cpu,ptx` (the files, the manifest's GPU section, what loads where), `seqc dump
//! --stage ptx`, and the errors for unknown architectures, a tampered PTX module and an
//! inconsistent GPU section.

use seqc_runtime::artifact::{MANIFEST_FILE, Manifest};
use seqc_runtime::model::{Device, Options};
use seqc_runtime::{Model, Weights};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn seqc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seqc"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("seqc runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn compile(spec: &str, target: &str, out: &Path) -> Manifest {
    let o = seqc(&[
        "compile",
        spec,
        "--target",
        target,
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    Manifest::read(out).expect("manifest reads back")
}

#[test]
fn ptx_target_writes_one_module_per_architecture_and_launches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("la");
    let m = compile("ir-specs/linear_attention.seq", "ptx", &out);
    assert!(m.cpu.is_none(), "no CPU code asked for");
    assert!(!out.join("kernels.so").exists());
    let gpu = m.gpu.as_ref().expect("GPU code");
    let archs: Vec<&str> = gpu.modules.iter().map(|x| x.arch.as_str()).collect();
    assert_eq!(archs, ["sm_80", "sm_90"]);
    for arch in archs {
        let text = m.checked_ptx(&out, arch).expect("hash matches");
        assert!(text.contains(&format!(".target {arch}")), "{arch}");
        for k in &m.kernels {
            assert!(
                text.contains(&format!(".visible .entry {}(", k.symbol)),
                "{arch}: no entry {}",
                k.symbol
            );
        }
    }
    assert_eq!(gpu.launches.len(), m.kernels.len());
    let dims = [("B".to_string(), 2), ("T".to_string(), 1000)]
        .into_iter()
        .collect();
    for (l, k) in gpu.launches.iter().zip(&m.kernels) {
        assert_eq!(l.symbol, k.symbol);
        let extent = k.extent.eval(&dims).expect("evaluates");
        let blocks = l.grid[0].eval(&dims).expect("evaluates");
        if k.parallel {
            // Enough threads for every iteration, and no whole block idle.
            let threads = blocks * i64::from(l.block[0]);
            assert!(threads >= extent && threads - extent < i64::from(l.block[0]));
        } else {
            assert_eq!((blocks, l.block), (1, [1, 1, 1]));
        }
    }
    // On the CPU a GPU-only artifact is refused, saying how to recompile.
    let e = Model::load(&out, Weights::default())
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("no CPU code") && e.contains("--target cpu"),
        "{e}"
    );
}

#[test]
fn cpu_and_ptx_artifact_runs_on_the_cpu() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("sa");
    let m = compile("ir-specs/softmax_attention.seq", "cpu,ptx", &out);
    assert!(m.cpu.is_some() && m.gpu.is_some());
    // The runtime loads the CPU part (the GPU part is checked only on a GPU).
    let g =
        seqc::frontend::load_file(&root().join("ir-specs/softmax_attention.seq")).expect("spec");
    let mut tensors = std::collections::BTreeMap::new();
    let given = [("B".to_string(), 1), ("T".to_string(), 5)]
        .into_iter()
        .collect();
    let bound = seqc::bind::bind_dims(&g, &given, &tensors).expect("binds");
    seqc::bind::fill_missing(&g, &bound, &mut tensors, 1).expect("fills");
    let params = g
        .params()
        .map(|(n, _)| (n.to_string(), tensors[n].clone()))
        .collect();
    let model = Model::load_with(
        &out,
        Weights::from_tensors(&params).expect("weights"),
        &Options {
            device: Device::Cpu,
            ..Options::default()
        },
    )
    .expect("loads on the CPU");
    let inputs = g
        .inputs()
        .map(|(n, _)| (n.to_string(), tensors[n].clone()))
        .collect();
    let got = model.run(&inputs, &bound).expect("runs");
    let want = seqc::interp::run(&g, &bound, &tensors).expect("interpreter");
    for (name, w) in &want {
        let (a, b) = (got[name].to_f64_vec(), w.to_f64_vec());
        let err = a
            .iter()
            .zip(&b)
            .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
        assert!(err < 1e-4, "{name}: {err}");
    }
}

#[test]
fn unknown_architectures_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("x");
    let o = seqc(&[
        "compile",
        "ir-specs/linear_attention.seq",
        "--target",
        "ptx",
        "--gpu-arch",
        "sm_80,sm_75",
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(e.contains("`sm_75`") && e.contains("sm_80, sm_90"), "{e}");
    let o = seqc(&[
        "dump",
        "ir-specs/linear_attention.seq",
        "--stage",
        "ptx",
        "--arch",
        "sm_7",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("`sm_7`"), "{}", stderr(&o));
}

#[test]
fn dump_stage_ptx_prints_the_module_for_the_architecture() {
    let o = seqc(&[
        "dump",
        "ir-specs/mamba.seq",
        "--stage",
        "ptx",
        "--arch",
        "sm_80",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(".target sm_80") && text.contains(".entry"),
        "{text}"
    );
    // No libm on a GPU: no external function is called.
    assert!(!text.contains(".extern"), "{text}");
}

#[test]
fn a_tampered_ptx_module_or_gpu_section_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("la");
    let m = compile("ir-specs/linear_attention.seq", "ptx", &out);
    let ptx = out.join("kernels.sm_90.ptx");
    let mut text = std::fs::read_to_string(&ptx).expect("read");
    text.push_str("// tampered\n");
    std::fs::write(&ptx, text).expect("write");
    let e = m
        .checked_ptx(&out, "sm_90")
        .expect_err("hash differs")
        .to_string();
    assert!(e.contains("kernels.sm_90.ptx") && e.contains("hash"), "{e}");
    let e = m
        .checked_ptx(&out, "sm_70")
        .expect_err("no such module")
        .to_string();
    assert!(e.contains("no PTX for sm_70"), "{e}");
    let edit = |f: &dyn Fn(&mut serde_json::Value)| -> String {
        let p = out.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&p).expect("read");
        let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
        f(&mut v);
        std::fs::write(&p, v.to_string()).expect("write");
        let e = Manifest::read(&out).expect_err("inconsistent").to_string();
        std::fs::write(&p, text).expect("restore");
        e
    };
    let e = edit(&|v| {
        v["gpu"]["launches"].as_array_mut().expect("launches").pop();
    });
    assert!(e.contains("GPU launches for"), "{e}");
    let e = edit(&|v| v["gpu"]["launches"][0]["block"] = serde_json::json!([2048, 1, 1]));
    assert!(e.contains("1 to 1024 threads"), "{e}");
    let e = edit(&|v| v["gpu"]["launches"][0]["symbol"] = "k99_other".into());
    assert!(e.contains("k99_other"), "{e}");
    let e = edit(&|v| v["gpu"]["modules"][0]["file"]["file"] = "../evil.ptx".into());
    assert!(e.contains("not a plain file name"), "{e}");
}
