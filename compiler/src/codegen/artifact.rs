//! Writing a compiled artifact (the format is `seqc_runtime::artifact`'s): lower the graph to
//! kernels, generate the shared object for the host, and describe it all in the manifest —
//! entry signature with symbolic dims, parameters, buffers with their live ranges, kernels.

use super::cpu::{self, CodegenError};
use crate::ir::dim::Atom;
use crate::ir::{BinaryOp, DimExpr, Graph};
use crate::kernel::{self, BufKind, Expr, KernelError, Program, Sched, Ty};
use seqc_runtime::SymExpr;
use seqc_runtime::artifact::{
    ArtifactError, BufferKind, BufferSig, CpuSig, FORMAT_VERSION, FileSig, KernelSig, LIBRARY_FILE,
    Manifest, TargetSig, TensorSig, hash_bytes,
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

/// The manifest of a lowered program (the library entry is filled in by the caller).
pub fn manifest(
    g: &Graph,
    p: &Program,
    spec_hash: &str,
    target: &cpu::HostTarget,
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
    let features = target
        .features
        .split(',')
        .filter_map(|f| f.strip_prefix('+'))
        .filter(|f| seqc_runtime::model::features::host_has(f).is_some())
        .map(str::to_string)
        .collect();
    Ok(Manifest {
        format_version: FORMAT_VERSION,
        seqc_version: env!("CARGO_PKG_VERSION").to_string(),
        spec_hash: spec_hash.to_string(),
        cpu: Some(CpuSig {
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
        }),
        gpu: None,
        dims: p.dims.clone(),
        inputs,
        params,
        outputs,
        buffers,
        kernels,
    })
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
    let io = |source| BuildError::Io {
        path: dir.display().to_string(),
        source,
    };
    let p = kernel::lower(g)?;
    std::fs::create_dir_all(dir).map_err(io)?;
    let so = dir.join(LIBRARY_FILE);
    cpu::compile_shared_object(&p, &so, target)?;
    let mut m = manifest(g, &p, spec_hash, target)?;
    let bytes = std::fs::read(&so).map_err(io)?;
    if let Some(c) = &mut m.cpu {
        c.library.hash = hash_bytes(&bytes);
        c.library.bytes = bytes.len() as u64;
    }
    if dumps {
        std::fs::write(dir.join("kernels.txt"), kernel::print::print_program(&p)).map_err(io)?;
        std::fs::write(dir.join("llvm.ll"), cpu::llvm_ir_for(&p, false, target)?).map_err(io)?;
    }
    m.write(dir)?;
    Ok(m)
}
