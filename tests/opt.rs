//! Every spec in `ir-specs/`: its IR after the e-graph optimizer (at the default cost dims,
//! B = 1, T = 4096) matches its reviewed snapshot. Adding a spec adds its snapshot.

use seqc::{frontend, ir, opt};

#[test]
fn opt_snapshots() {
    insta::glob!("../ir-specs", "*.seq", |path| {
        // A spec that does not load is reported by tests/specs.rs.
        let Ok(g) = frontend::load_file(path) else {
            return;
        };
        let (o, _) = opt::optimize(&g, &opt::OptOptions::default())
            .unwrap_or_else(|e| panic!("the optimizer failed: {e}"));
        insta::assert_snapshot!("opt", ir::print::print_graph(&o));
    });
}

/// Mamba optimised for the H100 target, where the cost model takes the chunk-local + carry
/// form of its selective scan (R6, `scan-chunk`; chunk 64 at T = 4096).
#[test]
fn opt_snapshot_mamba_h100() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ir-specs/mamba.seq");
    let g = frontend::load_file(&path).unwrap_or_else(|e| panic!("{}", e.render(false)));
    let opts = opt::OptOptions {
        target: opt::Target::h100(),
        ..Default::default()
    };
    let (o, _) = opt::optimize(&g, &opts).unwrap_or_else(|e| panic!("the optimizer failed: {e}"));
    insta::assert_snapshot!("opt_h100_mamba", ir::print::print_graph(&o));
}
