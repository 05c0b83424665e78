//! f16 and bf16 on the CPU backend against the interpreter, on small specs at awkward sizes
//! (T = 1, 13, 37; a feature width of 5).
//!
//! Bit-exact: every elementwise op (arithmetic, `where`, casts, exp/tanh/sigmoid chains).
//! Both sides compute each node in f64 and round it once to the dtype, so they agree unless
//! the inline f64 function and libm's straddle a half-way point of the 16-bit format, which
//! needs agreement to ~2^−42 relative on a value within ~2^−50 of a tie: not expected.
//! Within one unit in the last place (the two results equal or adjacent in the format):
//! reductions, einsums and softmax, where the f64 accumulation order may differ (a sum of
//! f16 values is in fact exact in f64, but that is not what the semantics promise).
//! The rounding of an f32 to f16/bf16 is checked on half-way points and values just off
//! them, against hand-computed results. The same programs compile to PTX for sm_80 and
//! sm_90, and `ptxas` (when `SEQC_PTXAS` names it) assembles them.

use seqc::ir::{DimBindings, Graph};
use seqc::{bind, interp};
use seqc_runtime::{DType, HostTensor, Model, TensorData, Weights};
use std::collections::BTreeMap;

type Outputs = BTreeMap<String, HostTensor>;

fn load(src: &str) -> Graph {
    seqc::frontend::load_str("t.seq", src).unwrap_or_else(|e| panic!("{e:?}\n{src}"))
}

/// Runs `g` on the CPU backend and the interpreter at each T of `ts` (B = 2), inputs given
/// by `given` or filled at random; returns (backend, interpreter) outputs per T.
fn run_both(
    g: &Graph,
    ts: &[i64],
    given: &BTreeMap<String, HostTensor>,
) -> Vec<(Outputs, Outputs)> {
    let dir = tempfile::tempdir().expect("tempdir");
    seqc::codegen::artifact::write_artifact(g, "test", dir.path(), false).expect("compiles");
    let model = Model::load(
        dir.path(),
        Weights::from_tensors(&BTreeMap::new()).expect("w"),
    )
    .expect("loads");
    ts.iter()
        .map(|&t| {
            let dims: DimBindings = [("B".to_string(), 2), ("T".to_string(), t)]
                .into_iter()
                .collect();
            let mut tensors = given.clone();
            let bound = bind::bind_dims(g, &dims, &tensors).expect("binds");
            bind::fill_missing(g, &bound, &mut tensors, 7).expect("fills");
            let want = interp::run(g, &bound, &tensors).expect("interprets");
            let inputs: Outputs = g
                .inputs()
                .map(|(n, _)| (n.to_string(), tensors[n].clone()))
                .collect();
            (model.run(&inputs, &bound).expect("runs"), want)
        })
        .collect()
}

/// The 16-bit patterns of an f16 or bf16 tensor.
fn bits16(h: &HostTensor) -> Vec<u16> {
    match &h.data {
        TensorData::F16(v) => v.iter().map(|x| x.to_bits()).collect(),
        TensorData::BF16(v) => v.iter().map(|x| x.to_bits()).collect(),
        other => panic!("not a 16-bit float tensor: {:?}", other.dtype()),
    }
}

/// An ordered key of a 16-bit float pattern: adjacent values have adjacent keys.
fn key(b: u16) -> i32 {
    if b & 0x8000 != 0 {
        -((b & 0x7fff) as i32)
    } else {
        b as i32
    }
}

/// Checks every output: f16/bf16 ones bit for bit (`ulps` = 0) or within `ulps` units in
/// the last place (NaNs must coincide), others exactly.
fn check(g: &Graph, ts: &[i64], given: &BTreeMap<String, HostTensor>, ulps: &[(&str, i32)]) {
    for (t, (got, want)) in ts.iter().zip(run_both(g, ts, given)) {
        for (name, w) in &want {
            let o = &got[name];
            assert_eq!(o.shape, w.shape, "`{name}` at T = {t}");
            assert_eq!(o.dtype(), w.dtype(), "`{name}` at T = {t}");
            let tol = ulps.iter().find(|(n, _)| n == name).map_or(0, |(_, u)| *u);
            if matches!(w.dtype(), DType::F16 | DType::BF16) {
                for (i, (a, b)) in bits16(o).into_iter().zip(bits16(w)).enumerate() {
                    let nan = |x: u16| {
                        x & 0x7fff
                            > if w.dtype() == DType::F16 {
                                0x7c00
                            } else {
                                0x7f80
                            }
                    };
                    let ok = if nan(a) || nan(b) {
                        nan(a) && nan(b)
                    } else {
                        (key(a) - key(b)).abs() <= tol
                    };
                    assert!(
                        ok,
                        "`{name}`[{i}] at T = {t}: {a:#06x} vs {b:#06x} (tolerance {tol} ulp)"
                    );
                }
            } else {
                assert_eq!(o.to_f64_vec(), w.to_f64_vec(), "`{name}` at T = {t}");
            }
        }
    }
}

const TS: [i64; 3] = [1, 13, 37];

fn elementwise(d: &str) -> String {
    format!(
        "dim B, T;
input x: {d}[B, T, 5];
input y: {d}[B, T, 5];
input w: {d}[5];
output e = exp(x) * w + 1.0;
output s = tanh(sigmoid(x) * 3.0 - y) / (abs(y) + 0.5);
output m = where(x > y, x * y, y - 0.25);
output r = relu(x) + floor(y * 4.0);
output c32 = cast(x * y, f32);
output ci = cast(x * 100.0, i32);
output back = cast(cast(x, f32) * 3.0, {d});
"
    )
}

#[test]
fn f16_elementwise_is_bit_exact() {
    check(&load(&elementwise("f16")), &TS, &BTreeMap::new(), &[]);
}

#[test]
fn bf16_elementwise_is_bit_exact() {
    check(&load(&elementwise("bf16")), &TS, &BTreeMap::new(), &[]);
}

fn reductions(d: &str) -> String {
    format!(
        "dim B, T;
input x: {d}[B, T, 5];
input w: {d}[5, 3];
output s = sum(x * x, axis = 2);
output mx = max(x, axis = 1);
output mean_t = mean(x, axis = 1);
output p = softmax(x, axis = -1);
output h = einsum(\"btd,de->bte\", x, w);
output a = einsum(\"btd,bsd->bts\", x, x);
"
    )
}

#[test]
fn f16_reductions_einsums_and_softmax_are_within_one_ulp() {
    let tol = [("s", 1), ("mean_t", 1), ("p", 1), ("h", 1), ("a", 1)];
    check(&load(&reductions("f16")), &TS, &BTreeMap::new(), &tol);
}

#[test]
fn bf16_reductions_einsums_and_softmax_are_within_one_ulp() {
    let tol = [("s", 1), ("mean_t", 1), ("p", 1), ("h", 1), ("a", 1)];
    check(&load(&reductions("bf16")), &TS, &BTreeMap::new(), &tol);
}

/// f32 inputs on and just off the half-way points of f16 and bf16, with the results worked
/// out by hand (RNE from the exact value, not via a shorter intermediate).
fn ties() -> Vec<(f32, f32, f32)> {
    let p = |e: i32| 2f32.powi(e);
    // (input, as f16, as bf16)
    vec![
        // 1 + 2^−11: f16 tie → 1 (even); bf16 rounds to 1.
        (1.0 + p(-11), 1.0, 1.0),
        // 1 + 2^−11 + 2^−23: above the f16 tie by a bit below 2^−20 → up.
        (1.0 + p(-11) + p(-23), 1.0 + p(-10), 1.0),
        // 1 + 3·2^−11: f16 tie between odd 1 + 2^−10 and even 1 + 2^−9 → up.
        (1.0 + 3.0 * p(-11), 1.0 + p(-9), 1.0),
        // 1 + 2^−8: bf16 tie → 1; f16 exact.
        (1.0 + p(-8), 1.0 + p(-8), 1.0),
        // 1 + 2^−8 + 2^−23: above the bf16 tie by one f32 ulp → up.
        (1.0 + p(-8) + p(-23), 1.0 + p(-8), 1.0 + p(-7)),
        // 1 + 3·2^−8: bf16 tie between odd and even → up to 1 + 2^−6.
        (1.0 + 3.0 * p(-8), 1.0 + 3.0 * p(-8), 1.0 + p(-6)),
        // −(1 + 2^−11 + 2^−23): as above, negated.
        (-(1.0 + p(-11) + p(-23)), -(1.0 + p(-10)), -1.0),
        // The f16 subnormal tie 2^−25 → 0; just above → 2^−24.
        (p(-25), 0.0, p(-25)),
        (p(-25) + p(-40), p(-24), p(-25)),
        // 65520: the tie above f16's largest finite → ∞; 65519 → 65504.
        (65520.0, f32::INFINITY, 65536.0),
        (65519.0, 65504.0, 65536.0),
    ]
}

#[test]
fn casts_from_f32_round_once_to_nearest_even_on_and_off_ties() {
    let g = load(
        "dim B, T;
input x: f32[T];
output h = cast(x, f16);
output b = cast(x, bf16);",
    );
    let cases = ties();
    let x: Vec<f32> = cases.iter().map(|c| c.0).collect();
    let t = x.len() as i64;
    let given: BTreeMap<String, HostTensor> = [(
        "x".to_string(),
        HostTensor::new("x", vec![x.len()], TensorData::F32(x)).expect("tensor"),
    )]
    .into_iter()
    .collect();
    let (got, want) = run_both(&g, &[t], &given).remove(0);
    for (name, col) in [("h", 1), ("b", 2)] {
        let (g, w) = (got[name].to_f64_vec(), want[name].to_f64_vec());
        for (i, c) in cases.iter().enumerate() {
            let expect = if col == 1 { c.1 } else { c.2 } as f64;
            assert_eq!(g[i], expect, "backend `{name}` of {:e}", c.0);
            assert_eq!(w[i], expect, "interpreter `{name}` of {:e}", c.0);
        }
    }
}

#[test]
fn casts_from_i32_round_at_the_formats_integer_limit() {
    let g = load(
        "dim B, T;
input n: i32[T];
output h = cast(n, f16);
output b = cast(n, bf16);
output back = cast(cast(n, f16), i32);",
    );
    // 2049 is a tie in f16 (→ 2048), 2051 one too (→ 2052), 257 in bf16 (→ 256).
    let n = vec![2049, 2051, 2050, 257, 259, -2049, 70000, 0, 1];
    let h = [
        2048.0,
        2052.0,
        2050.0,
        257.0,
        259.0,
        -2048.0,
        f64::INFINITY,
        0.0,
        1.0,
    ];
    let b = [
        2048.0, 2048.0, 2048.0, 256.0, 260.0, -2048.0, 70144.0, 0.0, 1.0,
    ];
    let t = n.len() as i64;
    let given: BTreeMap<String, HostTensor> = [(
        "n".to_string(),
        HostTensor::new("n", vec![n.len()], TensorData::I32(n)).expect("tensor"),
    )]
    .into_iter()
    .collect();
    let (got, want) = run_both(&g, &[t], &given).remove(0);
    assert_eq!(got["h"].to_f64_vec(), h);
    assert_eq!(got["b"].to_f64_vec(), b);
    assert_eq!(want["h"].to_f64_vec(), h);
    assert_eq!(want["b"].to_f64_vec(), b);
    assert_eq!(got["back"].to_f64_vec(), want["back"].to_f64_vec());
}

#[test]
fn half_programs_compile_to_ptx_and_assemble() {
    let ptxas = std::env::var_os("SEQC_PTXAS").map(std::path::PathBuf::from);
    let dir = tempfile::tempdir().expect("tempdir");
    for d in ["f16", "bf16"] {
        for (what, src) in [
            ("elementwise", elementwise(d)),
            ("reductions", reductions(d)),
        ] {
            let p = seqc::kernel::lower(&load(&src)).expect("lowers");
            for arch in ["sm_80", "sm_90"] {
                let text = seqc::codegen::ptx::ptx(&p, arch)
                    .unwrap_or_else(|e| panic!("{d} {what} {arch}: {e}"));
                assert!(
                    !text.contains("call.uni"),
                    "{d} {what} {arch} calls out:\n{text}"
                );
                let Some(ptxas) = &ptxas else { continue };
                let file = dir.path().join(format!("{d}_{what}_{arch}.ptx"));
                std::fs::write(&file, &text).expect("write");
                let out = std::process::Command::new(ptxas)
                    .args(["-arch", arch, "-o"])
                    .arg(dir.path().join("out.cubin"))
                    .arg(&file)
                    .output()
                    .expect("runs ptxas");
                assert!(
                    out.status.success(),
                    "{d} {what} {arch}: ptxas refused it:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}
