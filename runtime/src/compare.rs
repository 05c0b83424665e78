//! How a backend's output is compared with the interpreter's, defined once for the backend
//! tests and the GPU validation pack's checker (`seqc-check`): the largest |got − want| over
//! the largest finite |want| (at least 1e-6); NaN and infinities must coincide; integer and
//! bool outputs must be exact; shapes and dtypes must agree.

use crate::HostTensor;

/// The relative error of `got` against `want`, or why they cannot be compared or must not
/// differ at all (naming the output `name` and the first offending element).
pub fn rel_err(name: &str, got: &HostTensor, want: &HostTensor) -> Result<f64, String> {
    if got.shape != want.shape || got.dtype() != want.dtype() {
        return Err(format!(
            "output `{name}`: got {}{:?}, expected {}{:?}",
            got.dtype(),
            got.shape,
            want.dtype(),
            want.shape
        ));
    }
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let scale = w
        .iter()
        .filter(|x| x.is_finite())
        .fold(0.0f64, |m, x| m.max(x.abs()))
        .max(1e-6);
    let mut err = 0.0f64;
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        if !a.is_finite() || !b.is_finite() {
            if !(a.is_nan() && b.is_nan() || a == b) {
                return Err(format!("output `{name}`[{i}]: got {a}, expected {b}"));
            }
            continue;
        }
        if !want.dtype().is_float() && a != b {
            return Err(format!(
                "output `{name}`[{i}]: got {a}, expected {b} (integers must be exact)"
            ));
        }
        err = err.max((a - b).abs() / scale);
    }
    Ok(err)
}

#[cfg(test)]
mod tests {
    use super::rel_err;
    use crate::{HostTensor, TensorData};

    fn f32s(v: &[f32]) -> HostTensor {
        HostTensor {
            shape: vec![v.len()],
            data: TensorData::F32(v.to_vec()),
        }
    }

    #[test]
    fn relative_to_the_largest_expected_magnitude() {
        let e = rel_err("y", &f32s(&[1.0, 2.5]), &f32s(&[1.0, 2.0])).unwrap();
        assert!((e - 0.25).abs() < 1e-12, "{e}");
        assert_eq!(rel_err("y", &f32s(&[3.0]), &f32s(&[3.0])).unwrap(), 0.0);
    }

    #[test]
    fn non_finite_values_must_coincide() {
        let nan = f32::NAN;
        assert_eq!(
            rel_err("y", &f32s(&[nan, 1.0]), &f32s(&[nan, 1.0])),
            Ok(0.0)
        );
        let e = rel_err("y", &f32s(&[1.0, 1.0]), &f32s(&[nan, 1.0])).unwrap_err();
        assert!(e.contains("output `y`[0]"), "{e}");
        assert!(rel_err("y", &f32s(&[f32::INFINITY]), &f32s(&[-f32::INFINITY])).is_err());
    }

    #[test]
    fn integers_are_exact_and_shapes_must_agree() {
        let i = |v: &[i32]| HostTensor {
            shape: vec![v.len()],
            data: TensorData::I32(v.to_vec()),
        };
        assert!(rel_err("n", &i(&[5, 7]), &i(&[5, 7])).is_ok());
        let e = rel_err("n", &i(&[5, 8]), &i(&[5, 7])).unwrap_err();
        assert!(e.contains("must be exact"), "{e}");
        let e = rel_err("y", &f32s(&[1.0]), &f32s(&[1.0, 2.0])).unwrap_err();
        assert!(e.contains("output `y`") && e.contains("[2]"), "{e}");
    }
}
