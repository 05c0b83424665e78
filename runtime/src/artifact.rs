//! The compiled-artifact format, defined once here: an artifact is a directory holding
//! `manifest.json` (this module's [`Manifest`]), the kernels' shared object for the CPU
//! and/or one PTX module per GPU architecture, and optionally IR dumps. Weights are never copied in; they are bound at load time. The compiler writes
//! manifests with these types and the runtime reads them back, refusing with a named error a
//! wrong format version, a missing or truncated file, or a library whose hash differs.

use crate::DType;
use crate::sym::SymExpr;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Bumped on every incompatible change of the manifest or the kernel ABI.
pub const FORMAT_VERSION: u32 = 2;
pub const MANIFEST_FILE: &str = "manifest.json";
pub const LIBRARY_FILE: &str = "kernels.so";

/// Why an artifact cannot be read.
#[derive(Debug, Error)]
pub enum ArtifactError {
    #[error("artifact `{path}`: cannot read {what}: {source}")]
    Io {
        path: String,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("artifact `{path}`: manifest.json is not a valid manifest ({reason})")]
    Manifest { path: String, reason: String },
    #[error(
        "artifact `{path}`: format version {found}, this runtime reads version {expected} \
         (recompile the model with this seqc)"
    )]
    Version {
        path: String,
        expected: u32,
        found: u32,
    },
    #[error("artifact `{path}`: {file} has hash {found}, the manifest expects {expected}")]
    Hash {
        path: String,
        file: String,
        expected: String,
        found: String,
    },
    #[error(
        "artifact `{path}`: built for {expected}, but this machine is {found} (recompile on \
         this machine)"
    )]
    Target {
        path: String,
        expected: String,
        found: String,
    },
    #[error("artifact `{path}`: cannot load {file}: {reason}")]
    Library {
        path: String,
        file: String,
        reason: String,
    },
    #[error("artifact `{path}`: {reason}")]
    Invalid { path: String, reason: String },
}

/// A tensor of the entry signature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorSig {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<SymExpr>,
    /// The buffer holding it.
    pub buffer: usize,
}

/// Where a buffer's memory comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BufferKind {
    /// The caller's input tensor of that name.
    Input(String),
    /// The bound weight of that name.
    Param(String),
    /// Filled by [`crate::rng`] from `seed` (normal or uniform), f32; `torch`: by
    /// [`crate::rng::torch_randn`] (absent in artifacts that predate it).
    Random {
        seed: u64,
        normal: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        torch: bool,
    },
    /// Placed in the per-call arena for its live range.
    Arena { first: usize, last: usize },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BufferSig {
    pub dtype: DType,
    pub numel: SymExpr,
    pub kind: BufferKind,
}

/// One kernel. On the CPU, an exported symbol of the shared object with the ABI
/// `void(void **bufs, const int64_t *dims, int64_t begin, int64_t end, int64_t *status)`;
/// on the GPU, an entry of each PTX module (see [`LaunchSig`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelSig {
    pub symbol: String,
    /// The IR node and operator it computes (for error messages).
    pub node: String,
    pub op: String,
    /// The range [0, extent) of its outermost loop.
    pub extent: SymExpr,
    /// Whether that range may be split across threads.
    pub parallel: bool,
}

/// The machine the code was generated for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetSig {
    pub triple: String,
    pub cpu: String,
    /// The enabled CPU features the runtime can check (LLVM names, e.g. `avx2`).
    pub features: Vec<String>,
}

/// A file of the artifact and the FNV-1a 64 hash of its bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileSig {
    pub file: String,
    pub hash: String,
    pub bytes: u64,
}

/// The CPU code of an artifact: the machine it was generated for and its shared object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CpuSig {
    pub target: TargetSig,
    pub library: FileSig,
}

/// The GPU code of an artifact: one PTX module per architecture, each holding every kernel
/// of [`Manifest::kernels`] as an entry of the same name, and how to launch each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuSig {
    /// By ascending architecture; the runtime picks the newest not newer than the device.
    pub modules: Vec<PtxModuleSig>,
    /// One per kernel, in the order of [`Manifest::kernels`].
    pub launches: Vec<LaunchSig>,
}

/// One PTX module.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PtxModuleSig {
    /// The virtual architecture, `sm_80` or `sm_90`.
    pub arch: String,
    pub file: FileSig,
}

/// How one kernel is launched. Its PTX entry has the parameters
/// `(.u64 bufs, .u64 dims, .u64 extent, .u64 status)`: `bufs` a device array of every
/// buffer's device pointer (indexed as [`Manifest::buffers`]; unused ones may be null), `dims`
/// a device array of the dims' values (i64), `extent` the kernel's [`KernelSig::extent`] at
/// those dims, and `status` a device i64, zero before the launch, that the kernel sets to 1
/// (an index out of range) or 2 (an integer division by zero). Grid and block are (x, y, z).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LaunchSig {
    pub symbol: String,
    /// Blocks per grid, as expressions of the dims (a launch with a zero is skipped).
    pub grid: [SymExpr; 3],
    /// Threads per block.
    pub block: [u32; 3],
    /// Dynamic shared memory per block, bytes.
    pub shared_bytes: u32,
}

/// `manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub seqc_version: String,
    /// FNV-1a 64 of the spec source the artifact was compiled from.
    pub spec_hash: String,
    /// The CPU code, absent in an artifact compiled for the GPU only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuSig>,
    /// The GPU code, absent in an artifact compiled for the CPU only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuSig>,
    /// The symbolic dims, in the order kernels receive them.
    pub dims: Vec<String>,
    pub inputs: Vec<TensorSig>,
    pub params: Vec<TensorSig>,
    pub outputs: Vec<TensorSig>,
    pub buffers: Vec<BufferSig>,
    pub kernels: Vec<KernelSig>,
}

/// FNV-1a 64 of `bytes` as 16 hex digits: a corruption check, not a security measure.
pub fn hash_bytes(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl Manifest {
    /// Writes the manifest into artifact directory `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), ArtifactError> {
        let path = dir.join(MANIFEST_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| ArtifactError::Manifest {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        std::fs::write(&path, text + "\n").map_err(|source| ArtifactError::Io {
            path: dir.display().to_string(),
            what: "manifest.json",
            source,
        })
    }

    /// Reads and checks the manifest of artifact directory `dir` (version first, so an old
    /// or future layout is reported as such rather than as a parse error).
    pub fn read(dir: &Path) -> Result<Manifest, ArtifactError> {
        let path = dir.display().to_string();
        let text = std::fs::read_to_string(dir.join(MANIFEST_FILE)).map_err(|source| {
            ArtifactError::Io {
                path: path.clone(),
                what: "manifest.json",
                source,
            }
        })?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ArtifactError::Manifest {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let found = value
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| ArtifactError::Manifest {
                path: path.clone(),
                reason: "no numeric `format_version`".into(),
            })?;
        if found != u64::from(FORMAT_VERSION) {
            return Err(ArtifactError::Version {
                path,
                expected: FORMAT_VERSION,
                found: u32::try_from(found).unwrap_or(u32::MAX),
            });
        }
        let m: Manifest = serde_json::from_value(value).map_err(|e| ArtifactError::Manifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        m.check(&path)?;
        Ok(m)
    }

    /// Internal consistency: every buffer index in range, every kernel symbol a C identifier.
    fn check(&self, path: &str) -> Result<(), ArtifactError> {
        let bad = |reason: String| ArtifactError::Invalid {
            path: path.to_string(),
            reason,
        };
        let n = self.buffers.len();
        for t in self.inputs.iter().chain(&self.params).chain(&self.outputs) {
            if t.buffer >= n {
                return Err(bad(format!(
                    "tensor `{}` names buffer {}, but there are {n}",
                    t.name, t.buffer
                )));
            }
        }
        for k in &self.kernels {
            if k.symbol.is_empty()
                || !k
                    .symbol
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(bad(format!(
                    "kernel symbol `{}` is not an identifier",
                    k.symbol
                )));
            }
        }
        let mut files: Vec<&FileSig> = Vec::new();
        files.extend(self.cpu.as_ref().map(|c| &c.library));
        if let Some(g) = &self.gpu {
            if g.launches.len() != self.kernels.len() {
                return Err(bad(format!(
                    "{} GPU launches for {} kernels",
                    g.launches.len(),
                    self.kernels.len()
                )));
            }
            for (l, k) in g.launches.iter().zip(&self.kernels) {
                if l.symbol != k.symbol {
                    return Err(bad(format!(
                        "GPU launch `{}` where kernel `{}` was expected",
                        l.symbol, k.symbol
                    )));
                }
                if l.block.contains(&0)
                    || l.block.iter().map(|b| u64::from(*b)).product::<u64>() > 1024
                {
                    return Err(bad(format!(
                        "kernel `{}`: block {:?} is not 1 to 1024 threads",
                        l.symbol, l.block
                    )));
                }
            }
            if g.modules.is_empty() {
                return Err(bad("a GPU section without PTX modules".into()));
            }
            files.extend(g.modules.iter().map(|m| &m.file));
        }
        if files.is_empty() {
            return Err(bad("neither CPU nor GPU code".into()));
        }
        for f in files {
            if f.file.is_empty() || f.file.contains(['/', '\\']) || f.file.starts_with('.') {
                return Err(bad(format!("file `{}` is not a plain file name", f.file)));
            }
        }
        Ok(())
    }

    /// The CPU library's path inside `dir`, after checking its size and hash; an error when
    /// the artifact has no CPU code.
    pub fn checked_library(&self, dir: &Path) -> Result<PathBuf, ArtifactError> {
        let cpu = self.cpu.as_ref().ok_or_else(|| ArtifactError::Invalid {
            path: dir.display().to_string(),
            reason: "it holds no CPU code (compiled with `--target ptx`; recompile with \
                     `--target cpu` or `--target cpu,ptx`)"
                .into(),
        })?;
        checked_file(dir, &cpu.library, "the kernel library")
    }

    /// The text of the PTX module for `arch` inside `dir`, after checking its size and hash.
    pub fn checked_ptx(&self, dir: &Path, arch: &str) -> Result<String, ArtifactError> {
        let path = dir.display().to_string();
        let m = self
            .gpu
            .as_ref()
            .and_then(|g| g.modules.iter().find(|m| m.arch == arch))
            .ok_or_else(|| ArtifactError::Invalid {
                path: path.clone(),
                reason: format!("it holds no PTX for {arch}"),
            })?;
        let file = checked_file(dir, &m.file, "a PTX module")?;
        std::fs::read_to_string(&file).map_err(|source| ArtifactError::Io {
            path,
            what: "a PTX module",
            source,
        })
    }
}

/// `sig`'s file inside `dir`, after checking its size and hash.
fn checked_file(dir: &Path, sig: &FileSig, what: &'static str) -> Result<PathBuf, ArtifactError> {
    let path = dir.display().to_string();
    let file = dir.join(&sig.file);
    let bytes = std::fs::read(&file).map_err(|source| ArtifactError::Io {
        path: path.clone(),
        what,
        source,
    })?;
    let found = hash_bytes(&bytes);
    if bytes.len() as u64 != sig.bytes || found != sig.hash {
        return Err(ArtifactError::Hash {
            path,
            file: sig.file.clone(),
            expected: format!("{} ({} bytes)", sig.hash, sig.bytes),
            found: format!("{found} ({} bytes)", bytes.len()),
        });
    }
    Ok(file)
}
