//! Writing a compiled artifact (the format is `seqc_runtime::artifact`'s): lower the graph to
//! kernels, generate the shared object for the host, and describe it all in the manifest —
//! entry signature with symbolic dims, parameters, buffers with their live ranges, kernels.

use super::cpu::{self, CodegenError};
use super::ptx;
use crate::ir::dim::Atom;
use crate::ir::{BinaryOp, DimExpr, Graph};
use crate::kernel::{self, BufKind, Expr, KernelError, Program, Sched, Ty};
use seqc_runtime::SymExpr;
use seqc_runtime::artifact::{
    ArtifactError, BufferKind, BufferSig, CpuSig, FORMAT_VERSION, FileSig, GpuSig, KernelSig,
    LIBRARY_FILE, LaunchSig, Manifest, PtxModuleSig, TargetSig, TensorSig, hash_bytes,
};
use std::path::Path;
use thiserror::Error;

/// Why an artifact could not be built.
#[derive(Debug, Error)]
pub enum BuildError {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Codegen(#[from] CodegenError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// A canonical polynomial in the runtime's form.
pub fn sym(d: &DimExpr) -> SymExpr {
    let mut terms = Vec::new();
    for (m, c) in d.terms() {
        let mut factors = Vec::new();
        if c != 1 || m.is_empty() {
            factors.push(SymExpr::Const(c));
        }
        for (a, p) in m {
            let x = match a {
                Atom::Sym(s) => SymExpr::Dim(s.clone()),
                Atom::FloorDiv(e, k) => SymExpr::FloorDiv(Box::new(sym(e)), *k),
                Atom::Mod(e, k) => SymExpr::Mod(Box::new(sym(e)), *k),
            };
            factors.extend(std::iter::repeat_n(x, *p as usize));
        }
        terms.push(if factors.len() == 1 {
            factors.pop().expect("one")
        } else {
            SymExpr::Mul(factors)
        });
    }
    match terms.len() {
        0 => SymExpr::Const(0),
        1 => terms.pop().expect("one"),
        _ => SymExpr::Add(terms),
    }
}

/// A kernel's loop extent (i64 index arithmetic over dims) in the runtime's form.
fn sym_of_extent(e: &Expr, dims: &[String]) -> Option<SymExpr> {
    Some(match e {
        Expr::Int(v, Ty::I64) => SymExpr::Const(*v),
        Expr::Dim(n) => SymExpr::Dim(dims.get(*n)?.clone()),
        Expr::Binary {
            op,
            ty: Ty::I64,
            a,
            b,
        } => {
            let (x, y) = (sym_of_extent(a, dims)?, sym_of_extent(b, dims)?);
            match (op, &y) {
                (BinaryOp::Add, _) => SymExpr::Add(vec![x, y]),
                (BinaryOp::Sub, _) => {
                    SymExpr::Add(vec![x, SymExpr::Mul(vec![SymExpr::Const(-1), y])])
                }
                (BinaryOp::Mul, _) => SymExpr::Mul(vec![x, y]),
                (BinaryOp::Div, SymExpr::Const(k)) => SymExpr::FloorDiv(Box::new(x), *k),
                (BinaryOp::Rem, SymExpr::Const(k)) => SymExpr::Mod(Box::new(x), *k),
                _ => return None,
            }
        }
        _ => return None,
    })
}

/// The manifest of a lowered program for `targets` (the files' hashes are filled in by the
/// caller).
pub fn manifest(
    g: &Graph,
    p: &Program,
    spec_hash: &str,
    targets: &Targets,
) -> Result<Manifest, BuildError> {
    let lives = kernel::plan::live_ranges(p);
    let buffers = p
        .buffers
        .iter()
        .enumerate()
        .map(|(i, b)| BufferSig {
            dtype: b.dtype,
            numel: sym(&b.numel()),
            kind: match &b.kind {
                BufKind::Input(n) => BufferKind::Input(n.clone()),
                BufKind::Param(n) => BufferKind::Param(n.clone()),
                BufKind::Random {
                    seed,
                    normal,
                    torch,
                } => BufferKind::Random {
                    seed: *seed,
                    normal: *normal,
                    torch: *torch,
                },
                BufKind::Temp => {
                    let l = lives
                        .iter()
                        .find(|l| l.buf.0 as usize == i)
                        .expect("temp has a range");
                    BufferKind::Arena {
                        first: l.first,
                        last: l.last,
                    }
                }
            },
        })
        .collect();
    let sig = |name: &str, b: kernel::BufId| {
        let buf = p.buffer(b);
        TensorSig {
            name: name.to_string(),
            dtype: buf.dtype,
            shape: buf.shape.iter().map(sym).collect(),
            buffer: b.0 as usize,
        }
    };
    let find = |kind: &BufKind| {
        p.buffers
            .iter()
            .position(|b| &b.kind == kind)
            .map(|i| kernel::BufId(i as u32))
    };
    let inputs = g
        .inputs()
        .filter_map(|(n, _)| find(&BufKind::Input(n.to_string())).map(|b| sig(n, b)))
        .collect();
    let params = g
        .params()
        .filter_map(|(n, _)| find(&BufKind::Param(n.to_string())).map(|b| sig(n, b)))
        .collect();
    let outputs = p.outputs.iter().map(|(n, b)| sig(n, *b)).collect();
    let mut kernels = Vec::new();
    for k in &p.kernels {
        let extent = sym_of_extent(&k.root.extent, &p.dims).ok_or_else(|| {
            CodegenError::Unsupported(format!("the loop extent of kernel {}", k.name))
        })?;
        kernels.push(KernelSig {
            symbol: k.name.clone(),
            node: k.node.to_string(),
            op: k.op.clone(),
            extent,
            parallel: k.root.sched == Sched::Parallel,
        });
    }
    let cpu = targets.cpu.as_ref().map(|target| {
        let features = target
            .features
            .split(',')
            .filter_map(|f| f.strip_prefix('+'))
            .filter(|f| seqc_runtime::model::features::host_has(f).is_some())
            .map(str::to_string)
            .collect();
        CpuSig {
            target: TargetSig {
                triple: target.triple.clone(),
                cpu: target.cpu.clone(),
                features,
            },
            library: FileSig {
                file: LIBRARY_FILE.to_string(),
                hash: String::new(),
                bytes: 0,
            },
        }
    });
    let gpu = if targets.gpu.is_empty() {
        None
    } else {
        let mut archs = targets.gpu.clone();
        archs.sort();
        archs.dedup();
        let modules = archs
            .iter()
            .map(|a| PtxModuleSig {
                arch: a.clone(),
                file: FileSig {
                    file: ptx_file(a),
                    hash: String::new(),
                    bytes: 0,
                },
            })
            .collect();
        let launches = p
            .kernels
            .iter()
            .zip(&kernels)
            .map(|(k, sig): (&kernel::Kernel, &KernelSig)| {
                let (grid, block, shared_bytes) = ptx::launch(k, &sig.extent);
                LaunchSig {
                    symbol: k.name.clone(),
                    grid,
                    block,
                    shared_bytes,
                }
            })
            .collect();
        Some(GpuSig { modules, launches })
    };
    Ok(Manifest {
        format_version: FORMAT_VERSION,
        seqc_version: env!("CARGO_PKG_VERSION").to_string(),
        spec_hash: spec_hash.to_string(),
        cpu,
        gpu,
        dims: p.dims.clone(),
        inputs,
        params,
        outputs,
        buffers,
        kernels,
    })
}

/// What an artifact holds code for: a CPU and/or GPU architectures (`sm_80`, `sm_90`).
#[derive(Clone, Debug, PartialEq)]
pub struct Targets {
    pub cpu: Option<cpu::HostTarget>,
    pub gpu: Vec<String>,
}

/// The PTX file of GPU architecture `arch` in an artifact.
pub fn ptx_file(arch: &str) -> String {
    format!("kernels.{arch}.ptx")
}

/// Compiles `g` for the host CPU into artifact directory `dir` (created if needed); with
/// `dumps`, the kernel IR and the unoptimised LLVM IR are written beside it.
pub fn write_artifact(
    g: &Graph,
    spec_hash: &str,
    dir: &Path,
    dumps: bool,
) -> Result<Manifest, BuildError> {
    write_artifact_for(g, spec_hash, dir, dumps, &cpu::host_target())
}

/// `write_artifact` for CPU `target` (see `cpu::cpu_target`).
pub fn write_artifact_for(
    g: &Graph,
    spec_hash: &str,
    dir: &Path,
    dumps: bool,
    target: &cpu::HostTarget,
) -> Result<Manifest, BuildError> {
    let targets = Targets {
        cpu: Some(target.clone()),
        gpu: Vec::new(),
    };
    write_artifact_targets(g, spec_hash, dir, dumps, &targets)
}

/// Compiles `g` for `targets` into artifact directory `dir` (created if needed): one
/// program, its shared object for the CPU and one PTX module per GPU architecture; with
/// `dumps`, the kernel IR and the unoptimised LLVM IR of each target are written beside them.
pub fn write_artifact_targets(
    g: &Graph,
    spec_hash: &str,
    dir: &Path,
    dumps: bool,
    targets: &Targets,
) -> Result<Manifest, BuildError> {
    let p = kernel::lower(g)?;
    write_program(g, &p, spec_hash, dir, dumps, targets)
}

/// [`write_artifact_targets`] for program `p`, lowered from `g` (tests pass transformed
/// programs, e.g. the GPU's expanded one, to run them on the CPU).
pub fn write_program(
    g: &Graph,
    p: &Program,
    spec_hash: &str,
    dir: &Path,
    dumps: bool,
    targets: &Targets,
) -> Result<Manifest, BuildError> {
    let io = |source| BuildError::Io {
        path: dir.display().to_string(),
        source,
    };
    if targets.cpu.is_none() && targets.gpu.is_empty() {
        return Err(CodegenError::Target("no target: expected `cpu`, `ptx` or both".into()).into());
    }
    for a in &targets.gpu {
        ptx::check_arch(a)?;
    }
    let mut m = manifest(g, p, spec_hash, targets)?;
    std::fs::create_dir_all(dir).map_err(io)?;
    let sign = |sig: &mut FileSig| -> Result<(), BuildError> {
        let bytes = std::fs::read(dir.join(&sig.file)).map_err(io)?;
        sig.hash = hash_bytes(&bytes);
        sig.bytes = bytes.len() as u64;
        Ok(())
    };
    if let (Some(target), Some(c)) = (&targets.cpu, &mut m.cpu) {
        cpu::compile_shared_object(p, &dir.join(LIBRARY_FILE), target)?;
        sign(&mut c.library)?;
        if dumps {
            std::fs::write(dir.join("llvm.ll"), cpu::llvm_ir_for(p, false, target)?).map_err(io)?;
        }
    }
    if let Some(gs) = &mut m.gpu {
        for module in &mut gs.modules {
            std::fs::write(dir.join(&module.file.file), ptx::ptx(p, &module.arch)?).map_err(io)?;
            sign(&mut module.file)?;
            if dumps {
                let ll = ptx::llvm_ir(p, &module.arch, false)?;
                std::fs::write(dir.join(format!("llvm.{}.ll", module.arch)), ll).map_err(io)?;
            }
        }
    }
    if dumps {
        std::fs::write(dir.join("kernels.txt"), kernel::print::print_program(p)).map_err(io)?;
    }
    m.write(dir)?;
    Ok(m)
}
