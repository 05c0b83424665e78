//! Benchmark of the e-graph optimizer's compile time (issue #4, item 6): every spec in
//! `ir-specs/` at the default limits (budget 2 s each) and 24-layer whole models with
//! realistic sizes (budget 10 s each). Run with
//! `cargo bench -p seqc-tests --bench opt_compile` (release build); it prints one line per
//! case (median and max of the runs, the phases' stop reasons) and exits non-zero if a case
//! exceeds its budget. Not part of `cargo test`: timings are not tests.

use seqc::frontend::{Config, load_file, load_file_with};
use seqc::ir::Graph;
use seqc::opt::{OptOptions, optimize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const RUNS: usize = 5;
const SPEC_BUDGET: Duration = Duration::from_secs(2);
const MODEL_BUDGET: Duration = Duration::from_secs(10);

/// A whole-model case: the spec, the fixture whose HF config it starts from, and the fields
/// overridden to make it a 24-layer model of realistic width.
struct ModelCase {
    name: &'static str,
    spec: &'static str,
    fixture: &'static str,
    overrides: &'static [(&'static str, i64)],
}

const MODELS: &[ModelCase] = &[
    ModelCase {
        name: "llama-24L (hidden 2048, 32 heads, 4 KV heads, 5632 MLP)",
        spec: "hf_llama.seq",
        fixture: "hf_llama",
        overrides: &[
            ("num_hidden_layers", 24),
            ("hidden_size", 2048),
            ("intermediate_size", 5632),
            ("num_attention_heads", 32),
            ("num_key_value_heads", 4),
            ("head_dim", 64),
            ("vocab_size", 32000),
        ],
    },
    ModelCase {
        name: "mistral-24L (hidden 4096, sliding window 4096)",
        spec: "hf_mistral.seq",
        fixture: "hf_mistral",
        overrides: &[
            ("num_hidden_layers", 24),
            ("hidden_size", 4096),
            ("intermediate_size", 14336),
            ("num_attention_heads", 32),
            ("num_key_value_heads", 8),
            ("head_dim", 128),
            ("vocab_size", 32000),
            ("sliding_window", 4096),
        ],
    },
    ModelCase {
        name: "mamba-24L (mamba-130m sizes)",
        spec: "hf_mamba.seq",
        fixture: "hf_mamba",
        overrides: &[
            ("num_hidden_layers", 24),
            ("hidden_size", 768),
            ("intermediate_size", 1536),
            ("state_size", 16),
            ("time_step_rank", 48),
            ("vocab_size", 50280),
        ],
    },
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Optimises `g` RUNS times; returns (median, max, the last run's phase stop reasons).
fn measure(g: &Graph) -> Result<(Duration, Duration, String), String> {
    let mut times = Vec::with_capacity(RUNS);
    let mut stops = String::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let (_, report) = optimize(g, &OptOptions::default()).map_err(|e| e.to_string())?;
        times.push(t.elapsed());
        stops = report
            .phases
            .iter()
            .map(|p| format!("{}: {} ({} e-nodes)", p.name, p.stop_reason, p.enodes))
            .collect::<Vec<_>>()
            .join("; ");
    }
    times.sort();
    Ok((times[RUNS / 2], times[RUNS - 1], stops))
}

fn model_config(case: &ModelCase) -> Result<Config, String> {
    let meta_path = root()
        .join("tests/fixtures")
        .join(format!("{}.json", case.fixture));
    let text =
        std::fs::read_to_string(&meta_path).map_err(|e| format!("{}: {e}", meta_path.display()))?;
    let meta: serde_json::Value = serde_json::from_str(&seqc::frontend::encode_non_finite(&text))
        .map_err(|e| format!("{}: {e}", meta_path.display()))?;
    let Some(serde_json::Value::Object(cfg)) = meta.get("config") else {
        return Err(format!("{}: no `config` object", meta_path.display()));
    };
    let mut config: Config = cfg.clone().into_iter().collect();
    for (k, v) in case.overrides {
        config.insert((*k).to_string(), serde_json::Value::from(*v));
    }
    Ok(config)
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument filters cases by substring.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f));
    let mut over = Vec::new();
    let mut failed = Vec::new();

    let mut specs: Vec<PathBuf> = std::fs::read_dir(root().join("ir-specs"))
        .expect("ir-specs/ is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seq"))
        .collect();
    specs.sort();
    println!("optimizer compile time, {RUNS} runs each, default limits (median / max)");
    for path in &specs {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !wanted(&name) {
            continue;
        }
        let result = load_file(path)
            .map_err(|e| format!("{e:?}"))
            .and_then(|g| measure(&g).map(|m| (g.nodes.len(), m)));
        report(&name, result, SPEC_BUDGET, &mut over, &mut failed);
    }
    for case in MODELS {
        if !wanted(case.name) {
            continue;
        }
        let result = model_config(case).and_then(|cfg| {
            let g = load_file_with(&root().join("ir-specs").join(case.spec), &cfg)
                .map_err(|e| format!("{e:?}"))?;
            measure(&g).map(|m| (g.nodes.len(), m))
        });
        report(case.name, result, MODEL_BUDGET, &mut over, &mut failed);
    }
    if !over.is_empty() || !failed.is_empty() {
        eprintln!("over budget: {over:?}; failed: {failed:?}");
        std::process::exit(1);
    }
    println!("all cases within budget");
}

type Measured = Result<(usize, (Duration, Duration, String)), String>;

fn report(
    name: &str,
    result: Measured,
    budget: Duration,
    over: &mut Vec<String>,
    failed: &mut Vec<String>,
) {
    match result {
        Ok((nodes, (median, max, stops))) => {
            let verdict = if max <= budget { "ok" } else { "OVER BUDGET" };
            println!(
                "{name:<60} {nodes:>6} IR nodes  {:>9.1} ms / {:>9.1} ms  {verdict}  [{stops}]",
                median.as_secs_f64() * 1e3,
                max.as_secs_f64() * 1e3
            );
            if max > budget {
                over.push(name.to_string());
            }
        }
        Err(e) => {
            println!("{name:<60} FAILED: {e}");
            failed.push(name.to_string());
        }
    }
}
