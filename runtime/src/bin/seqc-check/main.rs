//! `seqc-check`: the runtime-only checker of a GPU validation pack (`cargo xtask gpu-pack`).
//! It loads every case's artifact on a device (`cuda:0` by default, or `cpu`), runs it on the
//! case's weights and inputs, compares every output with the interpreter's expected outputs
//! (`seqc_runtime::compare`), prints one line per case and a summary, and writes the results as JSON.
//! Exit status: 0 when every case passes, 1 when one fails or errs, 2 when the pack, the
//! arguments or the device cannot be used at all.

mod pack;

use pack::Case;
use seqc_runtime::model::Device;
use seqc_runtime::{HostTensor, Model, ModelError, Options, Weights, io};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "usage: seqc-check PACK [--device cuda:N|cpu] [--only TEXT] [--results FILE]
  PACK       a directory written by `cargo xtask gpu-pack` (holding cases.json)
  --device   where the artifacts run (default cuda:0)
  --only     check only the cases whose spec name contains TEXT
  --results  where the JSON results go (default PACK/results.json)";

struct Args {
    pack: PathBuf,
    device: Device,
    only: Option<String>,
    results: Option<PathBuf>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut pack = None;
    let (mut device, mut only, mut results) = (Device::Cuda(0), None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("`{flag}` expects a value"))
        };
        match a.as_str() {
            "--device" => device = value(a)?.parse().map_err(|e| format!("{e}"))?,
            "--only" => only = Some(value(a)?),
            "--results" => results = Some(PathBuf::from(value(a)?)),
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option `{s}`")),
            s if pack.is_none() => pack = Some(PathBuf::from(s)),
            s => {
                return Err(format!(
                    "unexpected argument `{s}` (the pack is already given)"
                ));
            }
        }
    }
    Ok(Args {
        pack: pack.ok_or("missing the pack directory")?,
        device,
        only,
        results,
    })
}

/// How one case ended.
enum Verdict {
    Pass(f64),
    /// An output differs (its relative error, when it has one) or cannot be compared.
    Fail(Option<f64>, String),
    /// The artifact would not load or run.
    Error(String),
}

/// Whether a load error says the device itself is unusable (no driver, no such device, no
/// `cuda` feature), which no other case can get past either.
fn device_unusable(device: Device, e: &ModelError) -> bool {
    let ModelError::Device { reason, .. } = e else {
        return false;
    };
    matches!(device, Device::Cuda(_))
        && (!seqc_runtime::model::cuda_driver_present()
            || reason.contains("no such device")
            || reason.contains("`cuda` feature")
            || reason.contains("the CUDA driver fails"))
}

fn read(pack: &Path, rel: &str, what: &str) -> Result<BTreeMap<String, HostTensor>, String> {
    let p = pack.join(rel);
    io::read_safetensors(&p).map_err(|e| format!("{what} {}: {e}", p.display()))
}

/// Runs one case on a loaded model and compares its outputs.
fn check(pack: &Path, model: &Model, case: &Case, tol: f64) -> Verdict {
    let (inputs, want) = match (
        read(pack, &case.inputs, "inputs"),
        read(pack, &case.expected, "expected outputs"),
    ) {
        (Ok(i), Ok(w)) => (i, w),
        (Err(e), _) | (_, Err(e)) => return Verdict::Error(e),
    };
    let got = match model.run(&inputs, &case.dims) {
        Ok(g) => g,
        Err(e) => return Verdict::Error(format!("run: {e}")),
    };
    let mut worst: (f64, Option<&str>) = (0.0, None);
    for (name, w) in &want {
        let Some(g) = got.get(name) else {
            return Verdict::Fail(None, format!("output `{name}` is missing"));
        };
        match seqc_runtime::compare::rel_err(name, g, w) {
            Ok(e) if e > worst.0 || worst.1.is_none() => worst = (e, Some(name)),
            Ok(_) => {}
            Err(msg) => return Verdict::Fail(None, msg),
        }
    }
    match worst {
        (e, Some(name)) if e > tol => Verdict::Fail(
            Some(e),
            format!(
                "output `{name}` differs from the interpreter by {e:.3e} (tolerance {tol:.0e})"
            ),
        ),
        (e, _) => Verdict::Pass(e),
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("seqc-check: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("seqc-check: {e}");
            ExitCode::from(2)
        }
    }
}

/// Checks every selected case; `Ok(true)` when all pass.
fn run(args: &Args) -> Result<bool, String> {
    let index = pack::read(&args.pack)?;
    let cases: Vec<&Case> = index
        .cases
        .iter()
        .filter(|c| {
            args.only
                .as_ref()
                .is_none_or(|o| c.spec.contains(o.as_str()))
        })
        .collect();
    if cases.is_empty() {
        return Err(format!(
            "no case to check in {} (filter: {})",
            args.pack.display(),
            args.only.as_deref().unwrap_or("none")
        ));
    }
    let opts = Options {
        device: args.device,
        ..Options::default()
    };
    println!("seqc-check: {} case(s) on {}", cases.len(), args.device);
    let mut results = Vec::new();
    let (mut pass, mut fail, mut error) = (0usize, 0usize, 0usize);
    // The model of the last artifact loaded, reused by its following cases.
    let mut loaded: Option<((String, String), Result<Model, String>)> = None;
    for case in cases {
        let key = (case.artifact.clone(), case.weights.clone());
        if loaded.as_ref().is_none_or(|(k, _)| *k != key) {
            let wpath = args.pack.join(&case.weights);
            let model = Weights::open(&[&wpath])
                .and_then(|w| Model::load_with(&args.pack.join(&case.artifact), w, &opts));
            if let Err(e) = &model
                && device_unusable(args.device, e)
            {
                return Err(format!("cannot run on {}: {e}", args.device));
            }
            loaded = Some((key, model.map_err(|e| format!("load: {e}"))));
        }
        let verdict = match &loaded.as_ref().expect("loaded above").1 {
            Ok(m) => check(&args.pack, m, case, index.tolerance),
            Err(e) => Verdict::Error(e.clone()),
        };
        let (status, err, msg) = match &verdict {
            Verdict::Pass(e) => {
                pass += 1;
                ("pass", Some(*e), String::new())
            }
            Verdict::Fail(e, m) => {
                fail += 1;
                ("FAIL", *e, m.clone())
            }
            Verdict::Error(m) => {
                error += 1;
                ("error", None, m.clone())
            }
        };
        let err_text = err.map_or("-".to_string(), |e| format!("{e:.2e}"));
        println!(
            "{status:<5} {:<28} {:<10} max rel err {err_text:<8} {msg}",
            case.spec,
            case.dims_text()
        );
        results.push(serde_json::json!({
            "spec": case.spec,
            "dims": case.dims,
            "status": status.to_lowercase(),
            "max_rel_err": err,
            "message": msg,
        }));
    }
    let total = pass + fail + error;
    println!(
        "seqc-check: {total} case(s) on {}: {pass} pass, {fail} FAIL, {error} error",
        args.device
    );
    let out = args
        .results
        .clone()
        .unwrap_or_else(|| args.pack.join("results.json"));
    let json = serde_json::json!({
        "device": args.device.to_string(),
        "tolerance": index.tolerance,
        "summary": { "cases": total, "pass": pass, "fail": fail, "error": error },
        "cases": results,
    });
    let text = serde_json::to_string_pretty(&json).expect("JSON of plain values");
    std::fs::write(&out, text + "\n")
        .map_err(|e| format!("cannot write the results to {}: {e}", out.display()))?;
    println!("seqc-check: results in {}", out.display());
    Ok(fail + error == 0)
}

#[cfg(test)]
mod tests {
    use super::parse_args;
    use seqc_runtime::model::Device;

    fn args(v: &[&str]) -> Result<super::Args, String> {
        parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn the_device_defaults_to_the_first_gpu() {
        let a = args(&["p"]).unwrap();
        assert_eq!(a.device, Device::Cuda(0));
        assert_eq!(args(&["p", "--device", "cpu"]).unwrap().device, Device::Cpu);
    }

    #[test]
    fn bad_arguments_are_named() {
        let e = args(&["p", "--device", "gpu"]).err().unwrap();
        assert!(e.contains("device `gpu`"), "{e}");
        assert!(
            args(&["p", "--only"])
                .err()
                .unwrap()
                .contains("`--only` expects")
        );
        assert!(args(&[]).err().unwrap().contains("missing the pack"));
        assert!(
            args(&["p", "--fast"])
                .err()
                .unwrap()
                .contains("unknown option `--fast`")
        );
        assert!(
            args(&["p", "q"])
                .err()
                .unwrap()
                .contains("unexpected argument `q`")
        );
    }
}
