//! `cargo xtask gpu-pack`: builds, on this machine, everything the validation of every spec
//! on an NVIDIA GPU needs, for a GPU machine that has no Rust toolchain and no network: the
//! runtime-only checker `seqc-check` (release, the runtime's `cuda` feature, no LLVM), every
//! spec in `ir-specs/` compiled with `--target cpu,ptx`, seeded weights and inputs at a few
//! dims per spec with the interpreter's outputs on them, an index (`cases.json`) and `run.sh`.
//! On the GPU machine `bash PACK/run.sh` runs the checker over the pack; here
//! `bash PACK/run.sh --device cpu` checks the same pack on the artifacts' CPU code.

use anyhow::{Context, Result, bail};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The batch every case runs at (two, so that batch strides are exercised).
const B: i64 = 2;
/// Sequence lengths: one token, and primes that are multiples of no tile.
const TS: [i64; 3] = [1, 13, 67];
/// The seeds tried, in order, for each case's weights and inputs.
const SEEDS: [u64; 4] = [7, 8, 9, 10];
/// The relative error that passes (the CPU backend's tests use the same).
const TOLERANCE: f64 = 1e-4;
/// The CPU the pack's CPU code is generated for: any x86-64 of the last decade can check it.
const PACK_CPU: &str = "x86-64-v2";
/// The tool that carries the pack to the GPU machine takes at most this many bytes.
const SIZE_LIMIT: u64 = 64 << 20;
/// The `cases.json` format `seqc-check` reads.
const FORMAT: u32 = 1;

const RUN_SH: &str = r#"#!/bin/sh
# seqc GPU validation pack: checks every case on cuda:0 against the interpreter's outputs.
# Options go to the checker, e.g. `--device cuda:1`, `--device cpu`, `--only mamba`,
# `--results FILE` (default: results.json next to this script).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/bin/seqc-check" "$here" "$@"
"#;

struct Args {
    out: PathBuf,
    only: Option<String>,
    /// Prebuilt binaries to use instead of building them in release (the tests use this).
    seqc: Option<PathBuf>,
    checker: Option<PathBuf>,
}

fn parse(root: &Path, args: &[String]) -> Result<Args> {
    let mut a = Args {
        out: root.join("target/gpu-pack"),
        only: None,
        seqc: None,
        checker: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .with_context(|| format!("gpu-pack: `{flag}` expects a value"))
        };
        match flag.as_str() {
            "--out" => a.out = PathBuf::from(value()?),
            "--only" => a.only = Some(value()?),
            "--seqc" => a.seqc = Some(PathBuf::from(value()?)),
            "--checker" => a.checker = Some(PathBuf::from(value()?)),
            other => bail!(
                "gpu-pack: unknown argument `{other}` (expected --out DIR, --only TEXT, \
                 --seqc BIN, --checker BIN)"
            ),
        }
    }
    Ok(a)
}

/// The spec names of `ir-specs/` (sorted) whose name contains `only`.
fn specs(root: &Path, only: Option<&str>) -> Result<Vec<String>> {
    let dir = root.join("ir-specs");
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".seq").map(str::to_string)
        })
        .filter(|n| only.is_none_or(|o| n.contains(o)))
        .collect();
    v.sort();
    if v.is_empty() {
        bail!(
            "gpu-pack: --only {:?} matches no spec in {}",
            only.unwrap_or(""),
            dir.display()
        );
    }
    Ok(v)
}

/// Empties `out` for a new pack; refuses a non-empty directory that is not a pack.
fn fresh_dir(out: &Path) -> Result<()> {
    if out.exists() {
        let empty = std::fs::read_dir(out)
            .with_context(|| format!("reading {}", out.display()))?
            .next()
            .is_none();
        if !empty && !out.join("cases.json").exists() {
            bail!(
                "gpu-pack: {} is not empty and holds no cases.json: not a pack, left alone",
                out.display()
            );
        }
        std::fs::remove_dir_all(out).with_context(|| format!("removing {}", out.display()))?;
    }
    for sub in ["bin", "artifacts", "data"] {
        std::fs::create_dir_all(out.join(sub))
            .with_context(|| format!("creating {}", out.join(sub).display()))?;
    }
    Ok(())
}

/// Runs `cmd`; on failure returns the last line of what it printed on stderr.
fn try_run(cmd: &mut Command) -> Result<std::result::Result<(), String>> {
    let o = cmd
        .output()
        .with_context(|| format!("cannot start `{}`", super::show(cmd)))?;
    if o.status.success() {
        return Ok(Ok(()));
    }
    let err = String::from_utf8_lossy(&o.stderr);
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    Ok(Err(format!("{} ({})", last.trim(), o.status)))
}

/// Which of the interpreter's outputs in `expected` hold NaN or infinities, if any.
fn not_finite(expected: &Path) -> Result<Option<String>> {
    let outs = seqc_runtime::io::read_safetensors(expected)
        .with_context(|| format!("reading {}", expected.display()))?;
    let bad: Vec<String> = outs
        .iter()
        .filter(|(_, t)| t.to_f64_vec().iter().any(|x| !x.is_finite()))
        .map(|(n, _)| format!("`{n}`"))
        .collect();
    Ok((!bad.is_empty()).then(|| {
        format!(
            "the interpreter's {} not finite",
            if bad.len() == 1 {
                format!("output {} is", bad[0])
            } else {
                format!("outputs {} are", bad.join(", "))
            }
        )
    }))
}

fn size_of(path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for e in std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))? {
        total += size_of(&e?.path())?;
    }
    Ok(total)
}

pub fn gpu_pack(root: &Path, args: &[String]) -> Result<()> {
    let a = parse(root, args)?;
    let specs = specs(root, a.only.as_deref())?;
    if a.seqc.is_none() || a.checker.is_none() {
        // Building needs the toolchain and LLVM; prebuilt binaries need neither.
        super::setup()?;
    }
    let seqc = match a.seqc {
        Some(p) => p,
        None => {
            super::run(Command::new("cargo").args(["build", "--release", "-q", "--bin", "seqc"]))?;
            root.join("target/release/seqc")
        }
    };
    let checker = match a.checker {
        Some(p) => p,
        None => {
            super::run(Command::new("cargo").args([
                "build",
                "--release",
                "-q",
                "-p",
                "seqc-runtime",
                "--features",
                "cuda",
                "--bin",
                "seqc-check",
            ]))?;
            root.join("target/release/seqc-check")
        }
    };
    let out = &a.out;
    fresh_dir(out)?;
    std::fs::copy(&checker, out.join("bin/seqc-check"))
        .with_context(|| format!("copying {}", checker.display()))?;
    std::fs::write(out.join("run.sh"), RUN_SH)?;
    let mut cases = Vec::new();
    let mut skipped = Vec::new();
    for spec in &specs {
        let file = root.join(format!("ir-specs/{spec}.seq"));
        let artifact = format!("artifacts/{spec}");
        eprintln!("gpu-pack: {spec}");
        let compiled = try_run(
            Command::new(&seqc)
                .arg("compile")
                .arg(&file)
                .args(["--target", "cpu,ptx", "--cpu", PACK_CPU, "-o"])
                .arg(out.join(&artifact)),
        )?;
        if let Err(e) = compiled {
            bail!("gpu-pack: {spec} does not compile for cpu,ptx: {e}");
        }
        // The weights of the first dims the spec accepts; later dims reuse them when their
        // own (same seed) are the same bytes.
        let mut shared: Option<(String, Vec<u8>)> = None;
        for t in TS {
            let dims = format!("B={B},T={t}");
            let stem = format!("data/{spec}.B{B}.T{t}");
            let (w, i, e) = (
                format!("{stem}.weights.safetensors"),
                format!("{stem}.inputs.safetensors"),
                format!("{stem}.expected.safetensors"),
            );
            let run = |seed: u64| {
                try_run(
                    Command::new(&seqc)
                        .arg("run")
                        .arg(&file)
                        .args(["--dims", &dims, "--seed", &seed.to_string()])
                        .arg("--save-weights")
                        .arg(out.join(&w))
                        .arg("--save-inputs")
                        .arg(out.join(&i))
                        .arg("-o")
                        .arg(out.join(&e)),
                )
            };
            // Seeded weights outside a model's domain (e.g. a negative decay rate) can
            // overflow f32 at long T, and such a reference checks only the order of the
            // overflow: the first seed whose outputs are finite is taken; where none is, the
            // first seed's (its NaN and infinities must then coincide).
            let mut chosen = None;
            let mut rejected = None;
            for seed in SEEDS {
                if let Err(reason) = run(seed)? {
                    rejected = Some(reason);
                    break;
                }
                if not_finite(&out.join(&e))?.is_none() {
                    chosen = Some(seed);
                    break;
                }
            }
            if let Some(reason) = rejected {
                // A T the spec itself rejects (e.g. past its position table).
                eprintln!("gpu-pack:   {spec} at {dims} skipped: {reason}");
                skipped.push(json!({ "spec": spec, "dims": dims, "reason": reason }));
                for f in [&w, &i, &e] {
                    let _ = std::fs::remove_file(out.join(f));
                }
                continue;
            }
            let seed = match chosen {
                Some(seed) => seed,
                None => {
                    if let Err(reason) = run(SEEDS[0])? {
                        bail!("gpu-pack: {spec} at {dims} ran once, then failed: {reason}");
                    }
                    let why = not_finite(&out.join(&e))?.unwrap_or_default();
                    eprintln!("gpu-pack:   {spec} at {dims}: {why} at every seed tried");
                    SEEDS[0]
                }
            };
            let bytes = std::fs::read(out.join(&w))?;
            let weights = match &shared {
                Some((path, b)) if *b == bytes => {
                    std::fs::remove_file(out.join(&w))?;
                    path.clone()
                }
                _ => {
                    shared = Some((w.clone(), bytes));
                    w
                }
            };
            cases.push(json!({
                "spec": spec,
                "dims": { "B": B, "T": t },
                "seed": seed,
                "artifact": artifact,
                "weights": weights,
                "inputs": i,
                "expected": e,
            }));
        }
    }
    let index = json!({ "format": FORMAT, "tolerance": TOLERANCE, "cases": cases });
    std::fs::write(
        out.join("cases.json"),
        serde_json::to_string_pretty(&index)? + "\n",
    )?;
    if !skipped.is_empty() {
        std::fs::write(
            out.join("skipped.json"),
            serde_json::to_string_pretty(&skipped)? + "\n",
        )?;
    }
    let size = size_of(out)?;
    eprintln!(
        "gpu-pack: {} case(s) of {} spec(s) ({} skipped) in {}: {:.1} MiB",
        cases.len(),
        specs.len(),
        skipped.len(),
        out.display(),
        size as f64 / (1 << 20) as f64
    );
    if size > SIZE_LIMIT {
        bail!(
            "gpu-pack: the pack is {size} bytes, over the {SIZE_LIMIT}-byte limit of the tool \
             that carries it"
        );
    }
    eprintln!(
        "gpu-pack: on the GPU machine: bash {}/run.sh   (here: bash {}/run.sh --device cpu)",
        out.display(),
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_parsed_and_unknown_ones_named() {
        let root = Path::new("/r");
        let a = parse(root, &["--only".into(), "mamba".into()]).unwrap();
        assert_eq!(a.out, Path::new("/r/target/gpu-pack"));
        assert_eq!(a.only.as_deref(), Some("mamba"));
        let e = parse(root, &["--fast".into()]).err().unwrap().to_string();
        assert!(e.contains("unknown argument `--fast`"), "{e}");
        let e = parse(root, &["--out".into()]).err().unwrap().to_string();
        assert!(e.contains("`--out` expects a value"), "{e}");
    }

    #[test]
    fn a_directory_that_is_not_a_pack_is_left_alone() {
        let d = std::env::temp_dir().join(format!("seqc-gpu-pack-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("precious.txt"), "keep").unwrap();
        let e = fresh_dir(&d).err().unwrap().to_string();
        assert!(e.contains("not a pack, left alone"), "{e}");
        assert!(d.join("precious.txt").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn only_matching_no_spec_is_refused() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let e = specs(root, Some("no-such-spec")).err().unwrap().to_string();
        assert!(e.contains("matches no spec"), "{e}");
        assert!(
            specs(root, Some("mamba"))
                .unwrap()
                .contains(&"mamba2".to_string())
        );
    }
}
