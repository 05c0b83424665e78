//! The GPU backend without a GPU, and with one when present.
//!
//! - The GPU runs the CPU's program with its block statements expanded into scalar loop
//!   nests (`kernel::expand`); that expanded program is compiled for the CPU and checked
//!   against the interpreter for every spec (optimised as `seqc compile` does, costed for
//!   the CPU and for the H100) at B = 2 and T ∈ {1, 7, 13}: the GPU's semantics, checked
//!   where it can be run.
//! - Every spec's PTX, for sm_80 and sm_90, is assembled by `ptxas` (from the PyPI package
//!   `nvidia-cuda-nvcc-cu12`, which `cargo xtask test` installs and names in `SEQC_PTXAS`),
//!   and no kernel may spill registers. Without ptxas the test fails under CI and is skipped
//!   (saying so) elsewhere.
//! - Where a CUDA driver and device are present, every spec's `cpu,ptx` artifact also runs on
//!   `cuda:0` and must match the interpreter; elsewhere that test says it is skipped.

mod support;

use seqc::codegen::artifact::{Targets, write_program};
use seqc::ir::Graph;
use seqc::{frontend, opt};
use seqc_runtime::model::{Device, Options};
use seqc_runtime::{Model, Weights};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{cases, check_outputs, specs};

const TS: [i64; 3] = [1, 7, 13];
const TOL: f64 = 1e-4;
const SHARDS: usize = 3;

fn name(path: &Path) -> String {
    path.file_stem()
        .expect("name")
        .to_string_lossy()
        .into_owned()
}

/// The spec optimised as the compile path does: costed for the CPU (`--target cpu,ptx`) and,
/// when that gives another graph, for the H100 (`--target ptx`), labelled.
fn optimised(path: &Path) -> Vec<(&'static str, Graph)> {
    let g = frontend::load_file(path).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    let mut out: Vec<(&'static str, Graph)> = Vec::new();
    for (label, target) in [("cpu", opt::Target::cpu()), ("h100", opt::Target::h100())] {
        let opts = opt::OptOptions {
            target,
            avoid_ops: seqc::kernel::UNSUPPORTED_OPT_OPS.to_vec(),
            ..Default::default()
        };
        let o = opt::optimize(&g, &opts).expect("optimizer").0;
        let text = seqc::ir::print::print_graph(&o);
        if out
            .iter()
            .all(|(_, x)| seqc::ir::print::print_graph(x) != text)
        {
            out.push((label, o));
        }
    }
    out
}

/// Runs the artifact in `dir` (loaded with `opts`) against the interpreter at each T; the
/// number of outputs compared.
fn compare(spec: &str, g: &Graph, dir: &Path, opts: &Options) -> Result<usize, String> {
    let mut model: Option<Model> = None;
    let mut compared = 0;
    for c in cases(g, &TS)? {
        if model.is_none() {
            let w = Weights::from_tensors(&c.params).map_err(|e| e.to_string())?;
            model = Some(Model::load_with(dir, w, opts).map_err(|e| format!("{spec}: load: {e}"))?);
        }
        let got = model
            .as_ref()
            .expect("loaded")
            .run(&c.inputs, &c.bound)
            .map_err(|e| format!("{spec} T={}: run: {e}", c.t))?;
        compared += check_outputs(&format!("{spec} T={}", c.t), &got, &c.want, TOL)?;
    }
    Ok(compared)
}

fn expanded_shard(shard: usize) {
    let mut failures = Vec::new();
    for (i, path) in specs().into_iter().enumerate() {
        if i % SHARDS != shard {
            continue;
        }
        for (label, g) in optimised(&path) {
            let spec = format!("{} (costed for {label})", name(&path));
            let p = seqc::kernel::lower(&g).expect("lowers");
            let expanded = seqc::kernel::expand::expand_blocks(&p);
            let dir = tempfile::tempdir().expect("tempdir");
            let targets = Targets {
                cpu: Some(seqc::codegen::cpu::host_target()),
                gpu: Vec::new(),
            };
            if let Err(e) = write_program(&g, &expanded, "test", dir.path(), false, &targets) {
                failures.push(format!("{spec}: compile: {e}"));
                continue;
            }
            match compare(&spec, &g, dir.path(), &Options::default()) {
                Ok(0) => failures.push(format!("{spec}: no T ran on the interpreter")),
                Ok(_) => {}
                Err(e) => failures.push(e),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn expanded_programs_match_the_interpreter_0() {
    expanded_shard(0);
}

#[test]
fn expanded_programs_match_the_interpreter_1() {
    expanded_shard(1);
}

#[test]
fn expanded_programs_match_the_interpreter_2() {
    expanded_shard(2);
}

/// `SEQC_PTXAS`, else `ptxas` on the PATH.
fn ptxas() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SEQC_PTXAS") {
        return Some(PathBuf::from(p));
    }
    let ok = Command::new("ptxas").arg("--version").output();
    ok.is_ok_and(|o| o.status.success())
        .then(|| PathBuf::from("ptxas"))
}

/// The kernels whose ptxas report shows spills, as `kernel: report line`.
fn spills(report: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in report.lines() {
        if let Some(rest) = line.split("Function properties for ").nth(1) {
            current = rest.trim().to_string();
        }
        if line.contains("spill stores")
            && !line.contains(" 0 bytes spill stores, 0 bytes spill loads")
        {
            out.push(format!("{current}: {}", line.trim()));
        }
    }
    out
}

fn ptxas_shard(shard: usize) {
    let Some(ptxas) = ptxas() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "ptxas not found: `cargo xtask test` installs it (PyPI nvidia-cuda-nvcc-cu12) and \
             sets SEQC_PTXAS"
        );
        eprintln!("skipped: no ptxas (set SEQC_PTXAS, or run `cargo xtask test`)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    let mut checked = 0;
    for (i, path) in specs().into_iter().enumerate() {
        if i % SHARDS != shard {
            continue;
        }
        for (label, g) in optimised(&path) {
            let spec = format!("{} (costed for {label})", name(&path));
            let p = seqc::kernel::lower(&g).expect("lowers");
            for arch in seqc::codegen::ptx::ARCHS {
                let text = match seqc::codegen::ptx::ptx(&p, arch) {
                    Ok(t) => t,
                    Err(e) => {
                        failures.push(format!("{spec} {arch}: {e}"));
                        continue;
                    }
                };
                let file = dir
                    .path()
                    .join(format!("{}_{label}.{arch}.ptx", name(&path)));
                std::fs::write(&file, text).expect("write");
                let out = Command::new(&ptxas)
                    .args(["-v", "-arch", arch, "-o"])
                    .arg(dir.path().join("out.cubin"))
                    .arg(&file)
                    .output()
                    .unwrap_or_else(|e| panic!("running {}: {e}", ptxas.display()));
                let report = String::from_utf8_lossy(&out.stderr).into_owned();
                if !out.status.success() {
                    failures.push(format!("{spec} {arch}: ptxas refused it:\n{report}"));
                    continue;
                }
                let kernels = report.matches("Compiling entry function").count();
                if kernels != p.kernels.len() {
                    failures.push(format!(
                        "{spec} {arch}: ptxas compiled {kernels} entries, the program has {}",
                        p.kernels.len()
                    ));
                }
                failures.extend(
                    spills(&report)
                        .into_iter()
                        .map(|s| format!("{spec} {arch}: {s}")),
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "no spec in shard {shard}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn ptx_assembles_for_sm_80_and_sm_90_without_spills_0() {
    ptxas_shard(0);
}

#[test]
fn ptx_assembles_for_sm_80_and_sm_90_without_spills_1() {
    ptxas_shard(1);
}

#[test]
fn ptx_assembles_for_sm_80_and_sm_90_without_spills_2() {
    ptxas_shard(2);
}

#[test]
fn the_spill_check_reads_ptxas_reports() {
    let report = "ptxas info    : Function properties for k3_einsum\n    \
                  0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
                  ptxas info    : Function properties for k4_attention\n    \
                  16 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads\n";
    assert_eq!(
        spills(report),
        vec!["k4_attention: 16 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads"]
    );
}

/// Every spec on `cuda:0` where a GPU is present.
#[test]
fn specs_match_the_interpreter_on_a_gpu() {
    if !seqc_runtime::model::cuda_driver_present() {
        eprintln!("skipped: no CUDA driver (or a runtime without the `cuda` feature)");
        return;
    }
    let opts = Options {
        device: Device::Cuda(0),
        ..Options::default()
    };
    let mut failures = Vec::new();
    for path in specs() {
        let spec = name(&path);
        // As `--target ptx` compiles: costed for the H100 (the last graph listed).
        let (_, g) = optimised(&path).pop().expect("a graph");
        let dir = tempfile::tempdir().expect("tempdir");
        let targets = Targets {
            cpu: None,
            gpu: seqc::codegen::ptx::ARCHS
                .iter()
                .map(|a| a.to_string())
                .collect(),
        };
        let p = seqc::kernel::lower(&g).expect("lowers");
        if let Err(e) = write_program(&g, &p, "test", dir.path(), false, &targets) {
            failures.push(format!("{spec}: compile: {e}"));
            continue;
        }
        match compare(&spec, &g, dir.path(), &opts) {
            Err(e) if e.contains("no such device") => {
                eprintln!("skipped: {e}");
                return;
            }
            Err(e) => failures.push(e),
            Ok(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
