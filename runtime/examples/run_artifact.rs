//! Runs a compiled artifact through the embeddable runtime (no compiler, no LLVM):
//!
//! ```text
//! seqc compile ir-specs/linear_attention.seq -o /tmp/la.seqc
//! cargo run -p seqc-runtime --example run_artifact -- /tmp/la.seqc WEIGHTS.safetensors INPUTS.safetensors
//! ```
//!
//! Weights are memory-mapped; dims are bound from the inputs' shapes; the outputs are printed,
//! then the median wall time of `REPEAT` further runs (env var, default 0: none).

use seqc_runtime::{DimValues, Model, Weights, io};
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [artifact, weights, inputs] = args.as_slice() else {
        eprintln!("usage: run_artifact ARTIFACT_DIR WEIGHTS.safetensors INPUTS.safetensors");
        return ExitCode::FAILURE;
    };
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let model = Model::load(Path::new(artifact), Weights::open(&[weights])?)?;
        let inputs = io::read_safetensors(Path::new(inputs))?;
        let outputs = model.run(&inputs, &DimValues::new())?;
        for (name, t) in &outputs {
            let v = t.to_f64_vec();
            let head: Vec<String> = v.iter().take(4).map(|x| format!("{x:.6}")).collect();
            println!(
                "{name}: {}{:?} [{}, …]",
                t.dtype(),
                t.shape,
                head.join(", ")
            );
        }
        let repeat: usize = std::env::var("REPEAT")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        let mut times: Vec<f64> = (0..repeat)
            .map(|_| {
                let t0 = std::time::Instant::now();
                model
                    .run(&inputs, &DimValues::new())
                    .map(|_| t0.elapsed().as_secs_f64())
            })
            .collect::<Result<_, _>>()?;
        times.sort_by(f64::total_cmp);
        if let Some(m) = times.get(times.len() / 2) {
            println!("median of {repeat} runs: {:.3} ms", m * 1e3);
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
