//! Where a model runs, chosen at load time: [`Device::Cpu`] (the artifact's shared object) or
//! [`Device::Cuda`] (one of its PTX modules on an NVIDIA GPU). The checks of a GPU load that
//! need no GPU live here as pure functions: the artifact has GPU code, and which PTX module
//! suits a device of a given compute capability.

use crate::artifact::{ArtifactError, GpuSig, Manifest, PtxModuleSig};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// The device a model is loaded on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Device {
    /// The host CPU (the default).
    #[default]
    Cpu,
    /// The NVIDIA GPU of this ordinal (needs the runtime's `cuda` feature and a CUDA driver).
    Cuda(usize),
}

/// A device string that is not `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("device `{found}`: expected `cpu`, `cuda` or `cuda:N` (N a device ordinal, e.g. `cuda:0`)")]
pub struct DeviceParseError {
    pub found: String,
}

impl FromStr for Device {
    type Err = DeviceParseError;

    /// `cpu`, `cuda` (= `cuda:0`) or `cuda:N`.
    fn from_str(s: &str) -> Result<Device, DeviceParseError> {
        let bad = || DeviceParseError {
            found: s.to_string(),
        };
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => {
                let n = s.strip_prefix("cuda:").ok_or_else(bad)?;
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                n.parse().map(Device::Cuda).map_err(|_| bad())
            }
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// The compute capability a PTX architecture name such as `sm_86` targets, `(8, 6)`; `None`
/// for a name this runtime does not know (e.g. an arch-specific `sm_90a`).
pub fn arch_capability(arch: &str) -> Option<(u32, u32)> {
    let digits = arch.strip_prefix("sm_")?;
    if digits.len() < 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (major, minor) = digits.split_at(digits.len() - 1);
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The module to load on a device of compute capability `cc`: the newest whose architecture
/// is not newer than the device (the driver compiles PTX forward, never backward).
pub fn select_module(cc: (u32, u32), modules: &[PtxModuleSig]) -> Option<&PtxModuleSig> {
    modules
        .iter()
        .filter_map(|m| Some((arch_capability(&m.arch)?, m)))
        .filter(|(c, _)| *c <= cc)
        .max_by_key(|(c, _)| *c)
        .map(|(_, m)| m)
}

/// The artifact's GPU code; an error naming the artifact when it was compiled for the CPU only.
pub fn gpu_code<'m>(m: &'m Manifest, path: &str) -> Result<&'m GpuSig, ArtifactError> {
    m.gpu.as_ref().ok_or_else(|| ArtifactError::Invalid {
        path: path.to_string(),
        reason: "it holds no GPU code (compiled for the CPU only; recompile with `--target ptx` \
                 or `--target cpu,ptx`)"
            .into(),
    })
}

/// [`select_module`], or an error listing the artifact's architectures and the device's.
pub fn module_for<'g>(
    gpu: &'g GpuSig,
    cc: (u32, u32),
    device: Device,
    path: &str,
) -> Result<&'g PtxModuleSig, ArtifactError> {
    select_module(cc, &gpu.modules).ok_or_else(|| ArtifactError::Invalid {
        path: path.to_string(),
        reason: format!(
            "it holds PTX for {}, none of which runs on device `{device}` (compute capability \
             {}.{}, i.e. sm_{}{} or older)",
            gpu.modules
                .iter()
                .map(|m| m.arch.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            cc.0,
            cc.1,
            cc.0,
            cc.1
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::FileSig;

    #[test]
    fn parses_and_prints_devices() {
        assert_eq!("cpu".parse(), Ok(Device::Cpu));
        assert_eq!("cuda".parse(), Ok(Device::Cuda(0)));
        assert_eq!("cuda:0".parse(), Ok(Device::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(Device::Cuda(3)));
        assert_eq!(Device::Cuda(3).to_string(), "cuda:3");
        assert_eq!(Device::Cpu.to_string(), "cpu");
        assert_eq!(Device::default(), Device::Cpu);
        for bad in [
            "",
            "gpu",
            "CPU",
            "cuda:",
            "cuda:-1",
            "cuda:+1",
            "cuda: 1",
            "cuda:x",
            "cuda0",
            "cuda:1:2",
            "cuda:99999999999999999999999",
        ] {
            let e = bad.parse::<Device>().unwrap_err();
            assert_eq!(e.found, bad);
            let m = e.to_string();
            assert!(
                m.contains(&format!("`{bad}`")) && m.contains("`cuda:N`"),
                "{m}"
            );
        }
    }

    fn modules(archs: &[&str]) -> Vec<PtxModuleSig> {
        archs
            .iter()
            .map(|a| PtxModuleSig {
                arch: a.to_string(),
                file: FileSig {
                    file: format!("{a}.ptx"),
                    hash: String::new(),
                    bytes: 0,
                },
            })
            .collect()
    }

    #[test]
    fn picks_the_newest_module_not_newer_than_the_device() {
        assert_eq!(arch_capability("sm_86"), Some((8, 6)));
        assert_eq!(arch_capability("sm_100"), Some((10, 0)));
        assert_eq!(arch_capability("sm_90a"), None);
        assert_eq!(arch_capability("sm_9"), None);
        assert_eq!(arch_capability("compute_90"), None);
        let both = modules(&["sm_80", "sm_90"]);
        let pick = |cc, ms| select_module(cc, ms).map(|m| m.arch.as_str());
        assert_eq!(pick((8, 0), &both), Some("sm_80")); // A100
        assert_eq!(pick((8, 6), &both), Some("sm_80")); // RTX 30xx
        assert_eq!(pick((8, 9), &both), Some("sm_80")); // L4, RTX 40xx
        assert_eq!(pick((9, 0), &both), Some("sm_90")); // H100
        assert_eq!(pick((10, 0), &both), Some("sm_90")); // B200: JIT from sm_90
        assert_eq!(pick((7, 5), &both), None); // T4
        // Order in the manifest does not matter; unknown names are never picked.
        let odd = modules(&["sm_90", "sm_90a", "sm_80"]);
        assert_eq!(pick((9, 0), &odd), Some("sm_90"));
        assert_eq!(pick((8, 6), &modules(&["sm_90"])), None);
    }

    #[test]
    fn errors_name_the_artifact_its_modules_and_the_device() {
        let gpu = GpuSig {
            modules: modules(&["sm_80", "sm_90"]),
            launches: Vec::new(),
        };
        let e = module_for(&gpu, (7, 5), Device::Cuda(1), "m.seqc").unwrap_err();
        let m = e.to_string();
        for part in ["`m.seqc`", "sm_80, sm_90", "`cuda:1`", "capability 7.5"] {
            assert!(m.contains(part), "{m} lacks {part}");
        }
        assert_eq!(
            module_for(&gpu, (8, 6), Device::Cuda(0), "m")
                .map(|m| m.arch.as_str())
                .ok(),
            Some("sm_80")
        );
    }

    #[test]
    fn a_cpu_only_artifact_has_no_gpu_code() {
        let mut m = Manifest {
            format_version: crate::artifact::FORMAT_VERSION,
            seqc_version: "0".into(),
            spec_hash: "0".into(),
            cpu: None,
            gpu: None,
            dims: Vec::new(),
            inputs: Vec::new(),
            params: Vec::new(),
            outputs: Vec::new(),
            buffers: Vec::new(),
            kernels: Vec::new(),
        };
        let e = gpu_code(&m, "m.seqc").unwrap_err().to_string();
        for part in [
            "`m.seqc`",
            "no GPU code",
            "`--target ptx`",
            "`--target cpu,ptx`",
        ] {
            assert!(e.contains(part), "{e} lacks {part}");
        }
        m.gpu = Some(GpuSig {
            modules: modules(&["sm_80"]),
            launches: Vec::new(),
        });
        assert!(gpu_code(&m, "m.seqc").is_ok());
    }
}
