//! Symbolic attention masks: a small predicate language over the query index `t`, the key
//! index `s` and the indices `b0`, `b1`, … along the result's batch axes (i32 values, integer constants, + − × floor-division and remainder by non-zero
//! constants, min/max, comparisons, and/or/not, and reads of the attention's extra operands
//! (a block table computed by the graph)), its text form, its exact evaluation and a
//! sound tile classifier used by the fused `attention` operator (ir/op.rs).
//!
//! Evaluation follows the interpreter's i32 semantics node by node: every integer result
//! wraps to i32, `div` is floor division and `rem` takes the divisor's sign (Python's `//`
//! and `%`). [`Mask::classify`] decides whether a tile [t0, t1) × [s0, s1) is all false, all
//! true or mixed by interval arithmetic (in i128; any interval leaving the i32 range is
//! "unknown", so wrapping never makes it wrong); "mixed" is always a safe answer.

use super::op::{BinaryOp, binary_name};

/// A mask predicate (bool-valued at the root) or one of its integer subexpressions.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Mask {
    /// The query index t.
    Q,
    /// The key index s.
    K,
    /// The index along batch axis `j` of the attention's result (0 = its first axis); e.g.
    /// the head in [B, H, T, E] is `b1`.
    Batch(usize),
    /// `values[bJ]`: a constant i32 per index of batch axis J (e.g. a dilation per head);
    /// written `table(bJ, [v₀, v₁, …])`. An index past the end reads 0.
    Table(usize, Vec<i64>),
    /// `operand(J, [i₀, i₁, …])`: element (i₀, i₁, …) of the attention's operand J (J ≥ 3:
    /// after q, k and v), an i32 or bool tensor of that rank computed by the graph (e.g.
    /// BigBird's seeded random-block table), read as i32 (false = 0, true = 1); an index
    /// outside the operand reads 0. Its values are known only at run time: evaluation and
    /// classification take them as [`MaskOperand`]s (without them the read is unknown).
    Operand(usize, Vec<Mask>),
    /// An i32 constant.
    Int(i64),
    Bool(bool),
    Not(Box<Mask>),
    /// One of `add sub mul div rem maximum minimum lt le gt ge eq ne and or`.
    Bin(BinaryOp, Box<Mask>, Box<Mask>),
}

/// The value kind of a mask expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int,
    Bool,
}

/// A value of a mask expression at one point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskVal {
    I(i64),
    B(bool),
}

/// What a tile of the (t, s) grid holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tile {
    /// Every entry false (or the tile is empty): the tile is skipped.
    Skip,
    /// Entries of both values, or not known: computed with the mask applied.
    Mixed,
    /// Every entry true: computed without evaluating the mask.
    Full,
}

/// Nesting limit of the text form and of recognised expressions.
pub const MAX_DEPTH: usize = 64;

/// The first operand number a mask may read (0, 1, 2 are q, k, v).
pub const FIRST_OPERAND: usize = 3;

/// Most indices of an operand read (its rank).
pub const MAX_OPERAND_RANK: usize = 8;

/// Most entries of an operand that classifying one tile looks at; a tile whose reads span
/// more is "mixed".
const MAX_BOX: i128 = 1 << 16;

/// The run-time value of an operand a mask reads: its shape and its values, row-major, as
/// i32 (false = 0, true = 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaskOperand {
    pub shape: Vec<usize>,
    pub values: Vec<i64>,
}

impl MaskOperand {
    /// The value at `idx` (0 outside the operand or for an index of the wrong rank).
    fn get(&self, idx: &[i64]) -> i64 {
        if idx.len() != self.shape.len() {
            return 0;
        }
        let mut flat = 0usize;
        for (&i, &n) in idx.iter().zip(&self.shape) {
            match usize::try_from(i) {
                Ok(i) if i < n => flat = flat * n + i,
                _ => return 0,
            }
        }
        self.values.get(flat).copied().unwrap_or(0)
    }

    /// The (min, max) of the values over the index box `b` (inclusive bounds per axis), 0
    /// included when the box leaves the operand; `None` when the box is too large to scan.
    fn range(&self, b: &[(i128, i128)]) -> Option<(i128, i128)> {
        if b.len() != self.shape.len() {
            return Some((0, 0));
        }
        let mut outside = false;
        let mut clipped = Vec::with_capacity(b.len());
        let mut volume: i128 = 1;
        for (&(lo, hi), &n) in b.iter().zip(&self.shape) {
            let (l, h) = (lo.max(0), hi.min(n as i128 - 1));
            outside |= lo < 0 || hi > n as i128 - 1;
            if l > h {
                return Some((0, 0));
            }
            volume = volume.saturating_mul(h - l + 1);
            if volume > MAX_BOX {
                return None;
            }
            clipped.push((l, h));
        }
        let (mut lo, mut hi) = if outside {
            (0, 0)
        } else {
            (i128::MAX, i128::MIN)
        };
        let mut idx: Vec<i128> = clipped.iter().map(|c| c.0).collect();
        'all: loop {
            let ix: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
            let v = self.get(&ix) as i128;
            (lo, hi) = (lo.min(v), hi.max(v));
            for a in (0..idx.len()).rev() {
                idx[a] += 1;
                if idx[a] <= clipped[a].1 {
                    continue 'all;
                }
                idx[a] = clipped[a].0;
            }
            break;
        }
        Some((lo, hi))
    }
}

const ARITH: [BinaryOp; 7] = [
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Div,
    BinaryOp::Rem,
    BinaryOp::Max,
    BinaryOp::Min,
];

fn wrap(x: i64) -> i64 {
    x as i32 as i64
}

fn floor_div(x: i64, y: i64) -> i64 {
    let q = x.wrapping_div(y);
    if x.wrapping_rem(y) != 0 && ((x < 0) != (y < 0)) {
        q - 1
    } else {
        q
    }
}

fn floor_rem(x: i64, y: i64) -> i64 {
    let r = x.wrapping_rem(y);
    if r != 0 && ((r < 0) != (y < 0)) {
        r + y
    } else {
        r
    }
}

impl Mask {
    /// The predicate that is true everywhere (no mask).
    pub fn all() -> Mask {
        Mask::Bool(true)
    }

    pub fn bin(op: BinaryOp, a: Mask, b: Mask) -> Mask {
        Mask::Bin(op, Box::new(a), Box::new(b))
    }

    /// The expression's kind; the error names the subexpression that is ill-formed.
    pub fn kind(&self) -> Result<Kind, String> {
        self.kind_at(0)
    }

    fn kind_at(&self, depth: usize) -> Result<Kind, String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH}"));
        }
        match self {
            Mask::Q | Mask::K | Mask::Batch(_) => Ok(Kind::Int),
            Mask::Table(_, vs) => {
                if vs.is_empty() {
                    return Err("a `table` needs at least one value".into());
                }
                if let Some(v) = vs.iter().find(|v| i32::try_from(**v).is_err()) {
                    return Err(format!("table value {v} is outside the i32 range"));
                }
                Ok(Kind::Int)
            }
            Mask::Operand(j, idx) => {
                if *j < FIRST_OPERAND {
                    return Err(format!(
                        "`operand` reads operand {j}, but operands 0, 1, 2 are q, k, v"
                    ));
                }
                if idx.len() > MAX_OPERAND_RANK {
                    return Err(format!(
                        "`operand` takes at most {MAX_OPERAND_RANK} indices, found {}",
                        idx.len()
                    ));
                }
                for x in idx {
                    if x.kind_at(depth + 1)? != Kind::Int {
                        return Err(format!("`operand` index `{x}` is not an integer"));
                    }
                }
                Ok(Kind::Int)
            }
            Mask::Int(c) => {
                if i32::try_from(*c).is_err() {
                    return Err(format!("constant {c} is outside the i32 range"));
                }
                Ok(Kind::Int)
            }
            Mask::Bool(_) => Ok(Kind::Bool),
            Mask::Not(x) => match x.kind_at(depth + 1)? {
                Kind::Bool => Ok(Kind::Bool),
                Kind::Int => Err(format!("`not` expects a bool, found the integer `{x}`")),
            },
            Mask::Bin(op, a, b) => {
                let (ka, kb) = (a.kind_at(depth + 1)?, b.kind_at(depth + 1)?);
                let name = binary_name(*op);
                let want = |k: Kind, x: &Mask, kw: &str| -> Result<(), String> {
                    let ok = match kw {
                        "an integer" => k == Kind::Int,
                        _ => k == Kind::Bool,
                    };
                    if ok {
                        Ok(())
                    } else {
                        Err(format!("`{name}` expects {kw} operand, found `{x}`"))
                    }
                };
                let nonzero_const = match &**b {
                    Mask::Int(c) => *c != 0,
                    Mask::Table(_, vs) => !vs.contains(&0),
                    _ => false,
                };
                if matches!(op, BinaryOp::Div | BinaryOp::Rem) && !nonzero_const {
                    return Err(format!(
                        "`{name}` expects a non-zero integer constant divisor, found `{b}`"
                    ));
                }
                if ARITH.contains(op) {
                    want(ka, a, "an integer")?;
                    want(kb, b, "an integer")?;
                    Ok(Kind::Int)
                } else if op.is_comparison() {
                    if matches!(op, BinaryOp::Eq | BinaryOp::Ne) && ka == kb {
                        return Ok(Kind::Bool);
                    }
                    want(ka, a, "an integer")?;
                    want(kb, b, "an integer")?;
                    Ok(Kind::Bool)
                } else if matches!(op, BinaryOp::And | BinaryOp::Or) {
                    want(ka, a, "a bool")?;
                    want(kb, b, "a bool")?;
                    Ok(Kind::Bool)
                } else {
                    Err(format!("`{name}` is not part of the mask language"))
                }
            }
        }
    }

    /// Checks that the expression is a well-formed predicate (bool-valued).
    pub fn check(&self) -> Result<(), String> {
        match self.kind()? {
            Kind::Bool => Ok(()),
            Kind::Int => Err(format!("the mask `{self}` is an integer, not a predicate")),
        }
    }

    /// The batch axes the mask reads, ascending.
    pub fn batch_axes(&self) -> Vec<usize> {
        let mut out = Vec::new();
        self.collect_axes(&mut out);
        out.sort();
        out.dedup();
        out
    }

    /// The (batch axis, length) of every table the mask reads.
    pub fn tables(&self) -> Vec<(usize, usize)> {
        match self {
            Mask::Table(j, vs) => vec![(*j, vs.len())],
            Mask::Operand(_, idx) => idx.iter().flat_map(Mask::tables).collect(),
            Mask::Not(x) => x.tables(),
            Mask::Bin(_, a, b) => {
                let mut v = a.tables();
                v.extend(b.tables());
                v
            }
            Mask::Q | Mask::K | Mask::Batch(_) | Mask::Int(_) | Mask::Bool(_) => vec![],
        }
    }

    /// The (operand number, rank) of every operand read, sorted, without repeats.
    pub fn operands(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        self.collect_operands(&mut out);
        out.sort();
        out.dedup();
        out
    }

    fn collect_operands(&self, out: &mut Vec<(usize, usize)>) {
        match self {
            Mask::Operand(j, idx) => {
                out.push((*j, idx.len()));
                idx.iter().for_each(|x| x.collect_operands(out));
            }
            Mask::Not(x) => x.collect_operands(out),
            Mask::Bin(_, a, b) => {
                a.collect_operands(out);
                b.collect_operands(out);
            }
            Mask::Q | Mask::K | Mask::Batch(_) | Mask::Table(..) | Mask::Int(_) | Mask::Bool(_) => {
            }
        }
    }

    fn collect_axes(&self, out: &mut Vec<usize>) {
        match self {
            Mask::Batch(j) | Mask::Table(j, _) => out.push(*j),
            Mask::Operand(_, idx) => idx.iter().for_each(|x| x.collect_axes(out)),
            Mask::Not(x) => x.collect_axes(out),
            Mask::Bin(_, a, b) => {
                a.collect_axes(out);
                b.collect_axes(out);
            }
            Mask::Q | Mask::K | Mask::Int(_) | Mask::Bool(_) => {}
        }
    }

    /// The value at query `t`, key `s` and batch index 0 on every axis (see [`Mask::eval_at`]).
    pub fn eval(&self, t: i64, s: i64) -> MaskVal {
        self.eval_at(t, s, &[])
    }

    /// The value at query `t`, key `s` and batch index `batch` (an axis it lacks is index 0),
    /// with the interpreter's i32 semantics. The expression must pass [`Mask::kind`]
    /// (otherwise the result is unspecified but no panic occurs).
    pub fn eval_at(&self, t: i64, s: i64, batch: &[i64]) -> MaskVal {
        self.eval_in(t, s, batch, &[])
    }

    /// As [`Mask::eval_at`], with the values of the operands it reads (`ops[i]` is operand
    /// `FIRST_OPERAND + i`; a read of a missing operand gives 0).
    pub fn eval_in(&self, t: i64, s: i64, batch: &[i64], ops: &[MaskOperand]) -> MaskVal {
        use MaskVal::{B, I};
        match self {
            Mask::Q => I(wrap(t)),
            Mask::K => I(wrap(s)),
            Mask::Batch(j) => I(wrap(batch.get(*j).copied().unwrap_or(0))),
            Mask::Table(j, vs) => {
                let i = batch.get(*j).copied().unwrap_or(0);
                I(wrap(
                    usize::try_from(i)
                        .ok()
                        .and_then(|i| vs.get(i))
                        .copied()
                        .unwrap_or(0),
                ))
            }
            Mask::Operand(j, idx) => {
                let ix: Vec<i64> = idx
                    .iter()
                    .map(|x| match x.eval_in(t, s, batch, ops) {
                        I(v) => v,
                        B(_) => -1,
                    })
                    .collect();
                let op = j.checked_sub(FIRST_OPERAND).and_then(|i| ops.get(i));
                I(wrap(op.map_or(0, |o| o.get(&ix))))
            }
            Mask::Int(c) => I(wrap(*c)),
            Mask::Bool(b) => B(*b),
            Mask::Not(x) => match x.eval_in(t, s, batch, ops) {
                B(b) => B(!b),
                I(_) => B(false),
            },
            Mask::Bin(op, a, b) => match (a.eval_in(t, s, batch, ops), b.eval_in(t, s, batch, ops))
            {
                (I(x), I(y)) => match op {
                    BinaryOp::Add => I(wrap(x.wrapping_add(y))),
                    BinaryOp::Sub => I(wrap(x.wrapping_sub(y))),
                    BinaryOp::Mul => I(wrap(x.wrapping_mul(y))),
                    BinaryOp::Div if y != 0 => I(wrap(floor_div(x, y))),
                    BinaryOp::Rem if y != 0 => I(wrap(floor_rem(x, y))),
                    BinaryOp::Max => I(x.max(y)),
                    BinaryOp::Min => I(x.min(y)),
                    BinaryOp::Lt => B(x < y),
                    BinaryOp::Le => B(x <= y),
                    BinaryOp::Gt => B(x > y),
                    BinaryOp::Ge => B(x >= y),
                    BinaryOp::Eq => B(x == y),
                    BinaryOp::Ne => B(x != y),
                    _ => I(0),
                },
                (B(x), B(y)) => match op {
                    BinaryOp::And => B(x && y),
                    BinaryOp::Or => B(x || y),
                    BinaryOp::Eq => B(x == y),
                    BinaryOp::Ne => B(x != y),
                    _ => B(false),
                },
                _ => B(false),
            },
        }
    }

    /// The predicate's value at (t, s), batch index 0 (false for a non-bool expression).
    pub fn holds(&self, t: i64, s: i64) -> bool {
        self.holds_at(t, s, &[])
    }

    /// The predicate's value at (t, s) and batch index `batch`.
    pub fn holds_at(&self, t: i64, s: i64, batch: &[i64]) -> bool {
        self.holds_in(t, s, batch, &[])
    }

    /// The predicate's value at (t, s), batch index `batch`, operands `ops`.
    pub fn holds_in(&self, t: i64, s: i64, batch: &[i64], ops: &[MaskOperand]) -> bool {
        matches!(self.eval_in(t, s, batch, ops), MaskVal::B(true))
    }

    /// Classifies the tile [t0, t1) × [s0, s1) at batch index 0 (see [`Mask::classify_at`]).
    pub fn classify(&self, t: (i64, i64), s: (i64, i64)) -> Tile {
        self.classify_at(t, s, &[])
    }

    /// Classifies the tile [t0, t1) × [s0, s1) over the batch indices in the half-open ranges
    /// `batch` (an axis it lacks is index 0) soundly: `Skip` only if every entry is false,
    /// `Full` only if every entry is true.
    pub fn classify_at(&self, t: (i64, i64), s: (i64, i64), batch: &[(i64, i64)]) -> Tile {
        self.classify_in(t, s, batch, &[])
    }

    /// As [`Mask::classify_at`], with the values of the operands the mask reads (an operand
    /// read is unknown without them, and scanned over the index box its indices span with
    /// them).
    pub fn classify_in(
        &self,
        t: (i64, i64),
        s: (i64, i64),
        batch: &[(i64, i64)],
        ops: &[MaskOperand],
    ) -> Tile {
        if t.0 >= t.1 || s.0 >= s.1 || batch.iter().any(|b| b.0 >= b.1) {
            return Tile::Skip;
        }
        let q = (t.0 as i128, t.1 as i128 - 1);
        let k = (s.0 as i128, s.1 as i128 - 1);
        let b: Vec<(i128, i128)> = batch
            .iter()
            .map(|b| (b.0 as i128, b.1 as i128 - 1))
            .collect();
        match self.range(q, k, &b, ops) {
            Range::B(Some(true)) => Tile::Full,
            Range::B(Some(false)) => Tile::Skip,
            _ => Tile::Mixed,
        }
    }

    /// Interval evaluation: integer bounds (inclusive) or a known truth value; `None` when
    /// unknown.
    fn range(
        &self,
        t: (i128, i128),
        s: (i128, i128),
        batch: &[(i128, i128)],
        ops: &[MaskOperand],
    ) -> Range {
        let fit = |lo: i128, hi: i128| -> Range {
            let ok = lo >= i32::MIN as i128 && hi <= i32::MAX as i128;
            Range::I(ok.then_some((lo, hi)))
        };
        match self {
            Mask::Q => fit(t.0, t.1),
            Mask::K => fit(s.0, s.1),
            Mask::Batch(j) => {
                let (lo, hi) = batch.get(*j).copied().unwrap_or((0, 0));
                fit(lo, hi)
            }
            Mask::Table(j, vs) => {
                let (lo, hi) = batch.get(*j).copied().unwrap_or((0, 0));
                // Indices past the end read 0.
                let mut vals: Vec<i128> = (lo.max(0)..=hi)
                    .take_while(|&i| (i as usize) < vs.len())
                    .map(|i| vs[i as usize] as i128)
                    .collect();
                if hi >= vs.len() as i128 || lo < 0 {
                    vals.push(0);
                }
                match (vals.iter().min(), vals.iter().max()) {
                    (Some(a), Some(b)) => fit(*a, *b),
                    _ => Range::I(None),
                }
            }
            Mask::Operand(j, idx) => {
                let Some(op) = j.checked_sub(FIRST_OPERAND).and_then(|i| ops.get(i)) else {
                    return Range::I(None);
                };
                let mut bx = Vec::with_capacity(idx.len());
                for x in idx {
                    match x.range(t, s, batch, ops) {
                        Range::I(Some(r)) => bx.push(r),
                        _ => return Range::I(None),
                    }
                }
                match op.range(&bx) {
                    Some((lo, hi)) => fit(lo, hi),
                    None => Range::I(None),
                }
            }
            Mask::Int(c) => fit(*c as i128, *c as i128),
            Mask::Bool(b) => Range::B(Some(*b)),
            Mask::Not(x) => match x.range(t, s, batch, ops) {
                Range::B(b) => Range::B(b.map(|b| !b)),
                Range::I(_) => Range::B(None),
            },
            Mask::Bin(op, a, b) => {
                let (ra, rb) = (a.range(t, s, batch, ops), b.range(t, s, batch, ops));
                match (ra, rb) {
                    (Range::I(x), Range::I(y)) => {
                        let (Some((a0, a1)), Some((b0, b1))) = (x, y) else {
                            return match op {
                                o if ARITH.contains(o) => Range::I(None),
                                _ => Range::B(None),
                            };
                        };
                        match op {
                            BinaryOp::Add => fit(a0 + b0, a1 + b1),
                            BinaryOp::Sub => fit(a0 - b1, a1 - b0),
                            BinaryOp::Mul => {
                                let p = [a0 * b0, a0 * b1, a1 * b0, a1 * b1];
                                fit(*p.iter().min().unwrap(), *p.iter().max().unwrap())
                            }
                            BinaryOp::Max => fit(a0.max(b0), a1.max(b1)),
                            BinaryOp::Min => fit(a0.min(b0), a1.min(b1)),
                            BinaryOp::Div | BinaryOp::Rem if b0 != b1 || b0 == 0 => Range::I(None),
                            BinaryOp::Div => {
                                let (x, y) = (fdiv(a0, b0), fdiv(a1, b0));
                                fit(x.min(y), x.max(y))
                            }
                            BinaryOp::Rem => {
                                let c = b0;
                                let (k0, k1) = (fdiv(a0, c), fdiv(a1, c));
                                if k0 == k1 {
                                    fit(a0 - c * k0, a1 - c * k0)
                                } else if c > 0 {
                                    fit(0, c - 1)
                                } else {
                                    fit(c + 1, 0)
                                }
                            }
                            BinaryOp::Lt => cmp(a1 < b0, a0 >= b1),
                            BinaryOp::Le => cmp(a1 <= b0, a0 > b1),
                            BinaryOp::Gt => cmp(a0 > b1, a1 <= b0),
                            BinaryOp::Ge => cmp(a0 >= b1, a1 < b0),
                            BinaryOp::Eq => {
                                cmp(a0 == a1 && b0 == b1 && a0 == b0, a1 < b0 || b1 < a0)
                            }
                            BinaryOp::Ne => {
                                cmp(a1 < b0 || b1 < a0, a0 == a1 && b0 == b1 && a0 == b0)
                            }
                            _ => Range::B(None),
                        }
                    }
                    (Range::B(x), Range::B(y)) => Range::B(match op {
                        BinaryOp::And => match (x, y) {
                            (Some(false), _) | (_, Some(false)) => Some(false),
                            (Some(true), Some(true)) => Some(true),
                            _ => None,
                        },
                        BinaryOp::Or => match (x, y) {
                            (Some(true), _) | (_, Some(true)) => Some(true),
                            (Some(false), Some(false)) => Some(false),
                            _ => None,
                        },
                        BinaryOp::Eq => x.zip(y).map(|(x, y)| x == y),
                        BinaryOp::Ne => x.zip(y).map(|(x, y)| x != y),
                        _ => None,
                    }),
                    _ => Range::B(None),
                }
            }
        }
    }

    /// Parses the text form written by `Display`, e.g. `and(le(s, t), lt(sub(t, s), 4))`,
    /// and checks that it is a predicate. The error says what was expected and where.
    pub fn parse(text: &str) -> Result<Mask, String> {
        let m = text::parse(text)?;
        m.check()?;
        Ok(m)
    }
}

/// An interval result: integer bounds or a truth value, `None` when unknown.
#[derive(Clone, Copy, Debug)]
enum Range {
    I(Option<(i128, i128)>),
    B(Option<bool>),
}

fn fdiv(x: i128, y: i128) -> i128 {
    let q = x / y;
    if x % y != 0 && ((x < 0) != (y < 0)) {
        q - 1
    } else {
        q
    }
}

/// A comparison's truth value: `Some(true)` if `yes` holds on the whole tile, `Some(false)` if
/// `no` does.
fn cmp(yes: bool, no: bool) -> Range {
    Range::B(if yes {
        Some(true)
    } else if no {
        Some(false)
    } else {
        None
    })
}

mod text;

#[cfg(test)]
mod tests;
