//! Loading on a device: the errors of a CUDA load on a machine without a CUDA driver (or from
//! a runtime without the `cuda` feature), and, where a GPU is present, a hand-written PTX
//! model (`tests/data/gpu_affine.ll`, compiled by llc) run through the runtime and checked
//! against values computed here. Without a GPU the GPU test says why and passes.

use seqc_runtime::artifact::{
    BufferKind, BufferSig, FileSig, GpuSig, KernelSig, LaunchSig, Manifest, PtxModuleSig,
    TensorSig, hash_bytes,
};
use seqc_runtime::model::{Device, Options, cuda_driver_present};
use seqc_runtime::{DType, HostTensor, Model, ModelError, SymExpr, Weights};
use std::collections::BTreeMap;
use std::path::Path;

const PTX: &str = include_str!("data/gpu_affine_sm_80.ptx");

fn t() -> SymExpr {
    SymExpr::Dim("T".into())
}

fn kernel(symbol: &str) -> (KernelSig, LaunchSig) {
    let k = KernelSig {
        symbol: symbol.into(),
        node: format!("%{symbol}"),
        op: symbol.into(),
        extent: t(),
        parallel: true,
    };
    let l = LaunchSig {
        symbol: symbol.into(),
        // ceil(T / 128) blocks of 128 threads.
        grid: [
            SymExpr::FloorDiv(Box::new(SymExpr::Add(vec![t(), SymExpr::Const(127)])), 128),
            SymExpr::Const(1),
            SymExpr::Const(1),
        ],
        block: [128, 1, 1],
        shared_bytes: 0,
    };
    (k, l)
}

/// A GPU-only artifact: `y[i] = 2*x[i] + T` (kernel `affine`), then `check` fails with
/// status 1 if an `x[i]` is negative.
fn write_artifact(dir: &Path) {
    std::fs::write(dir.join("affine_sm_80.ptx"), PTX).unwrap();
    let sig = |name: &str, buffer| TensorSig {
        name: name.into(),
        dtype: DType::F32,
        shape: vec![t()],
        buffer,
    };
    let (ks, ls): (Vec<_>, Vec<_>) = ["affine", "check"].map(kernel).into_iter().unzip();
    let m = Manifest {
        format_version: seqc_runtime::artifact::FORMAT_VERSION,
        seqc_version: "test".into(),
        spec_hash: "0".into(),
        cpu: None,
        gpu: Some(GpuSig {
            modules: vec![PtxModuleSig {
                arch: "sm_80".into(),
                file: FileSig {
                    file: "affine_sm_80.ptx".into(),
                    hash: hash_bytes(PTX.as_bytes()),
                    bytes: PTX.len() as u64,
                },
            }],
            launches: ls,
        }),
        dims: vec!["T".into()],
        inputs: vec![sig("x", 0)],
        params: Vec::new(),
        outputs: vec![sig("y", 1)],
        buffers: vec![
            BufferSig {
                dtype: DType::F32,
                numel: t(),
                kind: BufferKind::Input("x".into()),
            },
            BufferSig {
                dtype: DType::F32,
                numel: t(),
                kind: BufferKind::Arena { first: 0, last: 1 },
            },
        ],
        kernels: ks,
    };
    m.write(dir).unwrap();
}

fn load(dir: &Path, device: Device) -> Result<Model, ModelError> {
    let opts = Options {
        device,
        ..Options::default()
    };
    Model::load_with(dir, Weights::default(), &opts)
}

#[test]
fn a_cuda_load_without_a_driver_names_the_artifact_and_the_device() {
    if cuda_driver_present() {
        eprintln!("skipped: this machine has a CUDA driver");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    write_artifact(tmp.path());
    let e = load(tmp.path(), Device::Cuda(1)).err().expect("refused");
    assert!(matches!(e, ModelError::Device { .. }), "{e:?}");
    let m = e.to_string();
    let path = format!("`{}`", tmp.path().display());
    let why: &[&str] = if cfg!(feature = "cuda") {
        &["no CUDA driver", "libcuda.so"]
    } else {
        &["without its `cuda` feature", "--features cuda"]
    };
    for part in [&path, "device `cuda:1`"]
        .into_iter()
        .chain(why.iter().copied())
    {
        assert!(m.contains(part), "{m} lacks {part}");
    }
}

#[test]
fn a_gpu_only_artifact_on_the_cpu_says_to_recompile() {
    let tmp = tempfile::tempdir().unwrap();
    write_artifact(tmp.path());
    let m = load(tmp.path(), Device::Cpu)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        m.contains("no CPU code") && m.contains("--target cpu"),
        "{m}"
    );
}

#[test]
fn runs_hand_written_ptx_on_the_gpu() {
    let tmp = tempfile::tempdir().unwrap();
    write_artifact(tmp.path());
    if !cuda_driver_present() {
        eprintln!("skipped: no CUDA driver (or a runtime without the `cuda` feature)");
        return;
    }
    let model = match load(tmp.path(), Device::Cuda(0)) {
        // A driver without a usable GPU (no device, or a driver that cannot start).
        Err(ModelError::Device { reason, .. })
            if reason.contains("no such device") || reason.contains("the CUDA driver fails") =>
        {
            eprintln!("skipped: {reason}");
            return;
        }
        r => r.expect("loads on cuda:0"),
    };
    assert_eq!(model.device(), Device::Cuda(0));
    let x = |v: Vec<f32>| {
        let n = v.len();
        BTreeMap::from([("x".to_string(), HostTensor::f32(vec![n], v))])
    };
    let dims = Default::default();
    // 300 elements: three blocks, the last one partly past the extent.
    let xs: Vec<f32> = (0..300).map(|i| i as f32 * 0.5).collect();
    let want: Vec<f32> = xs.iter().map(|v| 2.0 * v + 300.0).collect();
    let mut out = model.run(&x(xs.clone()), &dims).expect("runs");
    assert_eq!(out["y"], HostTensor::f32(vec![300], want));
    // `run_into` reuses the caller's tensor; a smaller T gives a shorter output.
    let keep = match &out["y"].data {
        seqc_runtime::TensorData::F32(v) => v.as_ptr(),
        _ => unreachable!(),
    };
    model
        .run_into(&x(vec![1.0, -0.0]), &dims, &mut out)
        .expect("runs");
    assert_eq!(out["y"], HostTensor::f32(vec![2], vec![4.0, 2.0]));
    match &out["y"].data {
        seqc_runtime::TensorData::F32(v) => assert_eq!(v.as_ptr(), keep),
        _ => unreachable!(),
    }
    // T = 0: every grid is empty, so no launch; an empty output.
    let out = model.run(&x(Vec::new()), &dims).expect("runs");
    assert_eq!(out["y"], HostTensor::f32(vec![0], Vec::new()));
    // A negative element: kernel `check` reports status 1, as the CPU path would.
    let e = model.run(&x(vec![1.0, -1.0]), &dims).expect_err("refused");
    let m = e.to_string();
    assert!(matches!(e, ModelError::Kernel { .. }), "{e:?}");
    assert!(m.contains("`check`") && m.contains("out of range"), "{m}");
    // The model still runs after a kernel's failure.
    let out = model.run(&x(vec![3.0]), &dims).expect("runs");
    assert_eq!(out["y"], HostTensor::f32(vec![1], vec![7.0]));
}
