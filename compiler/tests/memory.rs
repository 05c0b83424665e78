//! Memory of compiled models against T (issue #5: "peak memory grows linearly in T for every
//! spec whose optimized form is linear"). Every spec in `ir-specs/` is optimised as `seqc
//! compile` does and compiled; a spec's optimised form is linear when its cost-model FLOPs
//! grow at most 4.5× from T = 4096 to T = 16384 (B = 1). For those, the runtime's arena at
//! T = 16384 (every intermediate and output buffer, placed by liveness: what a call
//! allocates beyond its inputs and weights) must be at most 4× the arena at T = 4096. The
//! table is printed (`cargo test -p seqc --test memory -- --nocapture`).

use seqc::ir::DimBindings;
use seqc::{frontend, opt};
use std::path::{Path, PathBuf};

fn specs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ir-specs");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("ir-specs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seq"))
        .collect();
    v.sort();
    v
}

fn dims(t: i64) -> DimBindings {
    [("B".to_string(), 1), ("T".to_string(), t)]
        .into_iter()
        .collect()
}

#[test]
fn arena_grows_linearly_in_t_where_the_optimised_work_does() {
    let (mut linear, mut failures) = (0, Vec::new());
    let mut last = None;
    println!("| spec | FLOPs ×, 4k → 16k | arena T = 4096 | arena T = 16384 | × |");
    for path in specs() {
        let spec = path.file_stem().unwrap().to_string_lossy().into_owned();
        let g = frontend::load_file(&path).unwrap_or_else(|e| panic!("{spec}: {e:?}"));
        let opts = opt::OptOptions {
            avoid_ops: seqc::kernel::UNSUPPORTED_OPT_OPS.to_vec(),
            ..Default::default()
        };
        let (o, _) = opt::optimize(&g, &opts).expect("optimizer");
        let f4 = opt::stats(&o, &dims(4096)).flops as f64;
        let f16 = opt::stats(&o, &dims(16384)).flops as f64;
        let fr = f16 / f4;
        if fr > 4.5 {
            println!("| {spec} | {fr:.2} | (not linear) | | |");
            continue;
        }
        linear += 1;
        let dir = tempfile::tempdir().expect("tempdir");
        let m = seqc::codegen::artifact::write_artifact(&o, "t", dir.path(), false)
            .unwrap_or_else(|e| panic!("{spec}: {e}"));
        let a4 = seqc_runtime::model::arena_bytes(&m, &dims(4096)).expect("arena at 4096");
        let a16 = seqc_runtime::model::arena_bytes(&m, &dims(16384)).expect("arena at 16384");
        last = Some(m);
        let ar = a16 as f64 / a4 as f64;
        println!(
            "| {spec} | {fr:.2} | {:.1} MiB | {:.1} MiB | {ar:.2} |",
            a4 as f64 / 1048576.0,
            a16 as f64 / 1048576.0
        );
        if a16 > 4 * a4 {
            failures.push(format!(
                "{spec}: arena {a4} B at T = 4096, {a16} B at 16384"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Sizes need every dim: a missing one is named, not guessed.
    let m = last.expect("a linear spec was compiled");
    let only_b: seqc_runtime::DimValues = [("B".to_string(), 1)].into_iter().collect();
    let e = seqc_runtime::model::arena_bytes(&m, &only_b)
        .unwrap_err()
        .to_string();
    assert!(e.contains("dim `T` is not bound"), "{e}");
    // Most specs are linear after optimisation (the recurrences, linear attention, windowed
    // and sparse attention); a classification that finds none would test nothing.
    assert!(linear >= 20, "only {linear} specs classified linear");
}
