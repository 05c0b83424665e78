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
