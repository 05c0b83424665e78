//! Tests of the IR text form: round trips, error messages and fuzzing.

use super::*;
use crate::ir::print::{print_graph, samples};
use proptest::prelude::*;

fn round_trip(g: &Graph) {
    let text = print_graph(g);
    let back = parse_graph(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(&back, g, "{text}");
    assert_eq!(print_graph(&back), text);
}

fn error(text: &str) -> String {
    parse_graph(text).expect_err(text).to_string()
}

#[test]
fn round_trips_every_operator() {
    let g = samples::all_ops();
    let text = print_graph(&g);
    let mut names: Vec<&str> = vec!["input", "param", "const", "iota", "random", "select"];
    names.extend(op::UNARY_OPS.map(op::unary_name));
    names.extend(op::BINARY_OPS.map(op::binary_name));
    names.extend(op::REDUCE_OPS.map(op::reduce_name));
    names.extend([
        "cast",
        "einsum",
        "reshape",
        "transpose",
        "broadcast",
        "slice",
        "concat",
    ]);
    names.extend([
        "pad",
        "take",
        "gather",
        "scatter_add",
        "grouped_matmul",
        "sort",
        "argsort",
        "topk",
    ]);
    names.extend([
        "argmax",
        "scan",
        "scan_matrix",
        "scan_fn",
        "extract",
        "conv1d_causal",
        "attention",
        "attention_lse",
    ]);
    for name in names {
        let used = g.nodes.iter().any(|n| n.op.name() == name);
        assert!(used, "the sample graph lacks `{name}`");
    }
    assert!(text.contains("value=-inf"), "{text}");
    round_trip(&g);
    round_trip(&samples::nested_scan());
    round_trip(&Graph::new(vec![]));
}

#[test]
fn floats_round_trip_bit_exactly() {
    let xs = [
        0.5,
        -0.0,
        0.0,
        0.1 + 0.2,
        1e-7,
        1e20,
        1e300,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
        f32::MAX as f64,
        std::f64::consts::PI,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ];
    for x in xs {
        let mut g = Graph::new(vec![]);
        let id = g.add(
            Op::Const {
                value: Literal::Float(x),
                dtype: DType::F32,
            },
            vec![],
        );
        g.add_output("c", id.unwrap());
        let text = print_graph(&g);
        let back = parse_graph(&text).unwrap();
        let Op::Const {
            value: Literal::Float(y),
            ..
        } = back.nodes[0].op
        else {
            panic!("{text}")
        };
        assert!(
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
            "{x} {y}"
        );
        assert_eq!(print_graph(&back), text);
    }
}

#[test]
fn dims_parse_back_canonically() {
    let (b, t) = (DimExpr::sym("B"), DimExpr::sym("T"));
    let c = DimExpr::constant;
    let dims = [
        b.mul(&t).mul(&c(64)),
        t.mul(&c(2)).sub(&c(1)),
        t.ceil_div(64).unwrap(),
        t.modulo(8).unwrap(),
        c(100).sub(&b),
        b.neg(),
        c(-5),
        c(i64::MIN + 1),
        b.mul(&c(i64::MIN + 1)).sub(&t),
        t.ceil_div(3)
            .unwrap()
            .mul(&b)
            .add(&t.modulo(4).unwrap().mul(&c(3))),
        t.sub(&c(1))
            .floor_div(2)
            .unwrap()
            .add(&b)
            .modulo(5)
            .unwrap(),
        b.mul(&b).mul(&t).sub(&b.mul(&t).mul(&c(7))).add(&c(9)),
    ];
    let ctx = ["B".to_string(), "T".to_string()];
    for d in dims {
        let text = format!("{d}");
        let mut p = Parser {
            toks: lex(&text).unwrap(),
            pos: 0,
            depth: 0,
        };
        assert_eq!(p.dim(&ctx).unwrap(), d, "{text}");
        assert_eq!(p.peek().tok, Tok::Eof, "{text}");
    }
    // Both the current Display form of a division and the fully parenthesised one.
    for text in ["(T + 63 / 64)", "((T + 63) / 64)", "((T + 63) / 64)*1"] {
        let mut p = Parser {
            toks: lex(text).unwrap(),
            pos: 0,
            depth: 0,
        };
        assert_eq!(p.dim(&ctx).unwrap(), t.ceil_div(64).unwrap(), "{text}");
    }
}

#[test]
fn strings_round_trip() {
    for name in [
        "a.b.0",
        "q\"uote",
        "back\\slash",
        "new\nline\r\t",
        "\u{0}\u{7f}",
        "é✓",
    ] {
        let mut g = Graph::new(vec![]);
        let ty = TensorType::new(DType::F32, vec![]);
        let id = g.add_leaf(Op::Param { name: name.into() }, ty);
        g.add_output(name, id);
        round_trip(&g);
    }
}

#[test]
fn every_distribution_round_trips() {
    for dist in [
        Distribution::Normal,
        Distribution::Uniform,
        Distribution::TorchNormal,
    ] {
        let mut g = Graph::new(vec![]);
        let op = Op::Random {
            shape: vec![DimExpr::constant(17)],
            dist,
            seed: 1234,
        };
        let id = g.add(op, vec![]).unwrap();
        g.add_output("r", id);
        round_trip(&g);
    }
    assert!(
        error("graph() {\n  %0 = random shape=[2] dist=torch seed=1 : f32[2]\n}")
            .contains("unknown distribution `torch`")
    );
}

#[test]
fn reports_position_and_token() {
    let text = "graph() {\n  %0 = input \"x\" : f32[]\n  %1 = neg(%0) ) : f32[]\n}";
    assert_eq!(error(text), "line 3, col 16: expected `:`, found `)`");
    let e = parse_graph("graph(B) {\n  %0 = input \"x\" f32[B]\n}").unwrap_err();
    assert_eq!((e.line, e.col), (2, 18));
    assert_eq!(e.message, "expected `:`, found `f32`");
}

#[test]
fn rejects_bad_ids_and_references() {
    let head = "graph() {\n  %0 = input \"x\" : f32[]\n";
    let e = error(&format!("{head}  %2 = neg(%0) : f32[]\n}}"));
    assert!(e.contains("expected node `%1` next"), "{e}");
    let e = error(&format!("{head}  %1 = neg(%1) : f32[]\n}}"));
    assert_eq!(e, "line 3, col 12: `%1` is not defined before this point");
    let e = error(&format!("{head}  %1 = add(%0, %7) : f32[]\n}}"));
    assert!(e.contains("`%7` is not defined"), "{e}");
    let e = error(&format!("{head}  output \"y\" = %3\n}}"));
    assert!(e.contains("`%3` is not defined"), "{e}");
}

#[test]
fn rejects_wrong_types_naming_the_node() {
    let head = "graph(B) {\n  %0 = input \"x\" : f32[B, 4]\n";
    let e = error(&format!("{head}  %1 = exp(%0) : f32[B, 5]\n}}"));
    assert_eq!(
        e,
        "line 3, col 3: %1 (`exp`): the text gives type f32[B, 5], but inference gives f32[B, 4]"
    );
    let e = error(&format!("{head}  %1 = not(%0) : f32[B, 4]\n}}"));
    assert!(
        e.starts_with("line 3, col 3: %1 (`not`): `not` does not accept"),
        "{e}"
    );
    let e = error(&format!("{head}  %1 = frob(%0) : f32[B, 4]\n}}"));
    assert_eq!(e, "line 3, col 8: unknown operator `frob`");
    let e = error(&format!("{head}  %1 = exp(%0) : f32[Q, 4]\n}}"));
    assert_eq!(e, "line 3, col 22: dim `Q` is not declared in graph(B)");
    let e = error(&format!(
        "{head}  %1 = sum(%0) keepdim=true axes=[1] : f32[B]\n}}"
    ));
    assert!(e.contains("expected `axes=`, found `keepdim`"), "{e}");
    let e = error("graph() {\n  %0 = input \"x\" : (f32[])\n}");
    assert!(e.contains("a leaf must have a tensor type"), "{e}");
}

#[test]
fn rejects_graphs_that_do_not_verify() {
    let text = "graph() {\n  %0 = input \"x\" : f32[]\n  %1 = input \"x\" : f32[]\n}";
    let e = error(text);
    assert!(
        e.starts_with("line 1, col 1: the graph does not verify: %1 (`input`)"),
        "{e}"
    );
    assert!(error("graph(B, B) {\n}").contains("dim `B` is declared twice"));
}

#[test]
fn rejects_malformed_tokens() {
    assert!(error("graph() { %0 = input \"x : f32[] }").contains("unterminated string"));
    assert!(error("graph() { %0 = input \"\\q\" : f32[] }").contains("unknown escape"));
    assert!(error("graph() { %0 = input \"\\u{d800}\" : f32[] }").contains("not a character"));
    assert!(error("graph() { %99999999999 }").contains("too large"));
    assert!(error("graph() { } }").contains("expected end of input"));
    assert!(
        error("graph() { %0 = const 99999999999999999999 dtype=i64 : i64[] }").contains("outside")
    );
    assert!(error("graph() { # }").contains("unexpected character '#'"));
    let deep = format!(
        "graph(T) {{ %0 = input \"x\" : f32[{}T{}] }}",
        "(".repeat(40),
        ")".repeat(40)
    );
    assert!(error(&deep).contains("nesting deeper than"));
    let min = "graph(T) { %0 = input \"x\" : f32[-9223372036854775807*T - 9223372036854775807*T] }";
    assert!(error(min).contains("coefficient out of range"));
    let slice = "graph() { %0 = input \"x\" : f32[4]\n %1 = slice(%0) axis=0 \
                     start=-9223372036854775808 end=0 step=1 : f32[0] }";
    assert!(error(slice).contains("coefficient out of range"));
    let comment = "// a comment\ngraph() { // another\n}\n";
    assert_eq!(parse_graph(comment).unwrap(), Graph::new(vec![]));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_graph(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn never_panics_on_mutations(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<char>(), 0usize..14), 1..6),
    ) {
        let mut text: Vec<char> = print_graph(&samples::all_ops()).chars().collect();
        let pool: Vec<char> = "%()[]{},=:*/+-\"\\ 0123456789e.-_".chars().collect();
        for (at, kind, c, pick) in edits {
            let i = at.index(text.len() + 1);
            let c = if pick < pool.len() { pool[pick] } else { c };
            match kind {
                0 if i < text.len() => { text.remove(i); }
                1 => text.insert(i, c),
                2 if i < text.len() => text[i] = c,
                _ => { let j = (i + 40).min(text.len()); text.drain(i.min(j)..j); }
            }
        }
        let text: String = text.into_iter().collect();
        if let Ok(g) = parse_graph(&text) {
            prop_assert_eq!(parse_graph(&print_graph(&g)), Ok(g));
        }
    }
}

#[test]
fn linear_attn_round_trips() {
    let text = "graph(T) {
  %0 = input \"q\" : f32[2, T, 3]
  %1 = input \"k\" : f32[2, T, 3]
  %2 = input \"v\" : f32[2, T, 5]
  %3 = input \"g\" : f32[2, T]
  %4 = linear_attn(%0, %1, %2) chunk=16 strict=false : f32[2, T, 5]
  %5 = linear_attn(%0, %1, %2, %3) chunk=1 strict=true : f32[2, T, 5]
  output \"a\" = %4
  output \"b\" = %5
}
";
    let g = parse_graph(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(print_graph(&g), text);
    round_trip(&g);
    let bad = text.replace("chunk=16", "chunk=0");
    assert!(
        error(&bad).contains("chunk must be at least 1, found 0"),
        "{}",
        error(&bad)
    );
}

#[test]
fn rejects_bad_attention_naming_what_is_wrong() {
    let head = "graph(T) {\n  %0 = input \"q\" : f32[2, T, 4]\n  %1 = input \"k\" : f32[T, 4]\n  %2 = input \"v\" : f32[T, 3]\n  %3 = input \"i\" : i32[T, 4]\n";
    let att = |args: &str, attrs: &str, ty: &str| {
        error(&format!(
            "{head}  %4 = attention({args}) {attrs} : {ty}\n}}"
        ))
    };
    let good = "mask=\"le(s, t)\" scale=0.5 tile_q=64 tile_k=64";
    // The good form parses, also with a mask that reads a table operand.
    parse_graph(&format!(
        "{head}  %4 = attention(%0, %1, %2) {good} : f32[2, T, 3]\n}}"
    ))
    .unwrap();
    parse_graph(&format!(
        "{head}  %4 = attention(%0, %1, %2, %3) mask=\"eq(operand(3, [t, div(s, 4)]), 1)\" scale=0.5 tile_q=64 tile_k=64 : f32[2, T, 3]\n}}"
    ))
    .unwrap();
    let cases = [
        (
            "%0, %1, %2",
            "mask=\"le(s, t\" scale=0.5 tile_q=64 tile_k=64",
            "line 6, col 35: mask, at character 8: expected `)`, found the end of the text",
        ),
        (
            "%0, %1, %2",
            "mask=\"add(s, t)\" scale=0.5 tile_q=64 tile_k=64",
            "the mask `add(s, t)` is an integer, not a predicate",
        ),
        (
            "%0, %1, %2",
            "mask=\"true\" scale=true tile_q=64 tile_k=64",
            "expected a number for `scale`, found a bool",
        ),
        (
            "%0, %1, %2",
            "mask=\"true\" scale=inf tile_q=64 tile_k=64",
            "`attention` scale must be finite, found inf",
        ),
        (
            "%0, %1, %2",
            "mask=\"true\" scale=1.0 tile_q=0 tile_k=64",
            "`attention` tiles must be at least 1, found tile_q=0 tile_k=64",
        ),
        (
            "%0, %1, %2",
            "mask=\"true\" tile_q=1 tile_k=64",
            "expected `scale=`, found `tile_q`",
        ),
        (
            "%0, %2, %2",
            good,
            "`attention` q and k must have the same last dim D, found f32[2, T, 4] and f32[T, 3]",
        ),
        (
            "%3, %3, %2",
            good,
            "`attention` needs a float tensor, found i32",
        ),
        (
            "%0, %1, %3",
            good,
            "`attention` operands must share one dtype, found f32[2, T, 4], f32[T, 4] and i32[T, 4]",
        ),
        ("%0, %1", good, "`attention` takes 3 operand(s), found 2"),
        // Operands read by the mask (`operand(J, [...])`): exactly those, i32 or bool, at
        // the rank the mask reads.
        (
            "%0, %1, %2",
            "mask=\"eq(operand(3, [t]), 1)\" scale=0.5 tile_q=64 tile_k=64",
            "`attention` takes 4 operand(s), found 3",
        ),
        (
            "%0, %1, %2, %3",
            good,
            "`attention` takes 3 operand(s), found 4",
        ),
        (
            "%0, %1, %2, %3",
            "mask=\"eq(operand(3, [t]), 1)\" scale=0.5 tile_q=64 tile_k=64",
            "`attention` operand 3 must be an i32 or bool tensor of rank 1 (the mask reads it so), found i32[T, 4]",
        ),
        (
            "%0, %1, %2, %0",
            "mask=\"eq(operand(3, [b0, t, s]), 1)\" scale=0.5 tile_q=64 tile_k=64",
            "`attention` operand 3 must be an i32 or bool tensor of rank 3 (the mask reads it so), found f32[2, T, 4]",
        ),
        (
            "%0, %1, %2, %3",
            "mask=\"and(eq(operand(3, [t]), 1), eq(operand(3, [t, s]), 1))\" scale=0.5 tile_q=64 tile_k=64",
            "`attention` operand 3 must be read by the mask with one rank, found reads of ranks [1, 2]",
        ),
        (
            "%0, %1, %2, %3, %3",
            "mask=\"eq(operand(4, [t, s]), 1)\" scale=0.5 tile_q=64 tile_k=64",
            "`attention` operand 3 must be read by the mask with one rank, found reads of ranks []",
        ),
    ];
    for (args, attrs, want) in cases {
        let e = att(args, attrs, "f32[2, T, 3]");
        assert!(e.contains(want), "{args} {attrs}: {e}");
    }
    // Key counts and batch dims that do not fit.
    let head2 = "graph(T) {\n  %0 = input \"q\" : f32[2, T, 4]\n  %1 = input \"k\" : f32[3, 5, 4]\n  %2 = input \"v\" : f32[3, 6, 2]\n  %3 = input \"w\" : f32[4]\n";
    let e = error(&format!(
        "{head2}  %4 = attention(%0, %1, %2) {good} : f32[2, T, 2]\n}}"
    ));
    assert!(
        e.contains(
            "`attention` k and v must have the same key dim S, found f32[3, 5, 4] and f32[3, 6, 2]"
        ),
        "{e}"
    );
    let e = error(&format!(
        "{head2}  %4 = attention(%0, %1, %1) {good} : f32[2, T, 4]\n}}"
    ));
    assert!(
        e.contains("`attention` batch dims: shapes [2] and [3] do not broadcast"),
        "{e}"
    );
    let e = error(&format!(
        "{head2}  %4 = attention(%1, %1, %1) mask=\"lt(s, table(b0, [1, 2]))\" scale=1.0 tile_q=1 tile_k=1 : f32[3, 5, 4]\n}}"
    ));
    assert!(
        e.contains("`attention` mask's table over b0 has 2 values, but batch axis 0 is 3"),
        "{e}"
    );
    let e = error(&format!(
        "{head2}  %4 = attention(%1, %1, %1) mask=\"lt(s, b1)\" scale=1.0 tile_q=1 tile_k=1 : f32[3, 5, 4]\n}}"
    ));
    assert!(
        e.contains("`attention` mask reads batch axis b1, but the result has 1 batch axes"),
        "{e}"
    );
    let e = error(&format!(
        "{head2}  %4 = attention(%3, %3, %3) {good} : f32[4]\n}}"
    ));
    assert!(
        e.contains(
            "`attention` takes q: [..., T, D], k: [..., S, D], v: [..., S, E], found f32[4]"
        ),
        "{e}"
    );
}
