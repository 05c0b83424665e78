//! Checked views of C arguments: a null pointer, a non-UTF-8 string or an array too long for
//! memory is a [`Failure`] naming the argument, never a dereference. What cannot be checked
//! (that a non-null pointer points at live memory of the stated length) is the caller's
//! contract, stated on each entry point.

use crate::status::{Failure, SeqcStatus};
use std::ffi::{CStr, c_char};

fn null(what: &str) -> Failure {
    Failure::new(
        SeqcStatus::NullArgument,
        format!("`{what}`: expected a pointer, found null"),
    )
}

/// `*p`, refusing null.
///
/// # Safety
/// `p` is null or points at a live, aligned `T` that outlives `'a`.
pub(crate) unsafe fn arg<'a, T>(p: *const T, what: &str) -> Result<&'a T, Failure> {
    // SAFETY: checked non-null; the rest is the caller's contract.
    unsafe { p.as_ref() }.ok_or_else(|| null(what))
}

/// `*p` as an out-parameter, refusing null.
///
/// # Safety
/// `p` is null or points at writable, aligned memory for a `T` that outlives `'a`.
pub(crate) unsafe fn out<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: checked non-null; the rest is the caller's contract.
    unsafe { p.as_mut() }.ok_or_else(|| null(what))
}

/// A NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` is null or points at a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn string<'a>(p: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|e| {
        Failure::new(
            SeqcStatus::InvalidUtf8,
            format!(
                "`{what}`: expected a UTF-8 string, found {:?} (invalid from byte {})",
                String::from_utf8_lossy(c.to_bytes()),
                e.valid_up_to()
            ),
        )
    })
}

/// An array argument of `n` elements; null is allowed only when `n` is 0.
///
/// # Safety
/// `p` is null or points at `n` live, initialised, aligned `T`s that outlive `'a`.
pub(crate) unsafe fn slice<'a, T>(p: *const T, n: usize, what: &str) -> Result<&'a [T], Failure> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Failure::new(
            SeqcStatus::NullArgument,
            format!("`{what}`: expected a pointer to {n} elements, found null"),
        ));
    }
    if n.checked_mul(size_of::<T>().max(1))
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(Failure::new(
            SeqcStatus::InvalidArgument,
            format!("`{what}`: {n} elements do not fit in memory"),
        ));
    }
    // SAFETY: non-null, length checked against isize::MAX; the rest is the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// `index` into a list of `len` things named `what`.
pub(crate) fn index(index: usize, len: usize, what: &str) -> Result<usize, Failure> {
    if index < len {
        Ok(index)
    } else {
        Err(Failure::new(
            SeqcStatus::OutOfRange,
            format!("`index`: expected an index below {len} ({what}), found {index}"),
        ))
    }
}
