//! Lowering tests: language features checked through the IR they produce and, where values
//! matter, through the interpreter against hand-computed results.

use crate::frontend::{Config, load_str, load_str_with};
use crate::ir::{DimBindings, Op};
use seqc_runtime::HostTensor;
use std::collections::BTreeMap;

fn run(src: &str, cfg: &Config, x: Vec<f32>) -> Vec<f64> {
    let g = load_str_with("t.seq", src, cfg).unwrap_or_else(|e| panic!("{}", e.render(false)));
    let n = x.len();
    let mut t = BTreeMap::new();
    t.insert("x".to_string(), HostTensor::f32(vec![n], x));
    let dims: DimBindings = [("T".to_string(), n as i64)].into_iter().collect();
    crate::interp::run(&g, &dims, &t).unwrap()["y"].to_f64_vec()
}

const HEAD: &str = "dim T;\ninput x: f32[T];\n";

#[test]
fn compile_time_if_picks_one_branch() {
    let src = format!(
        "{HEAD}const TIED = config(\"tie\", true);\noutput y = if TIED {{ x * 2.0 }} else {{ x + 1.0 }};\n"
    );
    assert_eq!(run(&src, &Config::new(), vec![1.0, 2.0]), vec![2.0, 4.0]);
    let cfg: Config = [("tie".to_string(), serde_json::json!(false))]
        .into_iter()
        .collect();
    assert_eq!(run(&src, &cfg, vec![1.0, 2.0]), vec![2.0, 3.0]);
}

#[test]
fn params_exist_only_in_the_branch_taken() {
    let src = format!(
        "{HEAD}const TIED = config(\"tie\", false);\n\
         fn head(x) {{ if TIED {{ x }} else {{ param lm_head.weight: f32[T]; x * lm_head.weight }} }}\n\
         output y = head(x) at \"m\";\n"
    );
    let g = load_str("t.seq", &src).unwrap();
    let names: Vec<&str> = g.params().map(|(n, _)| n).collect();
    assert_eq!(names, ["m.lm_head.weight"]);
    let cfg: Config = [("tie".to_string(), serde_json::json!(true))]
        .into_iter()
        .collect();
    let g = load_str_with("t.seq", &src, &cfg).unwrap();
    assert_eq!(g.params().count(), 0);
}

#[test]
fn config_reads_nested_fields_and_defaults() {
    let src = format!("{HEAD}const S = config(\"rope.theta\", 1.0);\noutput y = x * S;\n");
    assert_eq!(run(&src, &Config::new(), vec![3.0]), vec![3.0]);
    let cfg: Config = [("rope".to_string(), serde_json::json!({"theta": 4.0}))]
        .into_iter()
        .collect();
    assert_eq!(run(&src, &cfg, vec![3.0]), vec![12.0]);
    let cfg: Config = [("rope".to_string(), serde_json::json!(null))]
        .into_iter()
        .collect();
    assert_eq!(run(&src, &cfg, vec![3.0]), vec![3.0]);
    let cfg: Config = [("rope".to_string(), serde_json::json!(5))]
        .into_iter()
        .collect();
    let e = load_str_with("t.seq", &src, &cfg).unwrap_err();
    assert!(e.to_string().contains("not an object"), "{e}");
}

#[test]
fn repeat_threads_its_accumulator_and_prefixes_params() {
    let src = format!(
        "{HEAD}fn layer(h) {{ param w: f32[T]; h * w }}\n\
         output y = repeat i in 0..3 with h = x {{ layer(h) at \"layers.{{i}}\" }};\n"
    );
    let g = load_str("t.seq", &src).unwrap();
    let names: Vec<&str> = g.params().map(|(n, _)| n).collect();
    assert_eq!(names, ["layers.0.w", "layers.1.w", "layers.2.w"]);
}

#[test]
fn constants_fold_with_the_interpreters_semantics() {
    // 1/sqrt(16) folds to a single constant: no sqrt node reaches the IR.
    let src = format!("{HEAD}const D = 16;\noutput y = x * (1.0 / sqrt(D));\n");
    let g = load_str("t.seq", &src).unwrap();
    assert!(!g.nodes.iter().any(|n| matches!(n.op, Op::Unary(_))));
    assert_eq!(run(&src, &Config::new(), vec![8.0]), vec![2.0]);
}

#[test]
fn tied_weights_are_one_param() {
    let src = format!(
        "{HEAD}fn f(h) {{ param w: f32[T]; h * w }}\noutput y = f(f(x) at \"a\") at \"a\";\n"
    );
    let g = load_str("t.seq", &src).unwrap();
    assert_eq!(g.params().count(), 1);
}

#[test]
fn list_config_fields_index_and_compare() {
    let src = format!(
        "{HEAD}const KINDS = config(\"layer_types\", [\"global\", \"local\"]);\n\
         output y = repeat i in 0..len(KINDS) with h = x {{ if item(KINDS, i) == \"local\" {{ h * 2.0 }} else {{ h + 1.0 }} }};\n"
    );
    // The default: global (+1), then local (×2).
    assert_eq!(run(&src, &Config::new(), vec![1.0]), vec![4.0]);
    let cfg: Config = [(
        "layer_types".to_string(),
        serde_json::json!(["local", "local", "global"]),
    )]
    .into_iter()
    .collect();
    assert_eq!(run(&src, &cfg, vec![1.0]), vec![5.0]);
    let bad = format!("{HEAD}output y = x * item([1.0, 2.0], 2);\n");
    let e = load_str("t.seq", &bad).unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
}

#[test]
fn is_list_tells_a_list_from_a_scalar_config_field() {
    // A field that may be a per-layer list or one value for every layer (HF's
    // `attention_window`): only the branch taken is lowered, so `item` never sees the int.
    let src = format!(
        "{HEAD}const W = config(\"window\", [2, 3]);\n\
         fn w(i) {{ if is_list(W) {{ item(W, i) }} else {{ W }} }}\n\
         output y = repeat i in 0..2 with h = x {{ h * w(i) }};\n"
    );
    assert_eq!(run(&src, &Config::new(), vec![1.0]), vec![6.0]);
    let cfg: Config = [("window".to_string(), serde_json::json!(5))]
        .into_iter()
        .collect();
    assert_eq!(run(&src, &cfg, vec![1.0]), vec![25.0]);
    let e = load_str(
        "t.seq",
        &format!("{HEAD}const N = is_list();\noutput y = x;\n"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("is_list"), "{e}");
}

#[test]
fn assert_refuses_an_unsupported_config() {
    let src = format!(
        "{HEAD}const ACT = config(\"hidden_act\", \"silu\");\n\
         const OK = assert(ACT == \"silu\", \"only hidden_act = silu is supported\");\n\
         output y = x;\n"
    );
    assert!(load_str("t.seq", &src).is_ok());
    let cfg: Config = [("hidden_act".to_string(), serde_json::json!("gelu"))]
        .into_iter()
        .collect();
    let e = load_str_with("t.seq", &src, &cfg).unwrap_err();
    assert!(
        e.to_string()
            .contains("only hidden_act = silu is supported"),
        "{e}"
    );
}

#[test]
fn hf_configs_with_non_finite_floats_load() {
    // HF writes Python's bare Infinity into config.json (e.g. Mamba-2's time_step_limit).
    let dir = std::env::temp_dir().join(format!("seqc-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("config.json");
    std::fs::write(
        &p,
        r#"{"time_step_limit": [0.0, Infinity], "name": "Infinity in a string", "x": -Infinity}"#,
    )
    .unwrap();
    let cfg = crate::frontend::read_config(&p).unwrap();
    assert_eq!(cfg["name"], serde_json::json!("Infinity in a string"));
    let src = format!(
        "{HEAD}const LIM = config(\"time_step_limit\", [0.0, 1.0]);\n\
         const OK = assert(item(LIM, 1) > 1e300, \"upper limit is infinite\");\n\
         output y = minimum(x, item(LIM, 1)) + maximum(x, config(\"x\", 0.0));\n"
    );
    assert_eq!(run(&src, &cfg, vec![2.0]), vec![4.0]);
    std::fs::remove_dir_all(&dir).ok();
}
