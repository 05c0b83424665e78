//! IR text form: parsing what print.rs writes.
//!
//! Grammar (EBNF). Whitespace and `//` line comments may separate any two tokens; `%` directly
//! followed by a digit is a node reference, so write `(T % 8)` with spaces.
//!
//! ```text
//! graph    = "graph" "(" [ IDENT { "," IDENT } ] ")" "{" { node | output } "}" ;
//! output   = "output" STRING "=" REF ;
//! node     = REF "=" OPNAME [ primary ] [ "(" [ REF { "," REF } ] ")" ] { IDENT "=" value }
//!            ":" type [ "{" graph "}" ] ;             (* the body block only for scan_fn *)
//! type     = tensor | "(" [ tensor { "," tensor } ] ")" ;
//! tensor   = DTYPE "[" [ dim { "," dim } ] "]" ;      (* DTYPE: f32 f16 bf16 i32 i64 bool *)
//! dim      = [ "-" ] term { ( "+" | "-" ) term } ;
//! term     = factor { "*" factor } ;
//! factor   = INT | IDENT | "(" dim [ ( "/" | "%" ) INT ] ")" ;  (* floor division, remainder *)
//! literal  = "true" | "false" | [ "-" ] ( INT | FLOAT | "inf" | "nan" ) ;
//! REF      = "%" DIGITS ;   INT = DIGITS ;   IDENT = [A-Za-z_] [A-Za-z0-9_]* ;
//! FLOAT    = DIGITS ( "." DIGITS [ EXP ] | EXP ) ;   EXP = ( "e" | "E" ) [ "+" | "-" ] DIGITS ;
//! STRING   = '"' { char | '\"' | '\\' | '\n' | '\r' | '\t' | '\u{' HEX+ '}' } '"' ;
//! ```
//!
//! Per operator: the primary and operands, then the attributes, all required, in this order.
//!
//! ```text
//! input STRING | param STRING          (no operands)
//! const literal dtype=DTYPE            (no operands; an INT literal stays an integer)
//! iota shape=[dim,…] axis=INT          random shape=[dim,…] dist=(normal|uniform) seed=INT
//! UNARY(x)  BINARY(a, b)  select(c, a, b)  conv1d_causal(x, w)        (no attributes)
//! cast(x) to=DTYPE                     REDUCE(x) axes=[INT,…] keepdim=BOOL
//! einsum(x, …) spec=STRING             reshape(x) shape=[dim,…]    broadcast(x) shape=[dim,…]
//! transpose(x) perm=[INT,…]            slice(x) axis=INT start=dim end=dim step=[-]INT
//! concat(x, …) axis=INT                pad(x) axis=INT before=dim after=dim value=literal
//! take|gather(x, i) axis=INT           scatter_add(b, i, s) axis=INT
//! sort|argsort(x) axis=INT descending=BOOL
//! topk(x) axis=INT k=dim largest=BOOL indices=BOOL                   argmax(x) axis=INT
//! scan(a, b[, h0]) axis=INT reverse=BOOL                  scan_matrix(a, b[, h0]) axis=INT
//! scan_fn(…) axis=INT n_state=INT n_xs=INT : type { graph }           extract(t) index=INT
//! attention|attention_lse(q, k, v) mask=STRING scale=literal tile_q=INT tile_k=INT  (ir/mask.rs)
//! ```
//!
//! Node ids run `%0, %1, …` in order; every reference names an earlier node; dim symbols must
//! be declared in the enclosing `graph(…)`. Each node is rebuilt with `Graph::add` (leaves with
//! `Graph::add_leaf`), its inferred type must equal the printed one, and the whole graph must
//! pass [`verify`].

use super::dim::DimExpr;
use super::graph::{Graph, NodeId};
use super::mask::Mask;
use super::op::{self, Distribution, Literal, Op};
use super::types::{TensorType, Type};
use super::verify::verify;
use seqc_runtime::DType;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, col {col}: {message}")]
pub struct ParseError {
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub col: usize,
    pub message: String,
}

/// Nesting limit for `scan_fn` bodies and parenthesised dims (keeps the stack bounded).
const MAX_DEPTH: usize = 32;

mod lex;
#[cfg(test)]
mod tests;

use lex::{Tok, Token, describe, err, lex};

type R<T> = Result<T, ParseError>;

/// Parses the text form (see the module doc) into a verified graph.
pub fn parse_graph(text: &str) -> Result<Graph, ParseError> {
    let mut p = Parser {
        toks: lex(text)?,
        pos: 0,
        depth: 0,
    };
    let head = p.peek().clone();
    let g = p.graph()?;
    if p.peek().tok != Tok::Eof {
        return p.expected("end of input");
    }
    if let Err(e) = verify(&g) {
        return err(&head, format!("the graph does not verify: {e}"));
    }
    Ok(g)
}

struct Parser {
    /// Always ends with `Eof`.
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.pos]
    }

    fn bump(&mut self) -> Token {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn expected<T>(&self, what: &str) -> R<T> {
        let t = self.peek();
        err(t, format!("expected {what}, found {}", describe(&t.tok)))
    }

    fn eat(&mut self, c: char) -> bool {
        let hit = self.peek().tok == Tok::Punct(c);
        if hit {
            self.bump();
        }
        hit
    }

    fn punct(&mut self, c: char) -> R<()> {
        if self.eat(c) {
            Ok(())
        } else {
            self.expected(&format!("`{c}`"))
        }
    }

    fn ident(&mut self, what: &str) -> R<String> {
        match &self.peek().tok {
            Tok::Ident(s) => {
                let s = s.clone();
                self.bump();
                Ok(s)
            }
            _ => self.expected(what),
        }
    }

    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err(
                self.peek(),
                format!("nesting deeper than {MAX_DEPTH} levels"),
            );
        }
        Ok(())
    }

    fn graph(&mut self) -> R<Graph> {
        self.enter()?;
        if self.ident("`graph`")? != "graph" {
            self.pos -= 1;
            return self.expected("`graph`");
        }
        self.punct('(')?;
        let mut dims = Vec::new();
        if !self.eat(')') {
            loop {
                dims.push(self.ident("a dim name")?);
                if self.eat(')') {
                    break;
                }
                self.punct(',')?;
            }
        }
        self.punct('{')?;
        let mut g = Graph::new(dims);
        loop {
            match &self.peek().tok {
                Tok::Punct('}') => break,
                Tok::Ref(_) => self.node(&mut g)?,
                Tok::Ident(s) if s == "output" => {
                    self.bump();
                    let name = self.string()?;
                    self.punct('=')?;
                    let id = self.reference(&g)?;
                    g.add_output(&name, id);
                }
                _ => return self.expected("a node `%N = …`, `output` or `}`"),
            }
        }
        self.bump();
        self.depth -= 1;
        Ok(g)
    }

    fn reference(&mut self, g: &Graph) -> R<NodeId> {
        let t = self.bump();
        match t.tok {
            Tok::Ref(n) if (n as usize) < g.nodes.len() => Ok(NodeId(n)),
            Tok::Ref(n) => err(&t, format!("`%{n}` is not defined before this point")),
            ref other => err(
                &t,
                format!("expected a node `%N`, found {}", describe(other)),
            ),
        }
    }

    fn node(&mut self, g: &mut Graph) -> R<()> {
        let head = self.bump();
        let want = g.nodes.len();
        if head.tok != Tok::Ref(want as u32) {
            let found = describe(&head.tok);
            let msg =
                format!("expected node `%{want}` next (ids run from %0 in order), found {found}");
            return err(&head, msg);
        }
        self.punct('=')?;
        let name_tok = self.peek().clone();
        let name = self.ident("an operator name")?;
        let dims = g.dims.clone();
        let leaf = match name.as_str() {
            "input" => Some(Op::Input {
                name: self.string()?,
            }),
            "param" => Some(Op::Param {
                name: self.string()?,
            }),
            "const" => Some(Op::Const {
                value: self.literal()?,
                dtype: self.key("dtype", Self::dtype)?,
            }),
            "iota" => Some(Op::Iota {
                shape: self.key("shape", |p| p.dims(&dims))?,
                axis: self.key("axis", Self::usize)?,
            }),
            "random" => Some(Op::Random {
                shape: self.key("shape", |p| p.dims(&dims))?,
                dist: self.key("dist", Self::distribution)?,
                seed: self.key("seed", |p| p.int(0, u64::MAX.into()))? as u64,
            }),
            _ => None,
        };
        let mut inputs = Vec::new();
        let mut op = match leaf {
            Some(op) => op,
            None => {
                self.punct('(')?;
                if !self.eat(')') {
                    loop {
                        inputs.push(self.reference(g)?);
                        if self.eat(')') {
                            break;
                        }
                        self.punct(',')?;
                    }
                }
                self.op(&name, &name_tok, &dims)?
            }
        };
        self.punct(':')?;
        let ty = self.ty(&dims)?;
        if let Op::ScanFn { body, .. } | Op::Fused { body } = &mut op {
            self.punct('{')?;
            **body = self.graph()?;
            self.punct('}')?;
        }
        let what = format!("%{want} (`{name}`)");
        let id = match (&op, &ty) {
            (Op::Input { .. } | Op::Param { .. }, Type::Tensor(t)) => g.add_leaf(op, t.clone()),
            (Op::Input { .. } | Op::Param { .. }, _) => {
                return err(
                    &head,
                    format!("{what}: a leaf must have a tensor type, found {ty}"),
                );
            }
            _ => g
                .add(op, inputs)
                .or_else(|m| err(&head, format!("{what}: {m}")))?,
        };
        if *g.ty(id) != ty {
            let got = g.ty(id);
            let msg = format!("{what}: the text gives type {ty}, but inference gives {got}");
            return err(&head, msg);
        }
        Ok(())
    }

    /// An operator that takes operands, with its attributes (in struct-field order, which
    /// is the text order; a `scan_fn` body is filled in by the caller).
    fn op(&mut self, name: &str, at: &Token, dims: &[String]) -> R<Op> {
        let dim = |p: &mut Self| p.dim(dims);
        let shape = |p: &mut Self| p.key("shape", |p| p.dims(dims));
        let axis = |p: &mut Self| p.key("axis", Self::usize);
        Ok(match name {
            "select" => Op::Select,
            "conv1d_causal" => Op::Conv1dCausal,
            "grouped_matmul" => Op::GroupedMatmul,
            "fused" => Op::Fused {
                body: Box::default(),
            },
            "cast" => Op::Cast {
                to: self.key("to", Self::dtype)?,
            },
            "einsum" => Op::Einsum {
                spec: self.key("spec", Self::string)?,
            },
            "reshape" => Op::Reshape {
                shape: shape(self)?,
            },
            "broadcast" => Op::Broadcast {
                shape: shape(self)?,
            },
            "transpose" => Op::Transpose {
                perm: self.key("perm", Self::usizes)?,
            },
            "slice" => Op::Slice {
                axis: axis(self)?,
                start: self.key("start", dim)?,
                end: self.key("end", dim)?,
                step: self.key("step", |p| p.int(i64::MIN.into(), i64::MAX.into()))? as i64,
            },
            "concat" => Op::Concat { axis: axis(self)? },
            "pad" => Op::Pad {
                axis: axis(self)?,
                before: self.key("before", dim)?,
                after: self.key("after", dim)?,
                value: self.key("value", Self::literal)?,
            },
            "take" => Op::Take { axis: axis(self)? },
            "gather" => Op::Gather { axis: axis(self)? },
            "scatter_add" => Op::ScatterAdd { axis: axis(self)? },
            "sort" => Op::Sort {
                axis: axis(self)?,
                descending: self.key("descending", Self::bool)?,
            },
            "argsort" => Op::Argsort {
                axis: axis(self)?,
                descending: self.key("descending", Self::bool)?,
            },
            "topk" => Op::TopK {
                axis: axis(self)?,
                k: self.key("k", dim)?,
                largest: self.key("largest", Self::bool)?,
                indices: self.key("indices", Self::bool)?,
            },
            "argmax" => Op::ArgMax { axis: axis(self)? },
            "scan" => Op::Scan {
                axis: axis(self)?,
                reverse: self.key("reverse", Self::bool)?,
            },
            "scan_matrix" => Op::ScanMatrix { axis: axis(self)? },
            "scan_fn" => Op::ScanFn {
                axis: axis(self)?,
                n_state: self.key("n_state", Self::usize)?,
                n_xs: self.key("n_xs", Self::usize)?,
                body: Box::default(),
            },
            "extract" => Op::Extract {
                index: self.key("index", Self::usize)?,
            },
            "linear_attn" => Op::LinearAttn {
                chunk: self.key("chunk", Self::usize)?,
                strict: self.key("strict", Self::bool)?,
            },
            "attention" | "attention_lse" => {
                let (mask, scale, tile_q, tile_k) = self.attention_attrs()?;
                if name == "attention" {
                    Op::Attention {
                        mask,
                        scale,
                        tile_q,
                        tile_k,
                    }
                } else {
                    Op::AttentionLse {
                        mask,
                        scale,
                        tile_q,
                        tile_k,
                    }
                }
            }
            _ => {
                if let Some(u) = op::unary_from_name(name) {
                    Op::Unary(u)
                } else if let Some(b) = op::binary_from_name(name) {
                    Op::Binary(b)
                } else if let Some(r) = op::reduce_from_name(name) {
                    Op::Reduce {
                        op: r,
                        axes: self.key("axes", Self::usizes)?,
                        keepdim: self.key("keepdim", Self::bool)?,
                    }
                } else {
                    return err(at, format!("unknown operator `{name}`"));
                }
            }
        })
    }

    /// The attributes of `attention` and `attention_lse`: mask, scale, tile_q, tile_k.
    fn attention_attrs(&mut self) -> R<(Mask, f64, usize, usize)> {
        let mask = self.key("mask", |p| {
            let t = p.peek().clone();
            let text = p.string()?;
            Mask::parse(&text).or_else(|m| err(&t, m))
        })?;
        let scale = self.key("scale", |p| {
            let t = p.peek().clone();
            match p.literal()? {
                Literal::Float(x) => Ok(x),
                Literal::Int(i) => Ok(i as f64),
                Literal::Bool(_) => err(&t, "expected a number for `scale`, found a bool"),
            }
        })?;
        let tile_q = self.key("tile_q", Self::usize)?;
        let tile_k = self.key("tile_k", Self::usize)?;
        Ok((mask, scale, tile_q, tile_k))
    }

    /// `key = <value>`.
    fn key<T>(&mut self, key: &str, value: impl FnOnce(&mut Self) -> R<T>) -> R<T> {
        if !matches!(&self.peek().tok, Tok::Ident(s) if s == key) {
            return self.expected(&format!("`{key}=`"));
        }
        self.bump();
        self.punct('=')?;
        value(self)
    }

    fn string(&mut self) -> R<String> {
        match &self.peek().tok {
            Tok::Str(s) => {
                let s = s.clone();
                self.bump();
                Ok(s)
            }
            _ => self.expected("a string"),
        }
    }

    fn word(&mut self, what: &str, words: &[&str]) -> R<usize> {
        let t = self.peek().clone();
        match &t.tok {
            Tok::Ident(s) => match words.iter().position(|w| w == s) {
                Some(i) => {
                    self.bump();
                    Ok(i)
                }
                None => err(&t, format!("unknown {what} `{s}`")),
            },
            other => err(&t, format!("expected {what}, found {}", describe(other))),
        }
    }

    fn bool(&mut self) -> R<bool> {
        Ok(self.word("`true` or `false`", &["false", "true"])? == 1)
    }

    fn dtype(&mut self) -> R<DType> {
        let names = DType::ALL.map(|d| d.name());
        Ok(DType::ALL[self.word("dtype", &names)?])
    }

    fn distribution(&mut self) -> R<Distribution> {
        let all = [
            Distribution::Normal,
            Distribution::Uniform,
            Distribution::TorchNormal,
        ];
        let names = all.map(super::print::distribution_name);
        Ok(all[self.word("distribution", &names)?])
    }

    /// An optionally negative integer in `lo..=hi`.
    fn int(&mut self, lo: i128, hi: i128) -> R<i128> {
        let neg = self.eat('-');
        let t = self.bump();
        let Tok::Int(s) = &t.tok else {
            return err(
                &t,
                format!("expected an integer, found {}", describe(&t.tok)),
            );
        };
        match s.parse::<i128>().map(|v| if neg { -v } else { v }) {
            Ok(v) if (lo..=hi).contains(&v) => Ok(v),
            _ => err(
                &t,
                format!(
                    "integer {}{s} is outside {lo}..={hi}",
                    if neg { "-" } else { "" }
                ),
            ),
        }
    }

    fn usize(&mut self) -> R<usize> {
        Ok(self.int(0, usize::MAX as i128)? as usize)
    }

    fn usizes(&mut self) -> R<Vec<usize>> {
        self.list(Self::usize)
    }

    fn dims(&mut self, dims: &[String]) -> R<Vec<DimExpr>> {
        self.list(|p| p.dim(dims))
    }

    /// `[` [ item { `,` item } ] `]`.
    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> R<T>) -> R<Vec<T>> {
        self.punct('[')?;
        let mut out = Vec::new();
        if !self.eat(']') {
            loop {
                out.push(item(self)?);
                if self.eat(']') {
                    return Ok(out);
                }
                self.punct(',')?;
            }
        }
        Ok(out)
    }

    fn literal(&mut self) -> R<Literal> {
        let neg = self.eat('-');
        let t = self.bump();
        let sign = if neg { -1.0 } else { 1.0 };
        Ok(match &t.tok {
            Tok::Ident(s) if !neg && (s == "true" || s == "false") => Literal::Bool(s == "true"),
            Tok::Ident(s) if s == "inf" => Literal::Float(sign * f64::INFINITY),
            Tok::Ident(s) if s == "nan" => Literal::Float(if neg { -f64::NAN } else { f64::NAN }),
            Tok::Float(s) => match s.parse::<f64>() {
                Ok(x) => Literal::Float(if neg { -x } else { x }),
                Err(_) => return err(&t, format!("bad float `{s}`")),
            },
            Tok::Int(_) => {
                self.pos -= 1 + neg as usize;
                Literal::Int(self.int(i64::MIN.into(), i64::MAX.into())? as i64)
            }
            other => return err(&t, format!("expected a literal, found {}", describe(other))),
        })
    }

    fn ty(&mut self, dims: &[String]) -> R<Type> {
        if self.eat('(') {
            let mut ts = Vec::new();
            if !self.eat(')') {
                loop {
                    ts.push(self.tensor_ty(dims)?);
                    if self.eat(')') {
                        break;
                    }
                    self.punct(',')?;
                }
            }
            return Ok(Type::Tuple(ts));
        }
        Ok(Type::Tensor(self.tensor_ty(dims)?))
    }

    fn tensor_ty(&mut self, dims: &[String]) -> R<TensorType> {
        let dtype = self.dtype()?;
        Ok(TensorType::new(dtype, self.dims(dims)?))
    }

    /// A dim polynomial, rebuilt with `DimExpr` arithmetic so it comes back canonical.
    fn dim(&mut self, dims: &[String]) -> R<DimExpr> {
        self.enter()?;
        let start = self.peek().clone();
        let neg = self.eat('-');
        let mut e = self.term(dims, neg)?;
        loop {
            if self.eat('+') {
                e = e.add(&self.term(dims, false)?);
            } else if self.eat('-') {
                e = e.add(&self.term(dims, true)?);
            } else {
                break;
            }
        }
        self.depth -= 1;
        // A coefficient of i64::MIN (reachable by saturation) has no negation; reject it so
        // later arithmetic (`DimExpr::neg`) cannot overflow.
        let m1 = DimExpr::constant(-1);
        if e.mul(&m1).mul(&m1) != e {
            return err(&start, "dimension coefficient out of range");
        }
        Ok(e)
    }

    /// A product of factors; `neg` negates it (folded into a leading integer so that
    /// `-9223372036854775808*T` reads back).
    fn term(&mut self, dims: &[String], neg: bool) -> R<DimExpr> {
        let mut acc = DimExpr::constant(1);
        let mut negated = !neg;
        loop {
            let t = self.peek().clone();
            let f = match &t.tok {
                Tok::Int(_) => {
                    let v = self.int(0, 1 << 63)?;
                    let v = if negated { v } else { -v };
                    negated = true;
                    match i64::try_from(v) {
                        Ok(v) => DimExpr::constant(v),
                        Err(_) => return err(&t, format!("integer {v} is out of range")),
                    }
                }
                Tok::Ident(s) if dims.contains(s) => {
                    self.bump();
                    DimExpr::sym(s)
                }
                Tok::Ident(s) => {
                    let declared = dims.join(", ");
                    return err(
                        &t,
                        format!("dim `{s}` is not declared in graph({declared})"),
                    );
                }
                Tok::Punct('(') => {
                    self.bump();
                    let inner = self.dim(dims)?;
                    if self.eat(')') {
                        inner
                    } else {
                        let op = self.bump();
                        if !matches!(op.tok, Tok::Punct('/' | '%')) {
                            let found = describe(&op.tok);
                            return err(&op, format!("expected `/`, `%` or `)`, found {found}"));
                        }
                        let d = self.int(1, i64::MAX.into())? as i64;
                        self.punct(')')?;
                        let e = if op.tok == Tok::Punct('/') {
                            inner.floor_div(d)
                        } else {
                            inner.modulo(d)
                        };
                        e.unwrap_or_default()
                    }
                }
                other => {
                    return err(
                        &t,
                        format!("expected a dimension, found {}", describe(other)),
                    );
                }
            };
            acc = acc.mul(&f);
            if !self.eat('*') {
                break;
            }
        }
        if !negated {
            acc = acc.mul(&DimExpr::constant(-1));
        }
        Ok(acc)
    }
}
