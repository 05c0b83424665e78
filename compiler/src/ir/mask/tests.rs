//! Tests of the mask language: text round trips and errors, exact evaluation against the
//! interpreter's i32 semantics written out by hand, and the tile classifier against
//! brute-force evaluation of every entry of the tile (proptest over random predicates).

use super::*;
use proptest::prelude::*;

fn p(text: &str) -> Mask {
    Mask::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn text_round_trips() {
    for text in [
        "true",
        "le(s, t)",
        "and(le(s, t), lt(sub(t, s), 4))",
        "or(lt(s, 2), not(ge(sub(t, s), -3)))",
        "eq(rem(div(mul(t, 3), 7), 5), maximum(minimum(s, 2), -2147483648))",
        "ne(lt(s, t), eq(t, 0))",
        "eq(rem(b1, 2), sub(3, div(rem(s, 8), 2)))",
        "le(sub(t, s), mul(2, table(b1, [1, 1, 2, -3])))",
        "eq(rem(t, table(b0, [4])), 0)",
        "ne(operand(3, [b1, div(t, 2), div(s, 2)]), 0)",
        "lt(t, operand(4, []))",
    ] {
        let m = p(text);
        assert_eq!(m.to_string(), text);
        assert_eq!(Mask::parse(&m.to_string()).unwrap(), m);
    }
    assert_eq!(
        p("  and ( le(s,t) ,true )").to_string(),
        "and(le(s, t), true)"
    );
}

#[test]
fn bad_text_is_an_error_naming_what_was_expected() {
    let cases = [
        (
            "",
            "expected `t`, `s`, `b0`, …, an integer, `true`, `false` or an operator, found the end",
        ),
        ("le(s, t", "expected `)`, found the end of the text"),
        ("le(s t)", "at character 6: expected `,`, found `t)`"),
        ("pow(t, 2)", "expected `t`, `s`, `b0`, …, an integer"),
        ("foo(t)", "found `foo(t)`"),
        ("le(s, t) x", "expected the end of the mask, found `x`"),
        (
            "lt(t, 99999999999)",
            "expected an i32 integer, found `99999999999)`",
        ),
        (
            "add(t, s)",
            "the mask `add(t, s)` is an integer, not a predicate",
        ),
        ("and(t, s)", "`and` expects a bool operand, found `t`"),
        (
            "lt(le(s, t), 3)",
            "`lt` expects an integer operand, found `le(s, t)`",
        ),
        (
            "eq(div(t, s), 0)",
            "`div` expects a non-zero integer constant divisor, found `s`",
        ),
        (
            "eq(rem(t, 0), 0)",
            "non-zero integer constant divisor, found `0`",
        ),
        ("not(t)", "`not` expects a bool, found the integer `t`"),
        ("lt(b01, t)", "found `b01, t)`"),
        (
            "lt(table(t, [1]), t)",
            "a `table` is indexed by a batch axis `bJ`, found `t`",
        ),
        (
            "lt(table(b0, [1, s]), t)",
            "a `table` holds integers, found `s`",
        ),
        ("lt(table(b0, 1), t)", "expected `[`, found `1), t)`"),
        (
            "eq(rem(t, table(b0, [1, 0])), 0)",
            "non-zero integer constant divisor, found `table(b0, [1, 0])`",
        ),
        (
            "lt(operand(2, [t]), 1)",
            "`operand` reads operand 2, but operands 0, 1, 2 are q, k, v",
        ),
        (
            "lt(operand(t, [t]), 1)",
            "an `operand` is numbered by a non-negative integer, found `t`",
        ),
        (
            "operand(3, [le(s, t)])",
            "`operand` index `le(s, t)` is not an integer",
        ),
        ("lt(operand(3, t), 1)", "expected `[`, found `t), 1)`"),
        (
            "lt(b256, t)",
            "expected a batch axis `b0` … `b255`, found `b256, t)`",
        ),
    ];
    for (text, want) in cases {
        let e = Mask::parse(text).expect_err(text);
        assert!(e.contains(want), "{text}: {e}");
    }
    let deep = format!("{}true{}", "not(".repeat(100), ")".repeat(100));
    assert!(
        Mask::parse(&deep)
            .unwrap_err()
            .contains("nested deeper than 64")
    );
}

#[test]
fn evaluation_follows_python_and_i32_semantics() {
    let m = p("eq(div(sub(t, s), 3), -1)");
    // (0 − 2) // 3 = −1 (floor), (0 − 3) // 3 = −1, (0 − 4) // 3 = −2.
    assert!(m.holds(0, 2) && m.holds(0, 3) && !m.holds(0, 4) && !m.holds(0, 0));
    let r = p("eq(rem(sub(t, s), 4), 3)");
    // −1 % 4 = 3 (the divisor's sign), 7 % 4 = 3.
    assert!(r.holds(0, 1) && r.holds(7, 0) && !r.holds(1, 0));
    let r = p("eq(rem(t, -4), -1)");
    assert!(r.holds(3, 0) && r.holds(7, 0) && !r.holds(1, 0));
    // i32 wrapping: 2147483647 + 1 wraps to −2147483648.
    let w = p("lt(add(t, 2147483647), 0)");
    assert!(w.holds(1, 0) && !w.holds(0, 0));
    let add = Mask::bin(BinaryOp::Add, Mask::Q, Mask::Int(1));
    assert_eq!(add.eval(4, 0), MaskVal::I(5));
}

#[test]
fn classifies_causal_and_window_tiles_exactly() {
    let causal = p("le(s, t)");
    assert_eq!(causal.classify((4, 8), (0, 4)), Tile::Full);
    assert_eq!(causal.classify((0, 4), (4, 8)), Tile::Skip);
    assert_eq!(causal.classify((0, 4), (0, 4)), Tile::Mixed);
    assert_eq!(causal.classify((0, 0), (0, 4)), Tile::Skip);
    let window = p("and(le(s, t), lt(sub(t, s), 8))");
    assert_eq!(window.classify((64, 128), (0, 32)), Tile::Skip);
    assert_eq!(window.classify((10, 12), (5, 7)), Tile::Full);
    assert_eq!(window.classify((10, 20), (5, 12)), Tile::Mixed);
    // Over a 64-tile grid of T = 4096, a window of 8 computes 2 tiles per row of tiles
    // (the diagonal one and, except in the first row, the one before it).
    let n = 4096 / 64;
    let computed = (0..n)
        .flat_map(|i| (0..n).map(move |j| (i, j)))
        .filter(|&(i, j)| {
            window.classify((i * 64, i * 64 + 64), (j * 64, j * 64 + 64)) != Tile::Skip
        })
        .count() as i64;
    assert_eq!(computed, 2 * n - 1);
    // A pattern per head: head 0 sees everything, the others are causal.
    let per_head = p("or(eq(b1, 0), le(s, t))");
    assert_eq!(per_head.batch_axes(), vec![1]);
    assert_eq!(
        per_head.classify_at((0, 4), (4, 8), &[(0, 1), (0, 1)]),
        Tile::Full
    );
    assert_eq!(
        per_head.classify_at((0, 4), (4, 8), &[(0, 1), (1, 2)]),
        Tile::Skip
    );
    assert_eq!(
        per_head.classify_at((0, 4), (4, 8), &[(0, 1), (0, 2)]),
        Tile::Mixed
    );
    assert!(per_head.holds_at(0, 5, &[3, 0]) && !per_head.holds_at(0, 5, &[0, 1]));
}

/// A block table read through `operand`: blocks of 2 positions, table [[1, 0], [0, 1]]
/// (block-diagonal), T = S = 4.
#[test]
fn operand_reads_are_evaluated_and_classified_from_the_values() {
    let m = p("eq(operand(3, [div(t, 2), div(s, 2)]), 1)");
    assert_eq!(m.operands(), vec![(3, 2)]);
    let ops = [MaskOperand {
        shape: vec![2, 2],
        values: vec![1, 0, 0, 1],
    }];
    for t in 0..4 {
        for s in 0..4 {
            assert_eq!(m.holds_in(t, s, &[], &ops), t / 2 == s / 2, "({t}, {s})");
        }
    }
    // Outside the table (t = 4 is block 2) reads 0; without the values nothing holds.
    assert!(!m.holds_in(4, 4, &[], &ops) && !m.holds(0, 0));
    assert_eq!(m.classify_in((0, 2), (0, 2), &[], &ops), Tile::Full);
    assert_eq!(m.classify_in((0, 2), (2, 4), &[], &ops), Tile::Skip);
    assert_eq!(m.classify_in((0, 4), (0, 2), &[], &ops), Tile::Mixed);
    assert_eq!(m.classify_in((2, 6), (2, 4), &[], &ops), Tile::Mixed);
    // Without the values every tile may hold anything.
    assert_eq!(m.classify((0, 2), (0, 2)), Tile::Mixed);
    assert_eq!(m.classify((0, 2), (2, 4)), Tile::Mixed);
    // A scalar operand (e.g. a length computed by the graph).
    let last = p("eq(t, operand(4, []))");
    let ops = [
        ops[0].clone(),
        MaskOperand {
            shape: vec![],
            values: vec![3],
        },
    ];
    assert!(last.holds_in(3, 0, &[], &ops) && !last.holds_in(2, 0, &[], &ops));
    assert_eq!(last.classify_in((0, 3), (0, 9), &[], &ops), Tile::Skip);
}

/// Random integer expressions over t and s (depth-limited).
fn int_expr() -> impl Strategy<Value = Mask> {
    let leaf = prop_oneof![
        Just(Mask::Q),
        Just(Mask::K),
        Just(Mask::Batch(0)),
        Just(Mask::Batch(2)),
        (-20i64..20).prop_map(Mask::Int),
        proptest::collection::vec(-9i64..9, 1..5).prop_map(|vs| Mask::Table(0, vs)),
        Just(Mask::Operand(4, vec![])),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        let divisor = prop_oneof![
            prop_oneof![(1i64..9), (-9i64..-1)].prop_map(Mask::Int),
            proptest::collection::vec(prop_oneof![(1i64..9), (-9i64..-1)], 1..5)
                .prop_map(|vs| Mask::Table(0, vs)),
        ];
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Mask::Operand(3, vec![a, b])),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Mask::bin(BinaryOp::Add, a, b)),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Mask::bin(BinaryOp::Sub, a, b)),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Mask::bin(BinaryOp::Mul, a, b)),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Mask::bin(BinaryOp::Max, a, b)),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Mask::bin(BinaryOp::Min, a, b)),
            (inner.clone(), divisor.clone()).prop_map(|(a, b)| Mask::bin(BinaryOp::Div, a, b)),
            (inner, divisor).prop_map(|(a, b)| Mask::bin(BinaryOp::Rem, a, b)),
        ]
    })
}

/// Random predicates: comparisons of integer expressions joined by and/or/not/eq.
fn predicate() -> impl Strategy<Value = Mask> {
    let cmp = prop_oneof![
        Just(BinaryOp::Lt),
        Just(BinaryOp::Le),
        Just(BinaryOp::Gt),
        Just(BinaryOp::Ge),
        Just(BinaryOp::Eq),
        Just(BinaryOp::Ne),
    ];
    let leaf = prop_oneof![
        (cmp, int_expr(), int_expr()).prop_map(|(op, a, b)| Mask::bin(op, a, b)),
        any::<bool>().prop_map(Mask::Bool),
    ];
    leaf.prop_recursive(3, 10, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Mask::bin(BinaryOp::And, a, b)),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Mask::bin(BinaryOp::Or, a, b)),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Mask::bin(BinaryOp::Ne, a, b)),
            inner.prop_map(|a| Mask::Not(Box::new(a))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// `Skip` only when every entry is false, `Full` only when every entry is true.
    #[test]
    fn tile_classification_is_sound(
        m in predicate(),
        t0 in 0i64..40, tn in 1i64..12,
        s0 in 0i64..40, sn in 1i64..12,
        b0 in 0i64..6, bn in 1i64..4, b2 in 0i64..6,
        table in proptest::collection::vec(-3i64..4, 30),
        scalar in -5i64..40,
    ) {
        prop_assert!(m.check().is_ok(), "{m}");
        // Batch axis 0 over a range, axis 1 unread, axis 2 at one index.
        let batch = [(b0, b0 + bn), (0, 3), (b2, b2 + 1)];
        // Operand 3 is a [5, 6] table, operand 4 a scalar.
        let ops = [
            MaskOperand { shape: vec![5, 6], values: table },
            MaskOperand { shape: vec![], values: vec![scalar] },
        ];
        for ops in [&ops[..], &[]] {
            let tile = m.classify_in((t0, t0 + tn), (s0, s0 + sn), &batch, ops);
            let mut vals = Vec::new();
            for t in t0..t0 + tn {
                for s in s0..s0 + sn {
                    for b in b0..b0 + bn {
                        vals.push(m.holds_in(t, s, &[b, 0, b2], ops));
                    }
                }
            }
            match tile {
                Tile::Skip => prop_assert!(vals.iter().all(|v| !v), "{m}: skipped a true entry"),
                Tile::Full => prop_assert!(vals.iter().all(|v| *v), "{m}: full with a false entry"),
                Tile::Mixed => {}
            }
        }
        // The text form round-trips.
        prop_assert_eq!(Mask::parse(&m.to_string()).unwrap(), m);
    }
}
