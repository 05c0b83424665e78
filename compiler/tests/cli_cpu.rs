//! End-to-end tests of the CPU backend's commands: `seqc compile`, `seqc dump --stage
//! kernels|llvm`, `seqc run --backend cpu` (the same output as the interpreter; the
//! reference outputs of the fixture sets of the `scan_fn` specs), and the error for a spec
//! the backend cannot compile.

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

fn ok(args: &[&str]) -> (String, String) {
    let o = seqc(args);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(o.status.success(), "seqc {args:?} failed:\n{err}");
    (out, err)
}

#[test]
fn compile_writes_an_artifact_with_its_dumps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("la.seqc");
    let (_, err) = ok(&[
        "compile",
        "ir-specs/linear_attention.seq",
        "--target",
        "cpu",
        "--dumps",
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert!(
        err.contains("compiled ir-specs/linear_attention.seq"),
        "{err}"
    );
    for f in ["manifest.json", "kernels.so", "kernels.txt", "llvm.ll"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let m = seqc_runtime::artifact::Manifest::read(&out).expect("manifest reads back");
    assert_eq!(m.dims, vec!["B".to_string(), "T".to_string()]);
    assert_eq!(m.inputs.len(), 1);
    assert!(!m.kernels.is_empty() && !m.params.is_empty());
}

/// Specs whose kernels read one buffer at two offsets in a loop tagged `vector` (e.g.
/// SwiGLU's `silu(h[.., i]) * h[.., 32 + i]`): without per-buffer alias scopes LLVM could not
/// bound the accesses, did not vectorise, and printed "warning: loop not vectorized" on stderr.
/// Compiling prints nothing from LLVM.
#[test]
fn compiling_prints_no_llvm_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    for spec in ["transformer_block_bidir", "hf_llama", "s4d"] {
        let out = dir.path().join(format!("{spec}.seqc"));
        let (_, err) = ok(&[
            "compile",
            &format!("ir-specs/{spec}.seq"),
            "--cpu",
            "x86-64-v4",
            "-o",
            out.to_str().expect("utf-8"),
        ]);
        assert!(!err.contains("warning"), "{spec}:\n{err}");
    }
}

/// The words of a summary line and its numbers, apart (`y: f32[2, 5, 16] mean=… […]`).
fn split_summary(s: &str) -> (Vec<String>, Vec<f64>) {
    let (mut words, mut nums) = (Vec::new(), Vec::new());
    for w in s
        .split([' ', '[', ']', ',', '=', '\n'])
        .filter(|w| !w.is_empty())
    {
        match w.parse::<f64>() {
            Ok(x) if w.contains('.') => nums.push(x),
            _ => words.push(w.to_string()),
        }
    }
    (words, nums)
}

#[test]
fn run_on_cpu_prints_what_the_interpreter_prints() {
    for spec in ["ir-specs/mamba.seq", "ir-specs/softmax_attention.seq"] {
        let args = ["run", spec, "--dims", "B=2,T=5", "--seed", "4"];
        let (interp, _) = ok(&args);
        let (cpu, err) = ok(&[&args[..], &["--backend", "cpu"]].concat());
        assert!(err.contains("with cpu at B=2,T=5"), "{err}");
        // Same names, dtypes and shapes; the printed values agree within 1e-4 of the
        // largest (the CPU backend's products accumulate in f32, the interpreter's in f64).
        let ((wi, ni), (wc, nc)) = (split_summary(&interp), split_summary(&cpu));
        assert_eq!(wc, wi, "{spec}:\n{cpu}\n{interp}");
        assert_eq!(nc.len(), ni.len(), "{spec}:\n{cpu}\n{interp}");
        let scale = ni.iter().fold(1e-6f64, |m, x| m.max(x.abs()));
        for (a, b) in nc.iter().zip(&ni) {
            assert!((a - b).abs() <= 1e-4 * scale, "{spec}:\n{cpu}\n{interp}");
        }
    }
}

/// The attention tile step at each vector width (16 floats: 6-row strips; 8 and 4: 1-row
/// strips, 4 lanes also 16 vectors per strip row) prints what the interpreter prints, over
/// a partial query tile and partial key tiles (T = 200).
#[cfg(target_arch = "x86_64")]
#[test]
fn causal_attention_at_each_x86_64_level_prints_what_the_interpreter_prints() {
    let spec = "xtask/bench/sdpa_causal.seq";
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("m.seqc");
    ok(&[
        "compile",
        spec,
        "--dumps",
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    let kernels = std::fs::read_to_string(out.join("kernels.txt")).expect("kernel dump");
    assert!(kernels.contains("attn_tile b"), "{kernels}");
    let args = ["run", spec, "--dims", "B=1,H=2,T=200", "--seed", "3"];
    let (interp, _) = ok(&args);
    let (wi, ni) = split_summary(&interp);
    let avx2 =
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
    for (level, runs) in [("x86-64", true), ("x86-64-v3", avx2), ("native", true)] {
        if !runs {
            continue;
        }
        let (cpu, _) = ok(&[&args[..], &["--backend", "cpu", "--cpu", level]].concat());
        let (wc, nc) = split_summary(&cpu);
        assert_eq!(wc, wi, "{level}:\n{cpu}\n{interp}");
        assert_eq!(nc.len(), ni.len(), "{level}:\n{cpu}\n{interp}");
        let scale = ni.iter().fold(1e-6f64, |m, x| m.max(x.abs()));
        for (a, b) in nc.iter().zip(&ni) {
            assert!((a - b).abs() <= 1e-4 * scale, "{level}:\n{cpu}\n{interp}");
        }
    }
}

#[test]
fn dump_kernels_and_llvm() {
    let (k, _) = ok(&["dump", "ir-specs/lru.seq", "--stage", "kernels"]);
    assert!(
        k.contains("kernel k0_") && k.contains("parallel for"),
        "{k}"
    );
    let (l, _) = ok(&["dump", "ir-specs/lru.seq", "--stage", "llvm"]);
    assert!(l.contains("define void @k0_"), "{l}");
    // With AVX-512 the kernels ask LLVM's vectoriser for 512-bit vectors (it prefers 256 on
    // these targets otherwise); with AVX2 they do not.
    let (v4, _) = ok(&[
        "dump",
        "ir-specs/lru.seq",
        "--stage",
        "llvm",
        "--cpu",
        "x86-64-v4",
    ]);
    assert!(v4.contains("\"prefer-vector-width\"=\"512\""), "{v4}");
    let (v3, _) = ok(&[
        "dump",
        "ir-specs/lru.seq",
        "--stage",
        "llvm",
        "--cpu",
        "x86-64-v3",
    ]);
    assert!(!v3.contains("prefer-vector-width"), "{v3}");
}

/// f16 and bf16 specs run on the CPU backend (they were refused before) and print exactly
/// what the interpreter prints: both round every elementwise node once from f64.
#[test]
fn half_precision_specs_run_on_cpu_as_in_the_interpreter() {
    let dir = tempfile::tempdir().expect("tempdir");
    for d in ["f16", "bf16"] {
        let spec = dir.path().join(format!("{d}.seq"));
        let src = format!("dim B, T;\ninput x: {d}[B, T];\noutput y = exp(x) * 0.3 + x;\n");
        std::fs::write(&spec, src).expect("writes");
        let path = spec.to_str().expect("utf-8");
        let args = ["run", path, "--dims", "B=1,T=7", "--seed", "3"];
        let (interp, _) = ok(&args);
        let (cpu, err) = ok(&[&args[..], &["--backend", "cpu"]].concat());
        assert!(err.contains("with cpu at B=1,T=7"), "{err}");
        assert!(cpu.contains(&format!("y: {d}[1, 7]")), "{cpu}");
        assert_eq!(cpu, interp, "{d}");
    }
}

/// The fixture sets (tests/fixtures/STEM.json and its safetensors) of the specs whose
/// recurrence is a `scan_fn`, run on the CPU backend: every output must be within the set's
/// tolerance of the reference, `max |got − want| ≤ tolerance · max(1, max |want|)`.
#[test]
fn run_on_cpu_matches_the_scan_fn_fixtures() {
    let fx = root().join("tests/fixtures");
    let stems = [
        "rwkv4_recurrent",
        "rwkv4_recurrent.t1",
        "rwkv4_recurrent.t23",
        "hf_rwkv",
        "hf_rwkv.t1",
        "hf_rwkv.t16",
    ];
    for stem in stems {
        let file = |kind: &str| fx.join(format!("{stem}.{kind}"));
        let text = std::fs::read_to_string(file("json")).expect("fixture json");
        let meta: serde_json::Value = serde_json::from_str(&text).expect("json");
        let spec = format!("ir-specs/{}.seq", meta["spec"].as_str().expect("spec"));
        let dims: Vec<String> = meta["dims"]
            .as_object()
            .expect("dims")
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let tol = meta["tolerance"].as_f64().expect("tolerance");
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out.safetensors");
        let (w, i) = (file("weights.safetensors"), file("inputs.safetensors"));
        let dims = dims.join(",");
        let mut args: Vec<&str> = vec![
            "run",
            &spec,
            "--backend",
            "cpu",
            "--dims",
            &dims,
            "--weights",
            w.to_str().expect("utf-8"),
            "--inputs",
            i.to_str().expect("utf-8"),
            "-o",
            out.to_str().expect("utf-8"),
        ];
        let config = dir.path().join("config.json");
        if let Some(c) = meta.get("config") {
            std::fs::write(&config, c.to_string()).expect("writes config");
            args.extend(["--config", config.to_str().expect("utf-8")]);
        }
        ok(&args);
        let got = seqc_runtime::io::read_safetensors(&out).expect("outputs");
        let want =
            seqc_runtime::io::read_safetensors(&file("expected.safetensors")).expect("expected");
        assert!(!want.is_empty(), "{stem}");
        for (name, w) in &want {
            let g = got
                .get(name)
                .unwrap_or_else(|| panic!("{stem}: no `{name}`"));
            assert_eq!(g.shape, w.shape, "{stem}: `{name}`");
            let (g, w) = (g.to_f64_vec(), w.to_f64_vec());
            let scale = w.iter().fold(1.0f64, |m, x| m.max(x.abs()));
            let err = g
                .iter()
                .zip(&w)
                .map(|(a, b)| (a - b).abs())
                .fold(
                    0.0f64,
                    |m, d| if d.is_nan() { f64::INFINITY } else { m.max(d) },
                );
            assert!(
                err <= tol * scale,
                "{stem}: `{name}` is {err:.3e} from the reference (allowed {:.3e})",
                tol * scale
            );
        }
    }
}

/// `seqc bench` compiles, runs and reports times that are consistent with each other, and
/// refuses zero iterations with an error naming the option.
#[test]
fn bench_reports_times_and_refuses_zero_iterations() {
    let (out, _) = ok(&[
        "bench",
        "xtask/bench/matmul.seq",
        "--dims",
        "M=33,K=17,N=65",
        "--iters",
        "3",
        "--threads",
        "2",
    ]);
    let j: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let times: Vec<f64> = j["times_s"]
        .as_array()
        .expect("times_s")
        .iter()
        .map(|t| t.as_f64().expect("seconds"))
        .collect();
    assert_eq!(times.len(), 3, "{out}");
    let (min, med) = (
        j["min_s"].as_f64().unwrap(),
        j["median_s"].as_f64().unwrap(),
    );
    assert!(
        times.iter().all(|t| *t > 0.0 && *t >= min) && min <= med,
        "{out}"
    );
    // The cost model's count of a 33 × 17 × 65 product: one multiply and one add per term.
    assert_eq!(j["flops"].as_u64(), Some(2 * 33 * 17 * 65), "{out}");
    assert_eq!(j["threads"].as_u64(), Some(2), "{out}");
    // The arena holds the output only: 33 · 65 f32 = 8,580 bytes, rounded up to a 64-byte line.
    assert_eq!(j["arena_bytes"].as_u64(), Some(8640), "{out}");
    let o = seqc(&[
        "bench",
        "xtask/bench/matmul.seq",
        "--dims",
        "M=2,K=2,N=2",
        "--iters",
        "0",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--iters must be at least 1"), "{err}");
}

/// `--cpu LEVEL`: the artifact records that CPU and exactly the level's features, its code
/// uses no register wider than the level has (and does use the widest it has), and where this
/// machine has the level it computes what the interpreter computes.
#[cfg(target_arch = "x86_64")]
#[test]
fn compile_and_run_for_an_x86_64_level() {
    let spec = "ir-specs/mamba.seq";
    // (level, features it must record, features it must not, register it must use,
    // registers it must not, whether this machine can run it)
    let levels = [
        (
            "x86-64",
            &["sse2"][..],
            &["avx", "avx2"][..],
            "xmm",
            &["ymm", "zmm"][..],
            true,
        ),
        (
            "x86-64-v3",
            &["sse4.2", "avx2", "fma"][..],
            &["avx512f"][..],
            "ymm",
            &["zmm"][..],
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma"),
        ),
    ];
    for (level, has, lacks, reg, not_regs, runs) in levels {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("m.seqc");
        let (_, err) = ok(&[
            "compile",
            spec,
            "--cpu",
            level,
            "-o",
            out.to_str().expect("utf-8"),
        ]);
        assert!(err.contains("target x86_64"), "{err}");
        let m = seqc_runtime::artifact::Manifest::read(&out).expect("manifest reads back");
        let m = m.cpu.expect("CPU code");
        assert_eq!(m.target.cpu, level);
        for f in has {
            assert!(
                m.target.features.iter().any(|x| x == f),
                "{level}: {f} in {:?}",
                m.target.features
            );
        }
        for f in lacks {
            assert!(
                !m.target.features.iter().any(|x| x == f),
                "{level}: {f} in {:?}",
                m.target.features
            );
        }
        let dis = Command::new("objdump")
            .args(["-d", "--no-show-raw-insn"])
            .arg(out.join("kernels.so"))
            .output()
            .expect("objdump runs (binutils comes with the C compiler the backend links with)");
        let asm = String::from_utf8_lossy(&dis.stdout);
        assert!(
            asm.contains(&format!("%{reg}")),
            "{level}: no {reg} register used"
        );
        for r in not_regs {
            assert!(
                !asm.contains(&format!("%{r}")),
                "{level}: {r} register used"
            );
        }
        if runs {
            let args = ["run", spec, "--dims", "B=2,T=7", "--seed", "3"];
            let (interp, _) = ok(&args);
            let (cpu, _) = ok(&[&args[..], &["--backend", "cpu", "--cpu", level]].concat());
            let ((wi, ni), (wc, nc)) = (split_summary(&interp), split_summary(&cpu));
            assert_eq!(wc, wi, "{level}:\n{cpu}\n{interp}");
            let scale = ni.iter().fold(1e-6f64, |m, x| m.max(x.abs()));
            for (a, b) in nc.iter().zip(&ni) {
                assert!((a - b).abs() <= 1e-4 * scale, "{level}:\n{cpu}\n{interp}");
            }
        }
    }
}

#[test]
fn an_unknown_cpu_is_a_clear_error() {
    for args in [
        &[
            "compile",
            "ir-specs/lru.seq",
            "--cpu",
            "pentium4",
            "-o",
            "/nonexistent/x",
        ][..],
        &[
            "run",
            "ir-specs/lru.seq",
            "--backend",
            "cpu",
            "--cpu",
            "pentium4",
        ][..],
        &[
            "dump",
            "ir-specs/lru.seq",
            "--stage",
            "llvm",
            "--cpu",
            "pentium4",
        ][..],
    ] {
        let o = seqc(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("unknown CPU `pentium4`: expected `native` or one of x86-64, x86-64-v2, x86-64-v3, x86-64-v4")
                && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
    let o = seqc(&["run", "ir-specs/lru.seq", "--cpu", "x86-64-v3"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--cpu applies to --backend cpu"),
        "{err}"
    );
    let o = seqc(&[
        "dump",
        "ir-specs/lru.seq",
        "--stage",
        "kernels",
        "--cpu",
        "x86-64-v3",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--cpu applies to --stage llvm"),
        "{err}"
    );
}
