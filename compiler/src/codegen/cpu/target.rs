//! The CPU that code is generated for: this machine (`native`) or one of the x86-64
//! micro-architecture levels of the System V psABI, so an artifact can be built once for a
//! fleet of machines (`seqc compile --cpu x86-64-v3`).

use super::CodegenError;
use inkwell::targets::TargetMachine;

/// The machine code is generated for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostTarget {
    pub triple: String,
    pub cpu: String,
    /// LLVM's feature string, e.g. `+avx2,+fma,-avx512f,…`.
    pub features: String,
}

/// The CPU names `--cpu` accepts besides `native`.
pub const LEVELS: [&str; 4] = ["x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4"];

/// The features each level adds to the one before it (psABI names spelled as LLVM spells them;
/// `evex512` makes LLVM 19 use 512-bit registers with AVX-512).
const LEVEL_FEATURES: [&[&str]; 4] = [
    &["cmov", "cx8", "fxsr", "mmx", "sse", "sse2", "x87"],
    &[
        "cx16", "sahf", "popcnt", "sse3", "sse4.1", "sse4.2", "ssse3",
    ],
    &[
        "avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave",
    ],
    &[
        "avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl", "evex512",
    ],
];

/// The host this process runs on, as LLVM sees it.
pub fn host_target() -> HostTarget {
    HostTarget {
        triple: TargetMachine::get_default_triple()
            .as_str()
            .to_string_lossy()
            .into_owned(),
        cpu: TargetMachine::get_host_cpu_name().to_string(),
        features: TargetMachine::get_host_cpu_features().to_string(),
    }
}

/// The target `--cpu NAME` names: `native` is this machine with all its features; a level
/// (`x86-64`, `x86-64-v2`, `x86-64-v3`, `x86-64-v4`) is an x86-64 CPU with exactly that
/// level's features, whatever this machine has.
pub fn cpu_target(name: &str) -> Result<HostTarget, CodegenError> {
    if name == "native" {
        return Ok(host_target());
    }
    let Some(level) = LEVELS.iter().position(|l| *l == name) else {
        return Err(CodegenError::Target(format!(
            "unknown CPU `{name}`: expected `native` or one of {}",
            LEVELS.join(", ")
        )));
    };
    let host = host_target();
    if !host.triple.starts_with("x86_64") {
        return Err(CodegenError::Target(format!(
            "CPU `{name}` is an x86-64 level, but this compiler targets `{}`",
            host.triple
        )));
    }
    let features: Vec<String> = LEVEL_FEATURES[..=level]
        .iter()
        .flat_map(|fs| fs.iter().map(|f| format!("+{f}")))
        .collect();
    Ok(HostTarget {
        triple: host.triple,
        cpu: name.to_string(),
        features: features.join(","),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_include_the_features_of_the_levels_below() {
        let v3 = cpu_target("x86-64-v3").expect("x86-64 host");
        for f in ["+sse2", "+sse4.2", "+avx2", "+fma"] {
            assert!(
                v3.features.split(',').any(|x| x == f),
                "{f} in {}",
                v3.features
            );
        }
        assert!(!v3.features.contains("avx512"), "{}", v3.features);
        let v1 = cpu_target("x86-64").expect("x86-64 host");
        assert!(!v1.features.contains("avx"), "{}", v1.features);
        assert_eq!(v1.cpu, "x86-64");
    }

    #[test]
    fn unknown_cpu_names_are_refused_with_the_accepted_names() {
        let e = cpu_target("pentium-mmx").unwrap_err().to_string();
        assert!(
            e.contains("`pentium-mmx`") && e.contains("x86-64-v3"),
            "{e}"
        );
    }
}
