//! Properties that hold for a family of specs, declared in the spec's header comment:
//! `// property: causal` — outputs at time t do not depend on inputs after t (the time axis
//! is the one declared with the dim `T`);
//! `// property: equivalent OTHER` — the spec and `ir-specs/OTHER.seq` (e.g. a recurrent and a
//! parallel form) take the same params and inputs and give the same outputs.

use seqc::ir::{DimExpr, Graph};
use seqc_runtime::{HostTensor, TensorData};
use seqc_tests::{files, rel, root};
use std::collections::BTreeMap;

/// The arguments of every `// property: NAME ARGS` line in a spec's header.
fn property_args(path: &std::path::Path, property: &str) -> Vec<String> {
    let prefix = format!("// property: {property}");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .take_while(|l| l.starts_with("//") || l.trim().is_empty())
        .filter_map(|l| l.trim().strip_prefix(&prefix).map(|a| a.trim().to_string()))
        .collect()
}

fn tagged(property: &str) -> Vec<std::path::PathBuf> {
    files("ir-specs", "seq")
        .into_iter()
        .filter(|p| !property_args(p, property).is_empty())
        .collect()
}

/// Dims for a spec: B = 1, T = `t`, others from the spec's fixture metadata.
fn dims_for(path: &std::path::Path, g: &Graph, t: i64) -> BTreeMap<String, i64> {
    let stem = path.file_stem().unwrap().to_string_lossy();
    let meta = root().join("tests/fixtures").join(format!("{stem}.json"));
    let mut d = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(meta) {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        if let Some(m) = v["dims"].as_object() {
            for (k, x) in m {
                d.insert(k.clone(), x.as_i64().unwrap());
            }
        }
    }
    for name in &g.dims {
        d.entry(name.clone()).or_insert(1);
    }
    d.insert("B".into(), 1);
    d.insert("T".into(), t);
    d.retain(|k, _| g.dims.contains(k));
    d
}

fn time_axis(shape: &[DimExpr]) -> Option<usize> {
    shape.iter().position(|d| *d == DimExpr::sym("T"))
}

/// Changes every element at time index ≥ k: floats get new values; integers (token ids) are
/// rotated among the future positions, so every id stays one the spec can look up.
fn perturb_future(t: &HostTensor, axis: usize, k: usize) -> Option<HostTensor> {
    let mut out = t.clone();
    let inner: usize = t.shape[axis + 1..].iter().product();
    let n = t.shape[axis];
    let future = |i: usize| (i / inner) % n >= k;
    // The index of the element one time step later, wrapping within [k, n).
    let next = |i: usize| {
        let ti = (i / inner) % n;
        let tj = if ti + 1 < n { ti + 1 } else { k };
        i - ti * inner + tj * inner
    };
    match (&mut out.data, &t.data) {
        (TensorData::F32(v), _) => v
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| future(*i))
            .for_each(|(_, x)| *x = -*x * 3.0 + 0.7),
        (TensorData::I64(v), TensorData::I64(src)) => (0..v.len())
            .filter(|i| future(*i))
            .for_each(|i| v[i] = src[next(i)]),
        (TensorData::I32(v), TensorData::I32(src)) => (0..v.len())
            .filter(|i| future(*i))
            .for_each(|i| v[i] = src[next(i)]),
        _ => return None,
    }
    Some(out)
}

fn prefix(t: &HostTensor, axis: usize, k: usize) -> Vec<f64> {
    let inner: usize = t.shape[axis + 1..].iter().product();
    let n = t.shape[axis];
    t.to_f64_vec()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| (i / inner) % n < k)
        .map(|(_, x)| x)
        .collect()
}

#[test]
fn causal_specs_do_not_look_ahead() {
    let specs = tagged("causal");
    assert!(!specs.is_empty(), "no spec is tagged `// property: causal`");
    for path in specs {
        let g = seqc::frontend::load_file(&path).unwrap();
        let (t, k) = (11i64, 6usize);
        let dims = dims_for(&path, &g, t);
        let mut tensors = BTreeMap::new();
        seqc::bind::fill_missing(&g, &dims, &mut tensors, 7).unwrap();
        let base = seqc::interp::run(&g, &dims, &tensors).unwrap();
        let mut changed = tensors.clone();
        let mut any = false;
        for (name, id) in g.inputs() {
            if let Some(ax) = time_axis(&g.tensor_ty(id).shape)
                && let Some(p) = perturb_future(&tensors[name], ax, k)
            {
                changed.insert(name.to_string(), p);
                any = true;
            }
        }
        assert!(
            any,
            "{}: no float input has a T axis to perturb",
            rel(&path)
        );
        let after = seqc::interp::run(&g, &dims, &changed).unwrap();
        for (name, id) in &g.outputs {
            let Some(ax) = time_axis(&g.tensor_ty(*id).shape) else {
                continue;
            };
            let (a, b) = (prefix(&base[name], ax, k), prefix(&after[name], ax, k));
            assert_eq!(
                a,
                b,
                "{}: output `{name}` before t = {k} changed",
                rel(&path)
            );
            // The test can fail: the future part does change.
            assert_ne!(
                base[name],
                after[name],
                "{}: output `{name}` ignores its input",
                rel(&path)
            );
        }
    }
}

#[test]
fn equivalent_forms_agree() {
    for path in tagged("equivalent") {
        for other in property_args(&path, "equivalent") {
            let other_path = root().join("ir-specs").join(format!("{other}.seq"));
            let g1 = seqc::frontend::load_file(&path).unwrap();
            let g2 = seqc::frontend::load_file(&other_path)
                .unwrap_or_else(|e| panic!("{}: equivalent to `{other}`: {e}", rel(&path)));
            for t in [1i64, 7, 13] {
                let dims = dims_for(&path, &g1, t);
                let mut tensors = BTreeMap::new();
                seqc::bind::fill_missing(&g1, &dims, &mut tensors, 11).unwrap();
                seqc::bind::check_tensors(&g2, &dims, &tensors).unwrap_or_else(|e| {
                    panic!("{} and {other} differ in interface: {e}", rel(&path))
                });
                let a = seqc::interp::run(&g1, &dims, &tensors).unwrap();
                let b = seqc::interp::run(&g2, &dims, &tensors).unwrap();
                assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
                for (name, x) in &a {
                    let (x, y) = (x.to_f64_vec(), b[name].to_f64_vec());
                    let scale = x.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                    let err = x
                        .iter()
                        .zip(&y)
                        .fold(0.0f64, |m, (p, q)| m.max((p - q).abs()));
                    assert!(
                        err <= 1e-4 * scale,
                        "{} vs {other} at T = {t}: `{name}` differs by {err}",
                        rel(&path)
                    );
                }
            }
        }
    }
}
