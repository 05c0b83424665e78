//! xtask: project automation, in Rust. `cargo xtask demo` runs the main job end to end;
//! `cargo xtask test` runs every check CI runs. Both install what is missing and say so.
//! `cargo xtask header` regenerates the C API's header (`header.rs`); `cargo xtask bench`
//! runs issue #5's benchmarks against their Python baselines (`bench.rs`); `cargo xtask
//! gpu-pack` builds the pack that validates every spec on a GPU machine (`gpu.rs`).

mod bench;
mod gpu;
mod header;
mod ptxas;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

const USAGE: &str = "usage: cargo xtask <demo|test|setup|ptxas|header|bench|gpu-pack>
  demo   build seqc, then check, inspect and run the shipped specs on their reference fixtures
         (a few also on the CPU backend), and compile one into an artifact
  test   fmt --check, clippy -D warnings, and every test (CI runs this)
  setup  install what is missing (rustfmt, clippy, LLVM 19 dev packages, a C compiler) and
         nothing else
  ptxas  install ptxas (PyPI nvidia-cuda-nvcc-cu12, in target/ptxas-venv) if missing and print
         its path (`test` does this and passes it to the tests as SEQC_PTXAS)
  header regenerate runtime/include/seqc.h (the C API) from runtime/capi/src with cbindgen
  bench  issue #5's CPU benchmarks against numpy/PyTorch/HF side by side, as a Markdown table
         [--quick] [--rounds R] [--threads N] [--python PY] [--only TEXT]
  gpu-pack  build a directory (< 64 MiB) that checks every spec on an NVIDIA GPU against the
         interpreter, on a machine without Rust or network: `bash DIR/run.sh` there
         [--out DIR (default target/gpu-pack)] [--only TEXT]";

/// Debian packages the compiler links (LLVM 19 for the CPU and GPU backends), and the C
/// compiler that links kernels and builds the C API's example in the tests.
const APT_PACKAGES: &[&str] = &[
    "gcc",
    "libc6-dev",
    "llvm-19-dev",
    "libpolly-19-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "libxml2-dev",
    "libz3-dev",
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("demo") => {
            setup()?;
            demo(&root)
        }
        Some("test") => {
            setup()?;
            test()
        }
        Some("setup") => setup(),
        Some("ptxas") => {
            println!("{}", ptxas::ensure(&root)?.display());
            Ok(())
        }
        Some("header") => header::write(&root),
        Some("bench") => {
            setup()?;
            bench::bench(&root, &args[1..])
        }
        Some("gpu-pack") => gpu::gpu_pack(&root, &args[1..]),
        _ => {
            eprintln!("{USAGE}");
            bail!("unknown or missing xtask command")
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {}", show(cmd));
    let st = cmd
        .status()
        .with_context(|| format!("cannot start `{}`", show(cmd)))?;
    if !st.success() {
        bail!("`{}` failed ({st})", show(cmd));
    }
    Ok(())
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs quietly; on failure prints what the command printed.
fn run_quiet(cmd: &mut Command) -> Result<()> {
    let o = cmd
        .output()
        .with_context(|| format!("cannot start `{}`", show(cmd)))?;
    if !o.status.success() {
        eprintln!("$ {}", show(cmd));
        eprint!("{}", String::from_utf8_lossy(&o.stdout));
        eprint!("{}", String::from_utf8_lossy(&o.stderr));
        bail!("`{}` failed ({})", show(cmd), o.status);
    }
    Ok(())
}

fn ok(cmd: &mut Command) -> bool {
    cmd.output().map(|o| o.status.success()).unwrap_or(false)
}

/// Installs what is missing, saying what it installs.
fn setup() -> Result<()> {
    for comp in ["rustfmt", "clippy"] {
        let probe = if comp == "rustfmt" { "fmt" } else { "clippy" };
        if !ok(Command::new("cargo").args([probe, "--version"])) {
            eprintln!("xtask: installing the rustup component `{comp}`");
            run(Command::new("rustup").args(["component", "add", comp]))?;
        }
    }
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !ok(Command::new("dpkg").args(["-s", p])))
        .collect();
    apt_install(&missing)
}

/// Installs Debian packages with apt-get (through sudo when not root), saying what it
/// installs; a warning and nothing else where there is no apt-get.
fn apt_install(missing: &[&str]) -> Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    if !ok(Command::new("apt-get").arg("--version")) {
        eprintln!(
            "xtask: warning: apt-get not found; install these yourself: {}",
            missing.join(" ")
        );
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    let is_root = ok(Command::new("sh").args(["-c", "[ \"$(id -u)\" = 0 ]"]));
    let mut prefix: Vec<&str> = Vec::new();
    if !is_root {
        prefix.push("sudo");
    }
    let mut update = Command::new(if is_root { "apt-get" } else { "sudo" });
    update.args(prefix.iter().skip(1)).args(if is_root {
        vec!["update", "-qq"]
    } else {
        vec!["apt-get", "update", "-qq"]
    });
    run(&mut update)?;
    let mut install = Command::new(if is_root { "apt-get" } else { "sudo" });
    if !is_root {
        install.arg("apt-get");
    }
    install
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    run(&mut install)
}

fn test() -> Result<()> {
    run(Command::new("cargo").args(["fmt", "--all", "--", "--check"]))?;
    run(Command::new("cargo").args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--quiet",
        "--",
        "-D",
        "warnings",
    ]))?;
    let ptxas = ptxas::ensure(&root())?;
    run(Command::new("cargo")
        .args(["test", "--workspace", "--quiet"])
        .env("CI", "true")
        .env("INSTA_UPDATE", "no")
        .env("SEQC_PTXAS", ptxas))?;
    eprintln!("xtask: all checks passed");
    Ok(())
}

/// Specs whose fixtures the demo also runs on the CPU backend.
const CPU_DEMO_SPECS: [&str; 3] = ["linear_attention", "softmax_attention", "mamba"];

fn demo(root: &Path) -> Result<()> {
    run(Command::new("cargo").args(["build", "--release", "--quiet", "--bin", "seqc"]))?;
    let seqc = root.join("target/release/seqc");
    let spec = "ir-specs/linear_attention.seq";
    eprintln!("\n== 1. check a spec (type and shape checked, diagnostics on error)");
    run(Command::new(&seqc).args(["check", spec]))?;
    eprintln!("\n== 2. its interface");
    run(Command::new(&seqc).args(["info", spec]))?;
    eprintln!("\n== 3. run it on the interpreter with random weights and inputs");
    run(Command::new(&seqc).args(["run", spec, "--dims", "B=1,T=16"]))?;
    eprintln!("\n== 4. run every shipped spec on its reference fixture and compare");
    let fixtures = root.join("tests/fixtures");
    let mut names: Vec<String> = std::fs::read_dir(&fixtures)
        .with_context(|| format!("reading {}", fixtures.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".json").map(str::to_string)
        })
        .collect();
    names.sort();
    let out_dir = std::env::temp_dir().join("seqc-demo");
    std::fs::create_dir_all(&out_dir)?;
    for name in names {
        let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
            fixtures.join(format!("{name}.json")),
        )?)?;
        let spec_name = meta["spec"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| name.split('.').next().unwrap_or(&name).to_string());
        let dims = meta["dims"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let reference = meta["reference"].as_str().unwrap_or("?");
        let out = out_dir.join(format!("{name}.out.safetensors"));
        let mut cmd = Command::new(&seqc);
        cmd.arg("run");
        if let Some(cfg) = meta.get("config") {
            // A whole-model fixture: its HF config.json, written out as HF writes it.
            let path = out_dir.join(format!("{name}.config.json"));
            std::fs::write(&path, serde_json::to_string_pretty(cfg)?)?;
            cmd.arg("--config").arg(path);
        }
        let cpu_cmd = (CPU_DEMO_SPECS.contains(&spec_name.as_str())).then(|| {
            let mut c = Command::new(&seqc);
            for a in cmd.get_args() {
                c.arg(a);
            }
            c.args(["--backend", "cpu"]);
            c
        });
        let fixture_args = |cmd: &mut Command, out: &Path| {
            cmd.args([
                &format!("ir-specs/{spec_name}.seq"),
                "--dims",
                &dims,
                "--weights",
                &fixtures
                    .join(format!("{name}.weights.safetensors"))
                    .to_string_lossy(),
                "--inputs",
                &fixtures
                    .join(format!("{name}.inputs.safetensors"))
                    .to_string_lossy(),
                "-o",
                &out.to_string_lossy(),
            ]);
        };
        fixture_args(&mut cmd, &out);
        run_quiet(&mut cmd)?;
        let err = compare(&out, &fixtures.join(format!("{name}.expected.safetensors")))?;
        let verdict = if err <= 1e-4 { "ok" } else { "MISMATCH" };
        eprintln!("{verdict}: {name}: max relative error {err:.2e} against {reference}");
        if err > 1e-4 {
            bail!("{name} does not match its reference");
        }
        if let Some(mut c) = cpu_cmd {
            let out = out_dir.join(format!("{name}.cpu.out.safetensors"));
            fixture_args(&mut c, &out);
            run_quiet(&mut c)?;
            let err = compare(&out, &fixtures.join(format!("{name}.expected.safetensors")))?;
            let verdict = if err <= 1e-4 { "ok" } else { "MISMATCH" };
            eprintln!("{verdict}: {name} on the CPU backend: max relative error {err:.2e}");
            if err > 1e-4 {
                bail!("{name} on the CPU backend does not match its reference");
            }
        }
    }
    eprintln!("\n== 5. compile a spec into an artifact for this CPU (manifest, .so, IR dumps)");
    let artifact = out_dir.join("linear_attention.seqc");
    run(Command::new(&seqc)
        .args(["compile", spec, "--dumps", "-o"])
        .arg(&artifact))?;
    run(Command::new(&seqc).args(["run", spec, "--dims", "B=1,T=16", "--backend", "cpu"]))?;
    eprintln!("\nxtask: demo finished");
    Ok(())
}

/// Max |got − want| / max(1, max |want|) over every output in `expected`.
fn compare(got: &Path, expected: &Path) -> Result<f64> {
    let got = seqc_runtime::io::read_safetensors(got)?;
    let want = seqc_runtime::io::read_safetensors(expected)?;
    let mut worst = 0.0f64;
    for (name, w) in &want {
        let g = got
            .get(name)
            .with_context(|| format!("output `{name}` is missing"))?;
        if g.shape != w.shape {
            bail!(
                "output `{name}`: shape {:?}, expected {:?}",
                g.shape,
                w.shape
            );
        }
        let (gv, wv) = (g.to_f64_vec(), w.to_f64_vec());
        let scale = wv.iter().fold(1.0f64, |m, x| m.max(x.abs()));
        let err = gv
            .iter()
            .zip(&wv)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        worst = worst.max(err / scale);
    }
    Ok(worst)
}
