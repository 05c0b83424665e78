//! Unit tests of lowering to kernels: what is fused and what is materialised, live ranges,
//! `scan_fn`'s time loop, and the errors for what the backend cannot compile.

use super::plan::live_ranges;
use super::print::print_program;
use super::{BufKind, Sched, lower};
use crate::frontend::load_str;
use crate::ir::Graph;

fn graph(body: &str) -> Graph {
    load_str("t.seq", &format!("dim B, T;\n{body}")).expect("spec loads")
}

#[test]
fn views_and_single_use_elementwise_chains_are_fused() {
    // transpose → exp → + 1: one kernel, reading x through the transposed index map.
    let p = lower(&graph(
        "input x: f32[B, T];\noutput y = exp(transpose(x, [1, 0])) + 1.0;",
    ))
    .expect("lowers");
    assert_eq!(p.kernels.len(), 1, "{}", print_program(&p));
    let text = print_program(&p);
    assert!(
        text.contains("b1[((i1 * 1) + i0)]") || text.contains("b0[((i1 * T) + i0)]"),
        "{text}"
    );
    assert!(
        text.contains("add.f32(exp.f32(b0[((i1 * T) + i0)]), 1.0:f32)"),
        "{text}"
    );
    assert_eq!(p.kernels[0].root.sched, Sched::Parallel);
}

#[test]
fn a_value_used_twice_is_materialised_once() {
    let p = lower(&graph(
        "input x: f32[B, T];\nlet e = exp(x);\noutput y = e * e;",
    ))
    .expect("lowers");
    assert_eq!(p.kernels.len(), 2, "{}", print_program(&p));
    assert_eq!(p.kernels[0].op, "exp");
    assert_eq!(p.kernels[1].op, "mul");
}

#[test]
fn reductions_have_an_accumulator_and_live_ranges_end_at_the_last_reader() {
    let p = lower(&graph(
        "input x: f32[B, T];\nlet s = exp(sum(x, axis = 1));\noutput y = s + 1.0;\noutput z = sum(x, axis = 0);",
    ))
    .expect("lowers");
    let text = print_program(&p);
    assert!(text.contains("a0 = add.f64(a0, cast.f32.f64(b0["), "{text}");
    let lives = live_ranges(&p);
    let temps: Vec<_> = p
        .buffers
        .iter()
        .filter(|b| b.kind == BufKind::Temp)
        .collect();
    assert_eq!(lives.len(), temps.len());
    // The sum is read only by the next kernel; the outputs live to the end.
    let last = p.kernels.len() - 1;
    assert_eq!((lives[0].first, lives[0].last), (0, 1), "{text}");
    assert!(lives[1..].iter().all(|l| l.last == last), "{text}");
}

const SCAN_FN: &str = "input x: f32[B, T, 3];
input w: f32[3, 3];
fn step(h, x, w) { tanh(einsum(\"bi,ij->bj\", h, w) + x) }
output y = scan_fn(step, init = [zeros([B, 3])], xs = [x], args = [w], axis = 1);";

#[test]
fn scan_fn_is_one_serial_time_loop_over_its_body_kernels() {
    let p = lower(&graph(SCAN_FN)).expect("lowers");
    let text = print_program(&p);
    // One kernel: the time loop, serial, holding the body's einsum and its tanh.
    assert_eq!(p.kernels.len(), 1, "{text}");
    let k = &p.kernels[0];
    assert_eq!(
        (k.op.as_str(), k.root.sched),
        ("scan_fn", Sched::Serial),
        "{text}"
    );
    // (The einsum's output loops over B and its 3 columns are merged into one.)
    assert!(
        text.contains("  for i0 in 0..T {\n    for i4 in 0..(B * 3) {"),
        "{text}"
    );
    assert_eq!(k.root.body.len(), 2, "{text}");
    // Buffers: x, w, the stacked y (the extract's), the einsum's per-step temporary; both
    // arena buffers live in k0 only.
    assert_eq!(p.buffers.len(), 4, "{text}");
    assert!(
        text.contains("b2: f32[B, T, 3] arena live k0..k0"),
        "{text}"
    );
    assert!(text.contains("b3: f32[B, 3] arena live k0..k0"), "{text}");
    assert!(text.contains("output `y` = b2"), "{text}");
    // The previous state is read back from slice t − 1 of y (the init, zeros, at t = 0);
    // x is read at step t through its index map; the new state goes to slice t of y.
    assert!(
        text.contains("select((i0 < 1), 0.0:f32, b2[((((a1 * T) + (i0 - 1)) * 3) + i2)])"),
        "{text}"
    );
    assert!(text.contains("b0[((((i1 * T) + i0) * 3) + i2)]"), "{text}");
    assert!(
        text.contains("b2[((((i1 * T) + i0) * 3) + i2)] = tanh.f32("),
        "{text}"
    );
}

#[test]
fn a_malformed_scan_fn_is_named() {
    use crate::ir::{Op, TensorType, Type};
    use seqc_runtime::DType;
    let base = graph(SCAN_FN);
    let at = base
        .nodes
        .iter()
        .position(|n| matches!(n.op, Op::ScanFn { .. }))
        .expect("a scan_fn");
    let err = |f: &dyn Fn(&mut Op)| {
        let mut g = base.clone();
        f(&mut g.nodes[at].op);
        let s = lower(&g).unwrap_err().to_string();
        assert!(s.contains(&format!("node %{at} `scan_fn`")), "{s}");
        s
    };
    let s = err(&|op| {
        if let Op::ScanFn { n_xs, .. } = op {
            *n_xs = 0;
        }
    });
    assert!(
        s.contains("expects at least one state and one sequence, found 1 state(s), 0 sequence(s)"),
        "{s}"
    );
    let s = err(&|op| {
        if let Op::ScanFn { axis, .. } = op {
            *axis = 7;
        }
    });
    assert!(s.contains("the sequences have no axis 7"), "{s}");
    let s = err(&|op| {
        if let Op::ScanFn { body, .. } = op {
            body.outputs.clear();
        }
    });
    assert!(
        s.contains("the body's inputs or outputs do not match the scan"),
        "{s}"
    );
    // The node's type: not a tuple; a state that does not stack its init.
    let retyped = |f: &dyn Fn(&mut Vec<TensorType>) -> Type| {
        let mut g = base.clone();
        let Type::Tuple(ts) = &mut g.nodes[at].ty else {
            panic!("a tuple")
        };
        g.nodes[at].ty = f(ts);
        lower(&g).unwrap_err().to_string()
    };
    let s = retyped(&|ts| Type::Tensor(ts[0].clone()));
    assert!(s.contains("expects a tuple type"), "{s}");
    let s = retyped(&|ts| {
        ts[0].shape.pop();
        Type::Tuple(ts.clone())
    });
    assert!(
        s.contains("state 0 (f32[B, T]) does not stack its init along axis 1"),
        "{s}"
    );
    // A param the enclosing graph does not have.
    let s = err(&|op| {
        if let Op::ScanFn { body, .. } = op {
            let t = TensorType::new(DType::F32, Vec::new());
            body.add_leaf(
                Op::Param {
                    name: "ghost".into(),
                },
                t,
            );
        }
    });
    assert!(
        s.contains("param `ghost` is not a param of the enclosing graph"),
        "{s}"
    );
}

#[test]
fn sort_and_topk_rank_with_nan_largest_and_ties_by_index() {
    let p = lower(&graph(
        "input x: f32[B, T];\noutput y = topk(x, 2);\noutput i = argsort(x, descending = true);",
    ))
    .expect("lowers");
    let text = print_program(&p);
    // The top-k store is guarded by rank < k; the order treats NaN (x != x) as largest.
    assert!(text.contains("if (a0 < 2) {"), "{text}");
    assert!(text.contains("ne.f64("), "{text}");
}

#[test]
fn f16_and_bf16_compute_in_their_own_type_and_reduce_in_f64() {
    for d in ["f16", "bf16"] {
        let spec = format!("input x: {d}[B, T];\noutput y = x * x;\noutput s = sum(x, axis = 1);");
        let text = print_program(&lower(&graph(&spec)).expect("lowers"));
        assert!(text.contains(&format!("mul.{d}(")), "{text}");
        // The sum accumulates in f64 from the widened elements.
        assert!(text.contains(&format!("cast.{d}.f64(")), "{text}");
    }
}

#[test]
fn scatter_add_is_a_parallel_copy_then_a_serial_update() {
    let p = lower(&graph(
        "input x: f32[B, T];\ninput i: i32[B, T];\noutput y = scatter_add(x, i, x, 1);",
    ))
    .expect("lowers");
    assert_eq!(p.kernels.len(), 2);
    assert_eq!(p.kernels[0].root.sched, Sched::Parallel);
    assert_eq!(p.kernels[1].root.sched, Sched::Serial);
    assert!(print_program(&p).contains("checked("));
}

fn ir(text: &str) -> Graph {
    crate::ir::parse::parse_graph(text).expect("IR parses")
}

const FUSED: &str = "graph(B, T) {
  %0 = input \"x\" : f32[B, T]
  %1 = fused(%0) : f32[B] {
    graph(B, T) {
      %0 = input \"x0\" : f32[B, T]
      %1 = exp(%0) : f32[B, T]
      %2 = neg(%1) : f32[B, T]
      %3 = sum(%2) axes=[1] keepdim=false : f32[B]
      output \"y\" = %3
    }
  }
  output \"y\" = %1
}
";

#[test]
fn a_fused_group_is_expanded_and_fused_again_by_lowering() {
    // exp → neg fuse into one elementwise kernel, then the sum (lowering does not fuse a
    // producer into a reduction); no `fused` is left.
    let p = lower(&ir(FUSED)).expect("lowers");
    let text = print_program(&p);
    let ops: Vec<&str> = p.kernels.iter().map(|k| k.op.as_str()).collect();
    assert_eq!(ops, ["neg", "sum"], "{text}");
    assert!(text.contains("neg.f32(exp.f32(b0["), "{text}");
}

#[test]
fn a_malformed_fused_body_is_named() {
    use crate::ir::Op;
    let mut g = ir(FUSED);
    // One operand too many for the body's single input.
    g.nodes[1].inputs.push(crate::ir::NodeId(0));
    let s = lower(&g).unwrap_err().to_string();
    assert!(
        s.contains("node %1 `fused`") && s.contains("has 1 inputs, expected 2"),
        "{s}"
    );
    // A body with two outputs.
    let mut g = ir(FUSED);
    let Op::Fused { body } = &mut g.nodes[1].op else {
        panic!("fused")
    };
    body.outputs.push(("z".into(), crate::ir::NodeId(1)));
    let s = lower(&g).unwrap_err().to_string();
    assert!(s.contains("has 2 outputs, expected exactly one"), "{s}");
    // A body returning a value of another type than the node's.
    let mut g = ir(FUSED);
    let Op::Fused { body } = &mut g.nodes[1].op else {
        panic!("fused")
    };
    body.outputs[0].1 = crate::ir::NodeId(1);
    let s = lower(&g).unwrap_err().to_string();
    assert!(
        s.contains("the body returns f32[B, T], the node has type f32[B]"),
        "{s}"
    );
}

#[test]
fn linear_attn_and_attention_are_direct_loop_nests() {
    let p = lower(&ir("graph(B, T) {
  %0 = input \"q\" : f32[B, T, 2]
  %1 = input \"v\" : f32[B, T, 3]
  %2 = input \"g\" : f32[B, T]
  %3 = linear_attn(%0, %0, %1, %2) chunk=4 strict=true : f32[B, T, 3]
  %4 = attention(%0, %0, %1) mask=\"le(s, t)\" scale=0.5 tile_q=2 tile_k=2 : f32[B, T, 3]
  output \"y\" = %3
  output \"z\" = %4
}
"))
    .expect("lowers");
    let text = print_program(&p);
    let ops: Vec<&str> = p.kernels.iter().map(|k| k.op.as_str()).collect();
    // The decay factors, then the blocked recurrence.
    assert_eq!(ops, ["linear_attn", "linear_attn", "attention"], "{text}");
    // The decay factor and the mask, evaluated in the loops; the scale, applied by the
    // attention tile step.
    assert!(text.contains("exp.f32("), "{text}");
    assert!(text.contains("le.i32("), "{text}");
    assert!(text.contains("scale 0.5 "), "{text}");
}

#[test]
fn an_f32_linear_attn_is_blocked_over_columns_after_its_decay_factors() {
    let p = lower(&ir("graph(B, T) {
  %0 = input \"q\" : f32[B, 2, T, 3]
  %1 = input \"v\" : f32[B, 2, T, 70]
  %2 = input \"g\" : f32[B, 2, T, 3]
  %3 = linear_attn(%0, %0, %1, %2) chunk=4 strict=false : f32[B, 2, T, 70]
  output \"y\" = %3
}
"))
    .expect("lowers");
    let text = print_program(&p);
    let ops: Vec<&str> = p.kernels.iter().map(|k| k.op.as_str()).collect();
    assert_eq!(ops, ["linear_attn", "linear_attn"], "{text}");
    // First e^g once per step and channel, into a [B, 2, T, 3] scratch that lives into the
    // second kernel; the [batch…, K, V] state is the second kernel's alone.
    assert_eq!(text.matches("exp.f32(").count(), 1, "{text}");
    assert!(
        text.contains("b4: f32[B, 2, T, 3] arena live k0..k1 (node %3)"),
        "{text}"
    );
    assert!(
        text.contains("b5: f32[B, 2, 3, 70] arena live k1..k1 (node %3)"),
        "{text}"
    );
    assert_eq!(p.buffers[5].kind, BufKind::Temp);
    // One task per batch index and block of 64 columns (2 blocks for V = 70), each one
    // recurrence over all T steps and the 3 rows; the last block is 6 wide.
    assert_eq!(p.kernels[1].root.sched, Sched::Parallel);
    assert!(
        text.contains("parallel for i6 in 0..((B * 2) * 2)"),
        "{text}"
    );
    assert!(
        text.contains("(steps T, rows 3, width minimum.i64(64, (70 - ((i6 % 2) * 64))))"),
        "{text}"
    );
    // v, the output and the state advance 70 per step or row, q, k and the factors 3.
    assert!(text.contains("v b1[(((((((i6 / 2) / 2) * 2) + ((i6 / 2) % 2)) * T) * 70) + ((i6 % 2) * 64)) + i·70 + j·1]"), "{text}");
    assert!(text.contains("decay b4["), "{text}");
}

#[test]
fn a_linear_attn_in_a_scan_fn_body_is_a_scalar_recurrence() {
    let p = lower(&ir("graph(B, T) {
  %0 = input \"x\" : f32[B, T, 5]
  %1 = input \"q\" : f32[B, 4, 3]
  %2 = input \"v\" : f32[B, 4, 5]
  %3 = input \"g\" : f32[B, 4, 3]
  %4 = const 0.0 dtype=f32 : f32[]
  %5 = broadcast(%4) shape=[B, 5] : f32[B, 5]
  %6 = scan_fn(%5, %0, %1, %2, %3) axis=1 n_state=1 n_xs=1 : (f32[B, T, 5]) {
    graph(B, T) {
      %0 = input \"in0\" : f32[B, 5]
      %1 = input \"in1\" : f32[B, 5]
      %2 = input \"in2\" : f32[B, 4, 3]
      %3 = input \"in3\" : f32[B, 4, 5]
      %4 = input \"in4\" : f32[B, 4, 3]
      %5 = linear_attn(%2, %2, %3, %4) chunk=4 strict=false : f32[B, 4, 5]
      %6 = sum(%5) axes=[1] keepdim=false : f32[B, 5]
      %7 = add(%6, %1) : f32[B, 5]
      %8 = add(%7, %0) : f32[B, 5]
      output \"s0\" = %8
    }
  }
  %7 = extract(%6) index=0 : f32[B, T, 5]
  output \"h\" = %7
}
"))
    .expect("lowers");
    let text = print_program(&p);
    // No blocked recurrence: the body's loop over V = 5 (the state's and the output's
    // last index), the per-channel decay once per step and channel.
    assert!(!text.contains("recur"), "{text}");
    assert!(text.contains("in 0..5 {"), "{text}");
    assert_eq!(text.matches("exp.f32(").count(), 1, "{text}");
}

#[test]
fn a_malformed_linear_attn_is_named() {
    const LA: &str = "graph(B, T) {
  %0 = input \"q\" : f32[B, T, 2]
  %1 = input \"w\" : f32[T, 2]
  %2 = linear_attn(%0, %0, %0) chunk=4 strict=false : f32[B, T, 2]
  output \"y\" = %2
}
";
    // Too few operands.
    let mut g = ir(LA);
    g.nodes[2].inputs.pop();
    let s = lower(&g).unwrap_err().to_string();
    assert!(
        s.contains("node %2 `linear_attn`") && s.contains("expects float q, k"),
        "{s}"
    );
    // A q of another rank than the result.
    let mut g = ir(LA);
    g.nodes[2].inputs[0] = crate::ir::NodeId(1);
    let s = lower(&g).unwrap_err().to_string();
    assert!(s.contains("expects q of the result's rank"), "{s}");
    // A k of another rank than the result.
    let mut g = ir(LA);
    g.nodes[2].inputs[1] = crate::ir::NodeId(1);
    let s = lower(&g).unwrap_err().to_string();
    assert!(
        s.contains("node %2 `linear_attn`") && s.contains("expects k and v of the result's rank"),
        "{s}"
    );
}

#[test]
fn each_extract_of_attention_lse_is_one_kernel() {
    let p = lower(&ir("graph(B, T) {
  %0 = input \"q\" : f32[B, T, 2]
  %1 = attention_lse(%0, %0, %0) mask=\"true\" scale=1.0 tile_q=2 tile_k=2 : (f32[B, T, 2], f32[B, T, 1])
  %2 = extract(%1) index=0 : f32[B, T, 2]
  %3 = extract(%1) index=1 : f32[B, T, 1]
  output \"y\" = %2
  output \"l\" = %3
}
"))
    .expect("lowers");
    let text = print_program(&p);
    let ops: Vec<&str> = p.kernels.iter().map(|k| k.op.as_str()).collect();
    assert_eq!(ops, ["extract", "extract"], "{text}");
    // The tuple itself has no buffer (the output's tiled kernel adds scratch buffers of its
    // own, for node %2); the lse kernel takes a log of the running sum.
    assert!(
        !p.buffers.iter().any(|b| b.node == crate::ir::NodeId(1)),
        "{text}"
    );
    assert!(text.contains("attn_tile b"), "{text}");
    assert!(text.contains("log.f64("), "{text}");
}
