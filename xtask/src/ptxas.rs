//! ptxas for the GPU backend's tests, which assemble every spec's PTX without a GPU: taken
//! from the PyPI wheel `nvidia-cuda-nvcc-cu12` installed into a virtual environment under
//! `target/` (Python's venv first installed with apt-get where it is missing).

use super::{apt_install, ok, run};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The wheel's version (ptxas 12.9: PTX ISA 8.8, sm_80 to sm_120).
const WHEEL: &str = "nvidia-cuda-nvcc-cu12==12.9.86";

/// The path of a working ptxas: `SEQC_PTXAS` when set, else the venv's, installed if needed.
pub fn ensure(root: &Path) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("SEQC_PTXAS") {
        let p = PathBuf::from(p);
        if !works(&p) {
            bail!("SEQC_PTXAS={} does not run `ptxas --version`", p.display());
        }
        return Ok(p);
    }
    let venv = root.join("target/ptxas-venv");
    let python = venv.join("bin/python");
    if let Some(p) = find(&python).filter(|p| works(p)) {
        return Ok(p);
    }
    if !ok(Command::new("python3").args(["-m", "venv", "-h"])) {
        apt_install(&["python3", "python3-venv"])?;
    }
    eprintln!("xtask: installing ptxas ({WHEEL}) into {}", venv.display());
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        WHEEL,
    ]))?;
    let p = find(&python).context("the nvidia-cuda-nvcc-cu12 wheel has no bin/ptxas")?;
    if !works(&p) {
        bail!("{} does not run `ptxas --version`", p.display());
    }
    Ok(p)
}

/// The wheel's ptxas, if the package is installed in `python`'s environment.
fn find(python: &Path) -> Option<PathBuf> {
    let out = Command::new(python)
        .args([
            "-c",
            "import nvidia.cuda_nvcc as m; print(list(m.__path__)[0])",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8(out.stdout).ok()?;
    let p = PathBuf::from(dir.trim()).join("bin/ptxas");
    p.exists().then_some(p)
}

fn works(ptxas: &Path) -> bool {
    ok(Command::new(ptxas).arg("--version"))
}
