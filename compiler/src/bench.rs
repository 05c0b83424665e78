//! `seqc bench`: times a graph compiled for this CPU through the runtime, the way an app
//! calls it (compiled once, loaded once, called repeatedly into the same output tensors), and
//! reports per-call times, the compiled graph's FLOPs (the cost model's count) and the
//! process's peak resident memory.

use anyhow::{Context, Result};
use seqc::ir::{DimBindings, Graph};
use seqc_runtime::{HostTensor, Model, Options, Weights};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

pub struct Settings {
    pub warmup: usize,
    pub iters: usize,
    pub threads: Option<usize>,
    /// The CPU the code is generated for.
    pub cpu: seqc::codegen::cpu::HostTarget,
}

#[derive(Serialize)]
pub struct Report {
    pub dims: DimBindings,
    /// The CPU the code was generated for (`native`: this machine's name as LLVM knows it).
    pub cpu: String,
    pub threads: usize,
    pub iters: usize,
    /// Seconds per call: median and minimum over the timed calls.
    pub median_s: f64,
    pub min_s: f64,
    /// Every timed call, in order.
    pub times_s: Vec<f64>,
    /// FLOPs of the compiled graph at these dims (cost-model count, load-time work excluded).
    pub flops: u64,
    pub gflops_per_s: f64,
    /// The runtime's arena for one call at these dims: every intermediate and output buffer,
    /// placed by liveness (the memory the compiled model itself needs per call).
    pub arena_bytes: usize,
    /// Peak resident set of this process (Linux `VmHWM`), which includes the compiler's own
    /// memory and the filled tensors; `None` where /proc is absent.
    pub peak_rss_bytes: Option<u64>,
}

pub fn run(
    g: &Graph,
    dims: &DimBindings,
    tensors: &BTreeMap<String, HostTensor>,
    hash: &str,
    s: &Settings,
) -> Result<Report> {
    anyhow::ensure!(s.iters >= 1, "--iters must be at least 1");
    let dir = tempfile::tempdir().context("creating a temporary artifact directory")?;
    seqc::codegen::artifact::write_artifact_for(g, hash, dir.path(), false, &s.cpu)?;
    let (params, inputs) = params_and_inputs(g, tensors);
    let opts = Options {
        threads: s.threads,
        ..Options::default()
    };
    let model = Model::load_with(dir.path(), Weights::from_tensors(&params)?, &opts)?;
    // The outputs are kept across calls (`run_into`), as an app calling in a loop would keep
    // them: each call writes into the same memory instead of mapping fresh pages.
    let mut out = BTreeMap::new();
    for _ in 0..s.warmup {
        model.run_into(&inputs, dims, &mut out)?;
    }
    let mut times = Vec::with_capacity(s.iters);
    for _ in 0..s.iters {
        let t0 = Instant::now();
        model.run_into(&inputs, dims, &mut out)?;
        times.push(t0.elapsed().as_secs_f64());
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let flops = seqc::opt::stats(g, dims).flops;
    Ok(Report {
        dims: dims.clone(),
        cpu: s.cpu.cpu.clone(),
        threads: model.threads(),
        iters: s.iters,
        median_s: median,
        min_s: sorted[0],
        times_s: times,
        flops,
        gflops_per_s: flops as f64 / median / 1e9,
        arena_bytes: model.arena_bytes(dims)?,
        peak_rss_bytes: peak_rss(),
    })
}

fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `tensors` split into the graph's params and its inputs (others dropped).
pub fn params_and_inputs(
    g: &Graph,
    tensors: &BTreeMap<String, HostTensor>,
) -> (BTreeMap<String, HostTensor>, BTreeMap<String, HostTensor>) {
    let pick = |names: Vec<&str>| -> BTreeMap<String, HostTensor> {
        names
            .into_iter()
            .filter_map(|n| tensors.get(n).map(|t| (n.to_string(), t.clone())))
            .collect()
    };
    (
        pick(g.params().map(|(n, _)| n).collect()),
        pick(g.inputs().map(|(n, _)| n).collect()),
    )
}
