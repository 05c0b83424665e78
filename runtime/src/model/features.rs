//! CPU features an artifact may require, detected on the running machine without LLVM. Names
//! are LLVM's; features outside this list are not recorded in manifests (nothing to check).

/// Whether the running CPU has `feature` (`None` when the runtime cannot tell).
pub fn host_has(feature: &str) -> Option<bool> {
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! detect {
            ($($llvm:literal => $rust:tt),* $(,)?) => {
                match feature {
                    $($llvm => Some(std::arch::is_x86_feature_detected!($rust)),)*
                    _ => None,
                }
            };
        }
        detect! {
            "sse2" => "sse2", "sse3" => "sse3", "ssse3" => "ssse3", "sse4.1" => "sse4.1",
            "sse4.2" => "sse4.2", "popcnt" => "popcnt", "avx" => "avx", "avx2" => "avx2",
            "fma" => "fma", "f16c" => "f16c", "bmi" => "bmi1", "bmi2" => "bmi2",
            "lzcnt" => "lzcnt", "avx512f" => "avx512f", "avx512bw" => "avx512bw",
            "avx512cd" => "avx512cd", "avx512dq" => "avx512dq", "avx512vl" => "avx512vl",
            "avx512vnni" => "avx512vnni", "avx512bf16" => "avx512bf16",
            "avx512ifma" => "avx512ifma", "avx512vbmi" => "avx512vbmi",
            "avx512vbmi2" => "avx512vbmi2", "avx512bitalg" => "avx512bitalg",
            "avx512vpopcntdq" => "avx512vpopcntdq", "avx512fp16" => "avx512fp16",
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = feature;
        None
    }
}

/// The architecture part of a target triple, e.g. `x86_64`.
pub fn triple_arch(triple: &str) -> &str {
    triple.split('-').next().unwrap_or(triple)
}
