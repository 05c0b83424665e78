//! Every spec in `ir-specs/`: it checks, its AST and IR dumps match their reviewed snapshots,
//! and both text forms print and parse back to the same thing. Adding a spec adds its tests.

use seqc::{frontend, ir, syntax};
use seqc_tests::rel;

#[test]
fn ast_snapshots() {
    insta::glob!("../ir-specs", "*.seq", |path| {
        let src = std::fs::read_to_string(path).unwrap();
        let prog = frontend::parse(&rel(path), &src).unwrap_or_else(|e| panic!("{e}"));
        insta::assert_snapshot!("ast", syntax::print::print_program(&prog));
    });
}

#[test]
fn ir_snapshots() {
    insta::glob!("../ir-specs", "*.seq", |path| {
        let g = frontend::load_file(path).unwrap_or_else(|e| panic!("{}", e.render(false)));
        insta::assert_snapshot!("ir", ir::print::print_graph(&g));
    });
}

/// print(parse(print(ast))) == print(ast): the AST text form is a fixed point.
#[test]
fn ast_text_round_trips() {
    for path in seqc_tests::files("ir-specs", "seq") {
        let src = std::fs::read_to_string(&path).unwrap();
        let p1 = frontend::parse(&rel(&path), &src).unwrap();
        let t1 = syntax::print::print_program(&p1);
        let p2 =
            frontend::parse("reprinted", &t1).unwrap_or_else(|e| panic!("{}", e.render(false)));
        assert_eq!(t1, syntax::print::print_program(&p2), "{}", rel(&path));
        // The re-printed source lowers to the same IR.
        let g1 = frontend::load_str("a", &src).unwrap();
        let g2 = frontend::load_str("b", &t1).unwrap();
        assert_eq!(g1, g2, "{}", rel(&path));
    }
}

/// parse(print(ir)) == ir for every spec.
#[test]
fn ir_text_round_trips() {
    for path in seqc_tests::files("ir-specs", "seq") {
        let g = frontend::load_file(&path).unwrap();
        let text = ir::print::print_graph(&g);
        let back = ir::parse::parse_graph(&text).unwrap_or_else(|e| panic!("{}: {e}", rel(&path)));
        assert_eq!(back, g, "{}", rel(&path));
        assert_eq!(ir::print::print_graph(&back), text);
        ir::verify::verify(&back).unwrap();
    }
}

/// Each spec opens with a comment citing its paper.
#[test]
fn specs_cite_their_paper() {
    for path in seqc_tests::files("ir-specs", "seq") {
        let src = std::fs::read_to_string(&path).unwrap();
        let head: String = src.lines().take_while(|l| l.starts_with("//")).collect();
        assert!(
            head.contains("arXiv") || head.contains("http") || head.contains("20"),
            "{} must open with a comment citing its paper",
            rel(&path)
        );
    }
}
