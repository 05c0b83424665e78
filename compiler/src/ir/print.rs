//! IR text form: printing (see parse.rs for the reader).
//!
//! The text is canonical: one graph prints one way, and `parse_graph` reads it back to an
//! equal graph. Every node prints as `%id = op[ primary][(operands)] attr=value… : type`,
//! with all attributes in a fixed order per operator (the grammar is in parse.rs). Floats
//! print as Rust's shortest round-trip form (`0.5`, `1e-7`, `-0.0`) or `inf`, `-inf`, `nan`,
//! so they parse back bit-exactly (a NaN reads back as the canonical quiet NaN).

use super::dim::DimExpr;
use super::graph::{Graph, Node};
use super::op::{Distribution, Literal, Op};
use std::fmt::{self, Write};

/// The canonical text of `g`, ending with a newline.
pub fn print_graph(g: &Graph) -> String {
    let mut out = String::new();
    write_graph(&mut out, g, 0);
    out
}

/// Same text as [`print_graph`].
impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&print_graph(self))
    }
}

/// A literal's text: `true`/`false`, an integer (`-3`), or a float that always has a `.`,
/// an exponent, or is `inf`/`-inf`/`nan` (so `1.0` and `1` stay distinct kinds).
pub fn literal_text(l: &Literal) -> String {
    match l {
        Literal::Bool(b) => b.to_string(),
        Literal::Int(i) => i.to_string(),
        Literal::Float(x) => float_text(*x),
    }
}

fn float_text(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{x:?}")
    }
}

/// A string in double quotes with `\"`, `\\`, `\n`, `\r`, `\t` and `\u{…}` escapes.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn distribution_name(d: Distribution) -> &'static str {
    match d {
        Distribution::Normal => "normal",
        Distribution::Uniform => "uniform",
        Distribution::TorchNormal => "torch_normal",
    }
}

fn dims_text(ds: &[DimExpr]) -> String {
    let parts: Vec<String> = ds.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

fn usizes_text(xs: &[usize]) -> String {
    let parts: Vec<String> = xs.iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// Whether `op` prints without an operand list (it takes no inputs).
fn is_nullary(op: &Op) -> bool {
    matches!(
        op,
        Op::Input { .. }
            | Op::Param { .. }
            | Op::Const { .. }
            | Op::Iota { .. }
            | Op::Random { .. }
    )
}

/// The positional attribute (after the op name) and the `key=value` attributes, in order.
fn attributes(op: &Op) -> (Option<String>, Vec<(&'static str, String)>) {
    let s = |x: &dyn ToString| x.to_string();
    match op {
        Op::Input { name } | Op::Param { name } => (Some(quote(name)), vec![]),
        Op::Const { value, dtype } => (Some(literal_text(value)), vec![("dtype", s(dtype))]),
        Op::Iota { shape, axis } => (None, vec![("shape", dims_text(shape)), ("axis", s(axis))]),
        Op::Random { shape, dist, seed } => (
            None,
            vec![
                ("shape", dims_text(shape)),
                ("dist", distribution_name(*dist).into()),
                ("seed", s(seed)),
            ],
        ),
        Op::Unary(_)
        | Op::Binary(_)
        | Op::Select
        | Op::Conv1dCausal
        | Op::GroupedMatmul
        | Op::Fused { .. } => (None, vec![]),
        Op::Cast { to } => (None, vec![("to", s(to))]),
        Op::Reduce { axes, keepdim, .. } => (
            None,
            vec![("axes", usizes_text(axes)), ("keepdim", s(keepdim))],
        ),
        Op::Einsum { spec } => (None, vec![("spec", quote(spec))]),
        Op::Reshape { shape } | Op::Broadcast { shape } => {
            (None, vec![("shape", dims_text(shape))])
        }
        Op::Transpose { perm } => (None, vec![("perm", usizes_text(perm))]),
        Op::Slice {
            axis,
            start,
            end,
            step,
        } => (
            None,
            vec![
                ("axis", s(axis)),
                ("start", s(start)),
                ("end", s(end)),
                ("step", s(step)),
            ],
        ),
        Op::Concat { axis }
        | Op::Take { axis }
        | Op::Gather { axis }
        | Op::ScatterAdd { axis }
        | Op::ArgMax { axis }
        | Op::ScanMatrix { axis } => (None, vec![("axis", s(axis))]),
        Op::Pad {
            axis,
            before,
            after,
            value,
        } => (
            None,
            vec![
                ("axis", s(axis)),
                ("before", s(before)),
                ("after", s(after)),
                ("value", literal_text(value)),
            ],
        ),
        Op::Sort { axis, descending } | Op::Argsort { axis, descending } => {
            (None, vec![("axis", s(axis)), ("descending", s(descending))])
        }
        Op::TopK {
            axis,
            k,
            largest,
            indices,
        } => (
            None,
            vec![
                ("axis", s(axis)),
                ("k", s(k)),
                ("largest", s(largest)),
                ("indices", s(indices)),
            ],
        ),
        Op::Scan { axis, reverse } => (None, vec![("axis", s(axis)), ("reverse", s(reverse))]),
        Op::ScanFn {
            axis,
            n_state,
            n_xs,
            ..
        } => (
            None,
            vec![
                ("axis", s(axis)),
                ("n_state", s(n_state)),
                ("n_xs", s(n_xs)),
            ],
        ),
        Op::Extract { index } => (None, vec![("index", s(index))]),
        Op::LinearAttn { chunk, strict } => {
            (None, vec![("chunk", s(chunk)), ("strict", s(strict))])
        }
        Op::Attention {
            mask,
            scale,
            tile_q,
            tile_k,
        }
        | Op::AttentionLse {
            mask,
            scale,
            tile_q,
            tile_k,
        } => (
            None,
            vec![
                ("mask", quote(&mask.to_string())),
                ("scale", float_text(*scale)),
                ("tile_q", s(tile_q)),
                ("tile_k", s(tile_k)),
            ],
        ),
    }
}

fn write_graph(out: &mut String, g: &Graph, indent: usize) {
    let pad = "  ".repeat(indent);
    let _ = writeln!(out, "{pad}graph({}) {{", g.dims.join(", "));
    for (i, n) in g.nodes.iter().enumerate() {
        write_node(out, i, n, indent + 1);
    }
    for (name, id) in &g.outputs {
        let _ = writeln!(out, "{pad}  output {} = {id}", quote(name));
    }
    let _ = writeln!(out, "{pad}}}");
}

fn write_node(out: &mut String, i: usize, n: &Node, indent: usize) {
    let pad = "  ".repeat(indent);
    let _ = write!(out, "{pad}%{i} = {}", n.op.name());
    let (primary, attrs) = attributes(&n.op);
    if let Some(p) = primary {
        let _ = write!(out, " {p}");
    }
    if !is_nullary(&n.op) || !n.inputs.is_empty() {
        let args: Vec<String> = n.inputs.iter().map(|x| x.to_string()).collect();
        let _ = write!(out, "({})", args.join(", "));
    }
    for (k, v) in attrs {
        let _ = write!(out, " {k}={v}");
    }
    let _ = write!(out, " : {}", n.ty);
    if let Op::ScanFn { body, .. } | Op::Fused { body } = &n.op {
        out.push_str(" {\n");
        write_graph(out, body, indent + 1);
        let _ = write!(out, "{pad}}}");
    }
    out.push('\n');
}

#[cfg(test)]
pub(crate) mod samples;

#[cfg(test)]
mod tests;
