//! The `seqc` command-line tool: `check`, `compile`, `dump`, `info`, `run`, `stats`, `bench`.

mod bench;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use seqc::frontend;
use seqc::ir::{DimBindings, Graph};
use seqc_runtime::{HostTensor, io};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "seqc",
    version,
    about = "A compiler for sequence-model architectures"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Stage {
    /// The parsed spec, re-printed canonically.
    Ast,
    /// The tensor IR after lowering and verification.
    Ir,
    /// The tensor IR after the e-graph optimizer, costed at --dims.
    Opt,
    /// The kernel IR (loop nests, schedule tags, buffers and live ranges) of the IR.
    Kernels,
    /// The LLVM IR the CPU backend generates for those kernels, before optimisation.
    Llvm,
    /// The PTX the GPU backend generates for those kernels (for --arch).
    Ptx,
}

/// The IR stages `seqc stats` can measure.
#[derive(Clone, Copy, ValueEnum)]
enum IrStage {
    /// The tensor IR after lowering and verification.
    Ir,
    /// The tensor IR after the e-graph optimizer.
    Opt,
}

impl IrStage {
    fn name(self) -> &'static str {
        match self {
            IrStage::Ir => "ir",
            IrStage::Opt => "opt",
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    /// The reference interpreter (the numerical oracle).
    Interp,
    /// Compiled for this CPU through LLVM, run by the runtime (a temporary artifact).
    Cpu,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Target {
    /// The host CPU (x86-64), through LLVM.
    Cpu,
    /// NVIDIA GPUs: one PTX module per --gpu-arch, through LLVM's NVPTX target.
    Ptx,
}

/// The machine the optimizer's cost model estimates for (`opt::Target`).
#[derive(Clone, Copy, ValueEnum)]
enum CostTarget {
    /// This project's build machine (2 cores, AVX-512).
    Cpu,
    /// An NVIDIA H100 SXM (the cost model's GPU figures).
    H100,
}

impl CostTarget {
    fn target(self) -> seqc::opt::Target {
        match self {
            CostTarget::Cpu => seqc::opt::Target::cpu(),
            CostTarget::H100 => seqc::opt::Target::h100(),
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Check a spec: prints `ok`, or its diagnostics and exits with status 1.
    Check {
        file: PathBuf,
        /// Config fields the spec reads with `config(..)` (e.g. an HF config.json).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print a stage's canonical text on stdout.
    Dump {
        file: PathBuf,
        #[arg(long, value_enum, default_value = "ir")]
        stage: Stage,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Dims the optimizer costs at, as NAME=VALUE,… (default B=1, T=4096, others 1).
        #[arg(long, default_value = "")]
        dims: String,
        /// With --stage opt: append each phase's time, stop reason, e-graph size and the
        /// rules that fired, as `//` comment lines.
        #[arg(long)]
        explain: bool,
        /// With --stage opt: the machine the cost model estimates for.
        #[arg(long, value_enum, default_value = "cpu")]
        target: CostTarget,
        /// With --stage llvm: the CPU to generate code for (see `compile --cpu`).
        #[arg(long, default_value = "native")]
        cpu: String,
        /// With --stage ptx: the GPU architecture (`sm_80` or `sm_90`).
        #[arg(long, default_value = "sm_90")]
        arch: String,
    },
    /// Compile a spec into an artifact directory (manifest, shared object, optional dumps).
    Compile {
        file: PathBuf,
        /// What to generate code for: `cpu`, `ptx` or both (`cpu,ptx`).
        #[arg(long, value_enum, value_delimiter = ',', default_value = "cpu")]
        target: Vec<Target>,
        /// With a `ptx` target: the GPU architectures, one PTX module each.
        #[arg(long, value_delimiter = ',', default_value = "sm_80,sm_90")]
        gpu_arch: Vec<String>,
        /// Dims the optimizer costs at, as NAME=VALUE,… (default B=1, T=4096, others 1).
        #[arg(long, default_value = "")]
        dims: String,
        /// Skip the e-graph optimizer.
        #[arg(long)]
        no_opt: bool,
        /// Also write the kernel IR and LLVM IR into the artifact.
        #[arg(long)]
        dumps: bool,
        /// The CPU to generate code for: `native` (this machine) or an x86-64 level
        /// (`x86-64`, `x86-64-v2`, `x86-64-v3`, `x86-64-v4`).
        #[arg(long, default_value = "native")]
        cpu: String,
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print FLOPs, bytes moved, the largest intermediate and the estimated time on --target
    /// at --dims as JSON.
    Stats {
        file: PathBuf,
        /// Dims as NAME=VALUE,… (default B=1, T=4096, others 1).
        #[arg(long, default_value = "")]
        dims: String,
        #[arg(long, value_enum, default_value = "ir")]
        stage: IrStage,
        /// The machine the cost model estimates for (and, with --stage opt, optimises for).
        #[arg(long, value_enum, default_value = "cpu")]
        target: CostTarget,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the spec's dims, params, inputs and outputs as JSON.
    Info {
        file: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run a spec. Weights and inputs not given are filled with seeded random values.
    Run {
        file: PathBuf,
        #[arg(long, value_enum, default_value = "interp")]
        backend: Backend,
        /// Dims as NAME=VALUE,NAME=VALUE (e.g. T=64,B=1).
        #[arg(long, default_value = "")]
        dims: String,
        /// Weights (safetensors), keyed by param name.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Inputs (safetensors), keyed by input name.
        #[arg(long)]
        inputs: Option<PathBuf>,
        /// Seed for tensors that are filled randomly.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Write the outputs to this safetensors file.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Config fields the spec reads with `config(..)` (e.g. an HF config.json).
        #[arg(long)]
        config: Option<PathBuf>,
        /// With --backend cpu: skip the e-graph optimizer.
        #[arg(long)]
        no_opt: bool,
        /// With --backend cpu: the CPU to generate code for (see `compile --cpu`).
        #[arg(long, default_value = "native")]
        cpu: String,
        /// Also write the weights the run used (given or seeded) to this safetensors file.
        #[arg(long)]
        save_weights: Option<PathBuf>,
        /// Also write the inputs the run used (given or seeded) to this safetensors file.
        #[arg(long)]
        save_inputs: Option<PathBuf>,
    },
    /// Time a spec compiled for this CPU: compile once, fill what is not given with seeded
    /// random values, run --warmup untimed and --iters timed calls; prints JSON with the
    /// median and minimum seconds per call and the compiled graph's FLOPs and GFLOP/s.
    Bench {
        file: PathBuf,
        /// Dims as NAME=VALUE,NAME=VALUE (e.g. T=4096,B=1).
        #[arg(long, default_value = "")]
        dims: String,
        #[arg(long)]
        weights: Option<PathBuf>,
        #[arg(long)]
        inputs: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Skip the e-graph optimizer.
        #[arg(long)]
        no_opt: bool,
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        #[arg(long, default_value_t = 10)]
        iters: usize,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// The CPU to generate code for: `native` (this machine) or an x86-64 level
        /// (`x86-64`, `x86-64-v2`, `x86-64-v3`, `x86-64-v4`).
        #[arg(long, default_value = "native")]
        cpu: String,
    },
}

/// `print!` to stdout returning the write's result, so that a closed pipe (`seqc info X |
/// head`) ends the command quietly instead of panicking as `print!` does.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `println!` to stdout returning the write's result (see `out!`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        // The reader of stdout went away: nothing left to say to anyone.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Loads a spec, printing its diagnostics on failure.
fn load(file: &Path, config: &Option<PathBuf>) -> Result<Option<Graph>> {
    let cfg = match config {
        Some(p) => frontend::read_config(p).map_err(anyhow::Error::msg)?,
        None => frontend::Config::new(),
    };
    Ok(match frontend::load_file_with(file, &cfg) {
        Ok(g) => Some(g),
        Err(e) => {
            eprint!("{}", e.render(std::io::stderr().is_terminal()));
            None
        }
    })
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Check { file, config } => {
            let Some(g) = load(&file, &config)? else {
                return Ok(ExitCode::FAILURE);
            };
            outln!(
                "ok: {} ({} dims, {} params, {} inputs, {} outputs, {} nodes)",
                file.display(),
                g.dims.len(),
                g.params().count(),
                g.inputs().count(),
                g.outputs.len(),
                g.nodes.len()
            )?;
        }
        Cmd::Dump {
            file,
            stage,
            config,
            dims,
            explain,
            target,
            cpu,
            arch,
        } => match stage {
            Stage::Ast | Stage::Ir | Stage::Kernels | Stage::Llvm | Stage::Ptx
                if explain || !dims.is_empty() || !matches!(target, CostTarget::Cpu) =>
            {
                bail!("--dims, --explain and --target apply to --stage opt");
            }
            _ if cpu != "native" && !matches!(stage, Stage::Llvm) => {
                bail!("--cpu applies to --stage llvm");
            }
            Stage::Ast => {
                let src = match frontend::read_source(&file) {
                    Ok(s) => s,
                    Err(e) => {
                        eprint!("{}", e.render(std::io::stderr().is_terminal()));
                        return Ok(ExitCode::FAILURE);
                    }
                };
                match frontend::parse(&file.display().to_string(), &src) {
                    Ok(p) => out!("{}", seqc::syntax::print::print_program(&p))?,
                    Err(e) => {
                        eprint!("{}", e.render(std::io::stderr().is_terminal()));
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
            Stage::Ir => {
                let Some(g) = load(&file, &config)? else {
                    return Ok(ExitCode::FAILURE);
                };
                out!("{}", seqc::ir::print::print_graph(&g))?;
            }
            Stage::Kernels | Stage::Llvm | Stage::Ptx => {
                let Some(g) = load(&file, &config)? else {
                    return Ok(ExitCode::FAILURE);
                };
                let p = seqc::kernel::lower(&g)?;
                match stage {
                    Stage::Kernels => out!("{}", seqc::kernel::print::print_program(&p))?,
                    Stage::Ptx => out!("{}", seqc::codegen::ptx::ptx(&p, &arch)?)?,
                    _ => {
                        let t = seqc::codegen::cpu::cpu_target(&cpu)?;
                        out!("{}", seqc::codegen::cpu::llvm_ir_for(&p, false, &t)?)?
                    }
                }
            }
            Stage::Opt => {
                let Some(g) = load(&file, &config)? else {
                    return Ok(ExitCode::FAILURE);
                };
                let (opt, report) = optimize(&g, &dims, target.target())?;
                out!("{}", seqc::ir::print::print_graph(&opt))?;
                if explain {
                    out!("{}", report.explain())?;
                }
            }
        },
        Cmd::Compile {
            file,
            target,
            gpu_arch,
            dims,
            no_opt,
            dumps,
            cpu,
            output,
            config,
        } => {
            let targets = seqc::codegen::artifact::Targets {
                cpu: if target.contains(&Target::Cpu) {
                    Some(seqc::codegen::cpu::cpu_target(&cpu)?)
                } else {
                    None
                },
                gpu: if target.contains(&Target::Ptx) {
                    gpu_arch
                } else {
                    Vec::new()
                },
            };
            let Some(g) = load(&file, &config)? else {
                return Ok(ExitCode::FAILURE);
            };
            // One program serves every target: costed for the CPU when it is one of them,
            // else for the GPU (the cost model's H100).
            let cost = if targets.cpu.is_some() {
                seqc::opt::Target::cpu()
            } else {
                seqc::opt::Target::h100()
            };
            let g = if no_opt {
                g
            } else {
                optimize_for(&g, &dims, cost)?
            };
            let m = seqc::codegen::artifact::write_artifact_targets(
                &g,
                &spec_hash(&file, &config)?,
                &output,
                dumps,
                &targets,
            )?;
            let mut target: Vec<String> = m
                .cpu
                .iter()
                .map(|c| format!("{} {}", c.target.triple, c.target.cpu))
                .collect();
            target.extend(m.gpu.iter().map(|g| {
                let archs: Vec<&str> = g.modules.iter().map(|m| m.arch.as_str()).collect();
                format!("{} {}", seqc::codegen::ptx::TRIPLE, archs.join(","))
            }));
            let target = target.join(" + ");
            eprintln!(
                "compiled {} to {} ({} kernels, {} buffers, target {target})",
                file.display(),
                output.display(),
                m.kernels.len(),
                m.buffers.len(),
            );
        }
        Cmd::Stats {
            file,
            dims,
            stage,
            target,
            config,
        } => {
            let Some(g) = load(&file, &config)? else {
                return Ok(ExitCode::FAILURE);
            };
            let target = target.target();
            let g = match stage {
                IrStage::Ir => g,
                IrStage::Opt => optimize(&g, &dims, target.clone())?.0,
            };
            let bound = seqc::opt::default_dims(&g, &checked_dims(&g, &dims)?);
            let s = seqc::opt::stats(&g, &bound);
            let time = seqc::opt::graph_time(&g, &bound, &target);
            let out = serde_json::json!({
                "flops": s.flops,
                "bytes": s.bytes,
                "largest_intermediate_bytes": s.largest_intermediate_bytes,
                "load_time_flops": s.load_time_flops,
                "load_time_bytes": s.load_time_bytes,
                "target": target.name,
                "est_time_s": time,
                "stage": stage.name(),
                "dims": bound,
            });
            outln!("{}", serde_json::to_string_pretty(&out)?)?;
        }
        Cmd::Info { file, config } => {
            let Some(g) = load(&file, &config)? else {
                return Ok(ExitCode::FAILURE);
            };
            outln!("{}", serde_json::to_string_pretty(&seqc::info::info(&g))?)?;
        }
        Cmd::Run {
            file,
            backend,
            dims,
            weights,
            inputs,
            seed,
            output,
            config,
            no_opt,
            cpu,
            save_weights,
            save_inputs,
        } => {
            if !matches!(backend, Backend::Cpu) && cpu != "native" {
                bail!("--cpu applies to --backend cpu");
            }
            let cpu = seqc::codegen::cpu::cpu_target(&cpu)?;
            let Some(g) = load(&file, &config)? else {
                return Ok(ExitCode::FAILURE);
            };
            let (bound, tensors) = prepare(&g, &dims, &weights, &inputs, seed)?;
            let params: Vec<&str> = g.params().map(|(n, _)| n).collect();
            let input_names: Vec<&str> = g.inputs().map(|(n, _)| n).collect();
            for (path, names, kind) in [
                (&save_weights, &params, "weights"),
                (&save_inputs, &input_names, "inputs"),
            ] {
                if let Some(p) = path {
                    save_tensors(p, names, &tensors)
                        .with_context(|| format!("saving the {kind} to {}", p.display()))?;
                }
            }
            let (outs, name) = match backend {
                Backend::Interp => (seqc::interp::run(&g, &bound, &tensors)?, "interp"),
                Backend::Cpu => {
                    let g = if no_opt {
                        g
                    } else {
                        let d: Vec<String> =
                            bound.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        optimize_for_cpu(&g, &d.join(","))?
                    };
                    (
                        run_cpu(&g, &bound, &tensors, &spec_hash(&file, &config)?, &cpu)?,
                        "cpu",
                    )
                }
            };
            let dims_s: Vec<String> = bound.iter().map(|(k, v)| format!("{k}={v}")).collect();
            eprintln!("ran {} with {name} at {}", file.display(), dims_s.join(","));
            for (name, t) in &outs {
                outln!("{}", summarize(name, t))?;
            }
            if let Some(o) = output {
                io::write_safetensors(&o, &outs)
                    .with_context(|| format!("writing outputs to {}", o.display()))?;
                eprintln!("wrote {} output(s) to {}", outs.len(), o.display());
            }
        }
        Cmd::Bench {
            file,
            dims,
            weights,
            inputs,
            seed,
            config,
            no_opt,
            warmup,
            iters,
            threads,
            cpu,
        } => {
            let cpu = seqc::codegen::cpu::cpu_target(&cpu)?;
            let Some(g) = load(&file, &config)? else {
                return Ok(ExitCode::FAILURE);
            };
            let (bound, tensors) = prepare(&g, &dims, &weights, &inputs, seed)?;
            let g = if no_opt {
                g
            } else {
                let d: Vec<String> = bound.iter().map(|(k, v)| format!("{k}={v}")).collect();
                optimize_for_cpu(&g, &d.join(","))?
            };
            let r = bench::run(
                &g,
                &bound,
                &tensors,
                &spec_hash(&file, &config)?,
                &bench::Settings {
                    warmup,
                    iters,
                    threads,
                    cpu,
                },
            )?;
            let mut j = serde_json::to_value(&r)?;
            j["spec"] = file.display().to_string().into();
            outln!("{}", serde_json::to_string_pretty(&j)?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The dims and tensors of a run: --weights and --inputs read, dims bound from their shapes
/// and `dims`, everything not given filled with seeded random values (noted on stderr).
fn prepare(
    g: &Graph,
    dims: &str,
    weights: &Option<PathBuf>,
    inputs: &Option<PathBuf>,
    seed: u64,
) -> Result<(DimBindings, BTreeMap<String, HostTensor>)> {
    let given = parse_dims(dims)?;
    let mut tensors = BTreeMap::new();
    for (path, kind) in [(weights, "weights"), (inputs, "inputs")] {
        if let Some(p) = path {
            let t = io::read_safetensors(p)
                .with_context(|| format!("reading {kind} from {}", p.display()))?;
            for (name, v) in t {
                if tensors.insert(name.clone(), v).is_some() {
                    bail!("tensor `{name}` is given by both --weights and --inputs");
                }
            }
        }
    }
    let bound = seqc::bind::bind_dims(g, &given, &tensors)?;
    let filled = seqc::bind::fill_missing(g, &bound, &mut tensors, seed)?;
    if !filled.is_empty() {
        eprintln!(
            "note: filled {} tensor(s) with seeded random values (seed {seed}): {}",
            filled.len(),
            filled.join(", ")
        );
    }
    seqc::bind::check_tensors(g, &bound, &tensors)?;
    Ok((bound, tensors))
}

/// Writes the tensors named `names` (every one of them present in `tensors`) to `path`.
fn save_tensors(path: &Path, names: &[&str], tensors: &BTreeMap<String, HostTensor>) -> Result<()> {
    let picked: BTreeMap<String, HostTensor> = names
        .iter()
        .filter_map(|n| Some((n.to_string(), tensors.get(*n)?.clone())))
        .collect();
    io::write_safetensors(path, &picked)?;
    Ok(())
}

/// FNV-1a 64 of the spec source and its config file, if any.
fn spec_hash(file: &Path, config: &Option<PathBuf>) -> Result<String> {
    let mut bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    if let Some(c) = config {
        bytes.extend(std::fs::read(c).with_context(|| format!("reading {}", c.display()))?);
    }
    Ok(seqc_runtime::artifact::hash_bytes(&bytes))
}

/// Compiles `g` into a temporary artifact and runs it through the runtime.
fn run_cpu(
    g: &Graph,
    dims: &DimBindings,
    tensors: &BTreeMap<String, HostTensor>,
    hash: &str,
    cpu: &seqc::codegen::cpu::HostTarget,
) -> Result<BTreeMap<String, HostTensor>> {
    let dir = tempfile::tempdir().context("creating a temporary artifact directory")?;
    seqc::codegen::artifact::write_artifact_for(g, hash, dir.path(), false, cpu)?;
    let (params, inputs) = bench::params_and_inputs(g, tensors);
    let model =
        seqc_runtime::Model::load(dir.path(), seqc_runtime::Weights::from_tensors(&params)?)?;
    Ok(model.run(&inputs, dims)?)
}

/// `--dims` for the optimizer and `stats`: every name must be a dim of the graph.
fn checked_dims(g: &Graph, dims: &str) -> Result<DimBindings> {
    let d = parse_dims(dims)?;
    if let Some(k) = d.keys().find(|k| !g.dims.contains(k)) {
        bail!(
            "--dims names `{k}`, which the spec does not declare (its dims: {})",
            g.dims.join(", ")
        );
    }
    if let Some((k, v)) = d.iter().find(|(_, v)| **v < 1) {
        bail!("--dims: `{k}` is {v}; dims are at least 1");
    }
    Ok(d)
}

/// Runs the e-graph optimizer with costs evaluated at `dims`.
fn optimize(
    g: &Graph,
    dims: &str,
    target: seqc::opt::Target,
) -> Result<(Graph, seqc::opt::OptReport)> {
    let opts = seqc::opt::OptOptions {
        dims: checked_dims(g, dims)?,
        target,
        ..Default::default()
    };
    Ok(seqc::opt::optimize(g, &opts)?)
}

/// The optimizer as the CPU backend's compile path runs it: avoiding operators the backend
/// cannot lower yet (`kernel::UNSUPPORTED_OPT_OPS`).
fn optimize_for_cpu(g: &Graph, dims: &str) -> Result<Graph> {
    optimize_for(g, dims, seqc::opt::Target::cpu())
}

/// The optimizer as the compile path runs it, costing for `target` (avoiding what the
/// backends cannot lower).
fn optimize_for(g: &Graph, dims: &str, target: seqc::opt::Target) -> Result<Graph> {
    let opts = seqc::opt::OptOptions {
        dims: checked_dims(g, dims)?,
        target,
        avoid_ops: seqc::kernel::UNSUPPORTED_OPT_OPS.to_vec(),
        ..Default::default()
    };
    Ok(seqc::opt::optimize(g, &opts)?.0)
}

/// Parses `T=64,B=1`.
fn parse_dims(s: &str) -> Result<DimBindings> {
    let mut out = DimBindings::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            bail!("--dims: expected NAME=VALUE, found `{part}`");
        };
        let v: i64 = v.trim().parse().with_context(|| {
            format!(
                "--dims: `{}` is not an integer (for `{}`)",
                v.trim(),
                k.trim()
            )
        })?;
        if out.insert(k.trim().to_string(), v).is_some() {
            bail!("--dims: `{}` is given twice", k.trim());
        }
    }
    Ok(out)
}

/// One line per output: name, dtype, shape, a few statistics and the first values.
fn summarize(name: &str, t: &HostTensor) -> String {
    let v = t.to_f64_vec();
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let absmax = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let head: Vec<String> = v.iter().take(6).map(|x| format!("{x:.6}")).collect();
    format!(
        "{name}: {}{:?} mean={mean:.6} absmax={absmax:.6} [{}{}]",
        t.dtype(),
        t.shape,
        head.join(", "),
        if v.len() > 6 { ", …" } else { "" }
    )
}
