//! Status codes, the dtype and kind codes, the thread-local last-error message, and
//! [`guard`], which every entry point runs under: it catches panics, maps a [`Failure`] to
//! its status and records the message.

use seqc_runtime::artifact::ArtifactError;
use seqc_runtime::{DType, ModelError, RuntimeError};
use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// What a call did. `SEQC_STATUS_OK` is 0; every other value is a failure, and
/// `seqc_last_error()` then describes it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqcStatus {
    /// Success.
    Ok = 0,
    /// A required pointer argument was null (the message names it).
    NullArgument = 1,
    /// A string argument is not valid UTF-8.
    InvalidUtf8 = 2,
    /// An argument is out of its domain: an unknown dtype or kind code, a negative dim, a
    /// length that does not fit in memory.
    InvalidArgument = 3,
    /// An index is not below the count of what it indexes.
    OutOfRange = 4,
    /// A name is not that of any tensor or dim of the object asked.
    NotFound = 5,
    /// A file cannot be read (the artifact's manifest or library, a weights file).
    Io = 6,
    /// The artifact is invalid: corrupt manifest, wrong format version, library hash, or
    /// built for another machine.
    Artifact = 7,
    /// The weights do not match the model's parameters (missing, extra, given twice, wrong
    /// dtype or shape), or a weights file is not valid safetensors.
    Weights = 8,
    /// The inputs do not match the model's inputs (missing, extra, given twice, wrong dtype,
    /// shape or byte length), or a dim cannot be bound.
    Input = 9,
    /// A kernel failed on the data (an index read from a tensor out of range, an integer
    /// division by zero).
    Kernel = 10,
    /// Any other failure of a run (a size that does not fit in memory, no thread pool).
    Runtime = 11,
    /// An internal error: a bug in seqc, caught before it could cross into C.
    Panic = 12,
    /// The device asked for cannot be used: a library built without CUDA, no CUDA driver, no
    /// such device, or a CUDA driver call failed (loading the PTX, a launch, a copy).
    Device = 13,
}

/// An element type. Data is packed row-major in the machine's byte order; `BOOL` is one
/// byte per element, 0 or 1; `F16` and `BF16` are 16-bit patterns.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqcDtype {
    F32 = 0,
    F16 = 1,
    Bf16 = 2,
    I32 = 3,
    I64 = 4,
    Bool = 5,
}

/// Which list of a model's tensors a query reads. Passed as a `uint32_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqcKind {
    /// The inputs given to every run.
    Input = 0,
    /// The parameters bound from the weights file at load time.
    Param = 1,
    /// The outputs every run returns.
    Output = 2,
}

impl SeqcDtype {
    pub(crate) fn of(d: DType) -> SeqcDtype {
        match d {
            DType::F32 => SeqcDtype::F32,
            DType::F16 => SeqcDtype::F16,
            DType::BF16 => SeqcDtype::Bf16,
            DType::I32 => SeqcDtype::I32,
            DType::I64 => SeqcDtype::I64,
            DType::Bool => SeqcDtype::Bool,
        }
    }

    /// The runtime dtype of a code from C; the error names `what`.
    pub(crate) fn decode(code: u32, what: &str) -> Result<DType, Failure> {
        DType::ALL
            .into_iter()
            .find(|d| SeqcDtype::of(*d) as u32 == code)
            .ok_or_else(|| {
                Failure::new(
                    SeqcStatus::InvalidArgument,
                    format!(
                        "{what}: expected a SeqcDtype code (0 = f32 .. 5 = bool), found {code}"
                    ),
                )
            })
    }
}

impl SeqcKind {
    pub(crate) fn decode(code: u32) -> Result<SeqcKind, Failure> {
        [SeqcKind::Input, SeqcKind::Param, SeqcKind::Output]
            .into_iter()
            .find(|k| *k as u32 == code)
            .ok_or_else(|| {
                Failure::new(
                    SeqcStatus::InvalidArgument,
                    format!(
                        "`kind`: expected a SeqcKind code (0 = input, 1 = param, 2 = output), \
                         found {code}"
                    ),
                )
            })
    }
}

/// Why a call failed: its status and message.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: SeqcStatus,
    pub message: String,
}

impl Failure {
    pub fn new(status: SeqcStatus, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }
}

impl From<ModelError> for Failure {
    fn from(e: ModelError) -> Failure {
        use SeqcStatus as S;
        let status = match &e {
            ModelError::Artifact(ArtifactError::Io { .. }) => S::Io,
            ModelError::Artifact(_) => S::Artifact,
            ModelError::Runtime(RuntimeError::Io { .. }) => S::Io,
            ModelError::Runtime(RuntimeError::Safetensors { .. })
            | ModelError::Runtime(RuntimeError::UnsupportedDType { .. }) => S::Weights,
            ModelError::Runtime(_) => S::Runtime,
            ModelError::MissingWeight { .. }
            | ModelError::ExtraWeight { .. }
            | ModelError::DuplicateWeight { .. } => S::Weights,
            ModelError::Mismatch { kind, .. } if *kind == "weight" => S::Weights,
            // Outputs reused from another model's run.
            ModelError::ExtraOutput { .. } => S::InvalidArgument,
            ModelError::Mismatch { kind, .. } if *kind == "output" => S::InvalidArgument,
            ModelError::MissingInput { .. }
            | ModelError::ExtraInput { .. }
            | ModelError::Mismatch { .. }
            | ModelError::Dim { .. } => S::Input,
            ModelError::Kernel { .. } => S::Kernel,
            ModelError::Size { .. } => S::Runtime,
            ModelError::Device { .. } => S::Device,
        };
        Failure::new(status, e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // A message cannot hold NUL; show one as `\0` rather than lose the rest.
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Runs the body of entry point `func`: clears the last error, catches a panic, and records
/// the failure's message prefixed with `func`.
pub(crate) fn guard(func: &str, body: impl FnOnce() -> Result<(), Failure>) -> SeqcStatus {
    set_last_error("");
    let failure = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return SeqcStatus::Ok,
        Ok(Err(f)) => f,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            Failure::new(
                SeqcStatus::Panic,
                format!("internal error (a bug in seqc, please report it): {what}"),
            )
        }
    };
    set_last_error(&format!("{func}: {}", failure.message));
    failure.status
}

/// The message of the last failed call on this thread, or `""` if the last call succeeded.
/// Never null. The string belongs to the library and stays valid until the next `seqc_` call
/// on this thread.
#[unsafe(no_mangle)]
pub extern "C" fn seqc_last_error() -> *const c_char {
    catch_unwind(|| LAST_ERROR.with(|e| e.borrow().as_ptr())).unwrap_or(c"".as_ptr())
}

/// The version of this library (e.g. `"0.1.0"`), a static string.
#[unsafe(no_mangle)]
pub extern "C" fn seqc_version() -> *const c_char {
    const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last() -> String {
        // SAFETY: seqc_last_error never returns null and the string is NUL-terminated.
        unsafe { CStr::from_ptr(seqc_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let s = guard("seqc_test", || panic!("boom"));
        assert_eq!(s, SeqcStatus::Panic);
        let m = last();
        assert!(
            m.starts_with("seqc_test: internal error") && m.contains("boom"),
            "{m}"
        );
        assert_eq!(guard("seqc_test", || Ok(())), SeqcStatus::Ok);
        assert_eq!(last(), "");
    }

    #[test]
    fn a_nul_in_a_message_is_shown_not_truncated() {
        let s = guard("seqc_test", || {
            Err(Failure::new(SeqcStatus::NotFound, "`a\0b` is unknown"))
        });
        assert_eq!(s, SeqcStatus::NotFound);
        assert_eq!(last(), "seqc_test: `a\\0b` is unknown");
    }

    #[test]
    fn codes_round_trip_and_unknown_codes_are_refused() {
        for d in DType::ALL {
            assert_eq!(
                SeqcDtype::decode(SeqcDtype::of(d) as u32, "x").ok(),
                Some(d)
            );
        }
        let e = SeqcDtype::decode(6, "input `x`").unwrap_err();
        assert_eq!(e.status, SeqcStatus::InvalidArgument);
        assert!(e.message.contains("input `x`") && e.message.contains("found 6"));
        assert!(SeqcKind::decode(3).is_err());
        assert_eq!(SeqcKind::decode(2).ok(), Some(SeqcKind::Output));
    }

    #[test]
    fn version_is_the_crate_version() {
        // SAFETY: a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(seqc_version()) };
        assert_eq!(v.to_str().ok(), Some(env!("CARGO_PKG_VERSION")));
    }
}
