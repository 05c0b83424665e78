//! The parser: tokens → AST, by recursive descent with precedence climbing. On an error it
//! records a diagnostic and skips to the next `;` or `}` so one run reports several errors.
//! Nesting deeper than [`MAX_DEPTH`] is an error, not a stack overflow.

use super::ast::*;
use super::lexer::{Tok, Token, lex};
use super::{Span, SyntaxError};

/// The deepest nesting of expressions and blocks the parser accepts.
pub const MAX_DEPTH: usize = 200;

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    errs: Vec<SyntaxError>,
    depth: usize,
}

type P<T> = Result<T, ()>;

/// Parses a whole file. Returns the program (with erroneous items dropped) and every error.
pub fn parse_program(src: &str, file: u16) -> (Program, Vec<SyntaxError>) {
    let (toks, errs) = lex(src, file);
    let mut p = Parser {
        toks,
        pos: 0,
        errs,
        depth: 0,
    };
    let mut items = Vec::new();
    while !p.at_eof() {
        let before = p.pos;
        match p.item(true) {
            Ok(it) => items.push(it),
            Err(()) => {
                p.recover();
                if p.is_punct("}") {
                    p.bump();
                }
            }
        }
        if p.pos == before {
            p.pos += 1; // guarantee progress
        }
    }
    (Program { items }, p.errs)
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].tok
    }
    fn peek_at(&self, k: usize) -> &Tok {
        &self.toks[(self.pos + k).min(self.toks.len() - 1)].tok
    }
    fn span(&self) -> Span {
        self.toks[self.pos].span
    }
    fn prev_span(&self) -> Span {
        self.toks[self.pos.saturating_sub(1)].span
    }
    fn at_eof(&self) -> bool {
        matches!(self.peek(), Tok::Eof)
    }
    fn bump(&mut self) -> Token {
        let t = self.toks[self.pos].clone();
        if !matches!(t.tok, Tok::Eof) {
            self.pos += 1;
        }
        t
    }
    fn is_punct(&self, p: &str) -> bool {
        matches!(self.peek(), Tok::Punct(q) if *q == p)
    }
    fn is_kw(&self, k: &str) -> bool {
        matches!(self.peek(), Tok::Kw(q) if *q == k)
    }
    fn eat_punct(&mut self, p: &str) -> bool {
        if self.is_punct(p) {
            self.bump();
            true
        } else {
            false
        }
    }
    fn error<T>(&mut self, message: String, span: Span, label: &str) -> P<T> {
        self.errs.push(SyntaxError {
            message,
            span,
            label: label.to_string(),
        });
        Err(())
    }
    fn expected<T>(&mut self, what: &str) -> P<T> {
        let found = self.peek().describe();
        let span = self.span();
        self.error(
            format!("expected {what}, found {found}"),
            span,
            &format!("expected {what}"),
        )
    }
    fn expect_punct(&mut self, p: &str) -> P<Span> {
        if self.is_punct(p) {
            Ok(self.bump().span)
        } else {
            self.expected(&format!("`{p}`"))
        }
    }
    fn ident(&mut self, what: &str) -> P<Ident> {
        match self.peek().clone() {
            Tok::Ident(name) => {
                let span = self.bump().span;
                Ok(Ident { name, span })
            }
            Tok::Kw(k) => {
                let span = self.bump().span;
                self.error(
                    format!("expected {what}, found keyword `{k}`"),
                    span,
                    "keywords cannot be used as names",
                )
            }
            _ => self.expected(what),
        }
    }
    fn path(&mut self, what: &str) -> P<Ident> {
        match self.peek().clone() {
            Tok::Path(name) => {
                let span = self.bump().span;
                Ok(Ident { name, span })
            }
            _ => self.ident(what),
        }
    }
    /// Skips to just after the next `;`, or to a `}` / item keyword, at nesting level 0.
    fn recover(&mut self) {
        let mut level = 0i32;
        while !self.at_eof() {
            match self.peek() {
                Tok::Punct("{") | Tok::Punct("(") | Tok::Punct("[") => level += 1,
                Tok::Punct("}") | Tok::Punct(")") | Tok::Punct("]") => {
                    if level == 0 {
                        if self.is_punct("}") {
                            return;
                        }
                    } else {
                        level -= 1;
                    }
                }
                Tok::Punct(";") if level <= 0 => {
                    self.bump();
                    return;
                }
                Tok::Kw("fn" | "dim" | "param" | "input" | "output" | "const") if level <= 0 => {
                    return;
                }
                _ => {}
            }
            self.bump();
        }
    }

    fn enter(&mut self) -> P<()> {
        if self.depth >= MAX_DEPTH {
            // Report once, then skip to the end so the unwinding adds no further errors.
            let span = self.span();
            self.pos = self.toks.len() - 1;
            return self.error(
                format!("nesting is deeper than {MAX_DEPTH} levels"),
                span,
                "too deeply nested",
            );
        }
        self.depth += 1;
        Ok(())
    }

    fn item(&mut self, top: bool) -> P<Item> {
        let start = self.span();
        let kind = match self.peek() {
            Tok::Kw("dim") if top => {
                self.bump();
                let mut names = vec![self.ident("a dim name")?];
                while self.eat_punct(",") {
                    names.push(self.ident("a dim name")?);
                }
                self.expect_punct(";")?;
                ItemKind::Dim(names)
            }
            Tok::Kw("const") => {
                self.bump();
                let name = self.ident("a constant name")?;
                self.expect_punct("=")?;
                let e = self.expr()?;
                self.expect_punct(";")?;
                ItemKind::Const(name, e)
            }
            Tok::Kw("param") => {
                self.bump();
                let name = self.path("a param name")?;
                self.expect_punct(":")?;
                let ty = self.type_expr()?;
                self.expect_punct(";")?;
                ItemKind::Param(name, ty)
            }
            Tok::Kw("input") if top => {
                self.bump();
                let name = self.ident("an input name")?;
                self.expect_punct(":")?;
                let ty = self.type_expr()?;
                self.expect_punct(";")?;
                ItemKind::Input(name, ty)
            }
            Tok::Kw("output") if top => {
                self.bump();
                let name = self.ident("an output name")?;
                let ty = if self.eat_punct(":") {
                    Some(self.type_expr()?)
                } else {
                    None
                };
                self.expect_punct("=")?;
                let e = self.expr()?;
                self.expect_punct(";")?;
                ItemKind::Output(name, ty, e)
            }
            Tok::Kw("let") => {
                self.bump();
                let pat = if self.eat_punct("(") {
                    let mut names = vec![self.ident("a name")?];
                    while self.eat_punct(",") {
                        names.push(self.ident("a name")?);
                    }
                    self.expect_punct(")")?;
                    LetPat::Tuple(names)
                } else {
                    LetPat::Name(self.ident("a name")?)
                };
                self.expect_punct("=")?;
                let e = self.expr()?;
                self.expect_punct(";")?;
                ItemKind::Let(pat, e)
            }
            Tok::Kw("fn") if top => {
                self.bump();
                let name = self.ident("a function name")?;
                self.expect_punct("(")?;
                let mut params = Vec::new();
                while !self.is_punct(")") {
                    let pname = self.ident("a parameter name")?;
                    let default = if self.eat_punct("=") {
                        Some(self.expr()?)
                    } else {
                        None
                    };
                    params.push(FnParam {
                        name: pname,
                        default,
                    });
                    if !self.eat_punct(",") {
                        break;
                    }
                }
                self.expect_punct(")")?;
                let body = self.block()?;
                ItemKind::Fn(FnDef { name, params, body })
            }
            Tok::Kw(k @ ("dim" | "input" | "output" | "fn")) => {
                let (k, span) = (*k, self.span());
                self.bump(); // recovery then skips the rest of this statement
                return self.error(
                    format!("`{k}` is only allowed at the top level of a file"),
                    span,
                    "not allowed inside a block",
                );
            }
            _ if top => {
                return self.expected(
                    "an item (`dim`, `const`, `param`, `input`, `output`, `let` or `fn`)",
                );
            }
            _ => return self.expected("a statement"),
        };
        Ok(Item {
            kind,
            span: start.to(self.prev_span()),
        })
    }

    fn type_expr(&mut self) -> P<TypeExpr> {
        let dtype = self.ident("a dtype (f32, f16, bf16, i32, i64, bool)")?;
        self.expect_punct("[")?;
        let mut dims = Vec::new();
        while !self.is_punct("]") {
            dims.push(self.expr()?);
            if !self.eat_punct(",") {
                break;
            }
        }
        self.expect_punct("]")?;
        Ok(TypeExpr {
            span: dtype.span.to(self.prev_span()),
            dtype,
            dims,
        })
    }

    fn block(&mut self) -> P<Block> {
        self.enter()?;
        let b = self.block_inner();
        self.depth -= 1;
        b
    }

    fn block_inner(&mut self) -> P<Block> {
        let open = self.expect_punct("{")?;
        let mut stmts = Vec::new();
        loop {
            let stmt_kw = ["let", "const", "param", "input", "output", "dim", "fn"];
            if stmt_kw.iter().any(|k| self.is_kw(k)) {
                let before = self.pos;
                match self.item(false) {
                    Ok(it) => stmts.push(it),
                    Err(()) => {
                        self.recover();
                        if self.pos == before {
                            self.bump(); // always make progress
                        }
                        if self.is_punct("}") || self.at_eof() {
                            break;
                        }
                    }
                }
            } else {
                break;
            }
        }
        if self.is_punct("}") {
            let span = self.span();
            return self.error(
                "a block must end with an expression, its value".into(),
                span,
                "expected an expression before `}`",
            );
        }
        let result = self.expr()?;
        let close = self.expect_punct("}")?;
        Ok(Block {
            stmts,
            result: Box::new(result),
            span: open.to(close),
        })
    }

    pub fn expr(&mut self) -> P<Expr> {
        self.enter()?;
        let e = self.binary(0);
        self.depth -= 1;
        e
    }

    fn binop(&self) -> Option<(BinOp, u8)> {
        let Tok::Punct(p) = self.peek() else {
            return None;
        };
        Some(match *p {
            "||" => (BinOp::Or, 1),
            "&&" => (BinOp::And, 2),
            "==" => (BinOp::Eq, 3),
            "!=" => (BinOp::Ne, 3),
            "<" => (BinOp::Lt, 3),
            "<=" => (BinOp::Le, 3),
            ">" => (BinOp::Gt, 3),
            ">=" => (BinOp::Ge, 3),
            "+" => (BinOp::Add, 4),
            "-" => (BinOp::Sub, 4),
            "*" => (BinOp::Mul, 5),
            "/" => (BinOp::Div, 5),
            "%" => (BinOp::Rem, 5),
            "@" => (BinOp::MatMul, 6),
            _ => return None,
        })
    }

    fn binary(&mut self, min: u8) -> P<Expr> {
        let mut lhs = self.unary()?;
        while let Some((op, prec)) = self.binop() {
            if prec <= min {
                break;
            }
            self.bump();
            self.enter()?;
            let rhs = self.binary(prec);
            self.depth -= 1;
            let rhs = rhs?;
            // Comparisons do not chain: `a < b < c` is an error.
            if prec == 3
                && let Some((_, 3)) = self.binop()
            {
                let span = self.span();
                return self.error(
                    "comparisons cannot be chained".into(),
                    span,
                    "use `&&` to combine comparisons",
                );
            }
            let span = lhs.span.to(rhs.span);
            lhs = Expr {
                kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)),
                span,
            };
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> P<Expr> {
        let start = self.span();
        let op = if self.is_punct("-") {
            Some(UnOp::Neg)
        } else if self.is_punct("!") {
            Some(UnOp::Not)
        } else {
            None
        };
        if let Some(op) = op {
            self.bump();
            self.enter()?;
            let e = self.unary();
            self.depth -= 1;
            let e = e?;
            let span = start.to(e.span);
            return Ok(Expr {
                kind: ExprKind::Unary(op, Box::new(e)),
                span,
            });
        }
        self.power()
    }

    fn power(&mut self) -> P<Expr> {
        let base = self.primary()?;
        if self.eat_punct("**") {
            self.enter()?;
            let exp = self.unary(); // right-associative, binds tighter than unary on the left
            self.depth -= 1;
            let exp = exp?;
            let span = base.span.to(exp.span);
            return Ok(Expr {
                kind: ExprKind::Binary(BinOp::Pow, Box::new(base), Box::new(exp)),
                span,
            });
        }
        Ok(base)
    }

    fn list(&mut self, close: &str) -> P<Vec<Expr>> {
        let mut items = Vec::new();
        while !self.is_punct(close) {
            items.push(self.expr()?);
            if !self.eat_punct(",") {
                break;
            }
        }
        self.expect_punct(close)?;
        Ok(items)
    }

    fn primary(&mut self) -> P<Expr> {
        let start = self.span();
        // `dim` is a keyword at the top level and the shape query `dim(x, axis)` elsewhere.
        if self.is_kw("dim") && matches!(self.peek_at(1), Tok::Punct("(")) {
            self.toks[self.pos].tok = Tok::Ident("dim".into());
        }
        let kind = match self.peek().clone() {
            Tok::Int(v) => {
                self.bump();
                ExprKind::Int(v)
            }
            Tok::Float(v) => {
                self.bump();
                ExprKind::Float(v)
            }
            Tok::Str(s) => {
                self.bump();
                ExprKind::Str(s)
            }
            Tok::Kw("true") => {
                self.bump();
                ExprKind::Bool(true)
            }
            Tok::Kw("false") => {
                self.bump();
                ExprKind::Bool(false)
            }
            Tok::Path(p) => {
                self.bump();
                ExprKind::Name(p)
            }
            Tok::Ident(name) => {
                let callee = Ident {
                    name: name.clone(),
                    span: self.bump().span,
                };
                if self.is_punct("(") {
                    self.bump();
                    let mut args = Vec::new();
                    while !self.is_punct(")") {
                        let name = if matches!(self.peek(), Tok::Ident(_))
                            && matches!(self.peek_at(1), Tok::Punct("="))
                        {
                            let n = self.ident("an argument name")?;
                            self.bump();
                            Some(n)
                        } else {
                            None
                        };
                        let value = self.expr()?;
                        args.push(Arg { name, value });
                        if !self.eat_punct(",") {
                            break;
                        }
                    }
                    self.expect_punct(")")?;
                    let at = if self.is_kw("at") {
                        self.bump();
                        Some(Box::new(self.primary()?))
                    } else {
                        None
                    };
                    ExprKind::Call { callee, args, at }
                } else {
                    ExprKind::Name(name)
                }
            }
            Tok::Punct("(") => {
                self.bump();
                self.enter()?;
                let items = self.list(")");
                self.depth -= 1;
                let mut items = items?;
                if items.len() == 1 && !matches!(self.toks[self.pos - 2].tok, Tok::Punct(",")) {
                    let mut e = items.pop().expect("one item");
                    e.span = start.to(self.prev_span());
                    return Ok(e);
                }
                ExprKind::Tuple(items)
            }
            Tok::Punct("[") => {
                self.bump();
                self.enter()?;
                let items = self.list("]");
                self.depth -= 1;
                ExprKind::List(items?)
            }
            Tok::Kw("if") => {
                self.bump();
                let cond = self.expr()?;
                let then = self.block()?;
                if !self.is_kw("else") {
                    return self
                        .expected("`else` (an `if` is an expression and needs both branches)");
                }
                self.bump();
                let otherwise = self.block()?;
                ExprKind::If {
                    cond: Box::new(cond),
                    then,
                    otherwise,
                }
            }
            Tok::Kw("repeat") => {
                self.bump();
                let var = self.ident("a loop variable")?;
                if !self.is_kw("in") {
                    return self.expected("`in`");
                }
                self.bump();
                let s = self.binary(4)?;
                self.expect_punct("..")?;
                let e = self.binary(4)?;
                if !self.is_kw("with") {
                    return self.expected("`with`");
                }
                self.bump();
                let acc = self.ident("an accumulator name")?;
                self.expect_punct("=")?;
                let init = self.expr()?;
                let body = self.block()?;
                ExprKind::Repeat {
                    var,
                    start: Box::new(s),
                    end: Box::new(e),
                    acc,
                    init: Box::new(init),
                    body,
                }
            }
            Tok::Kw(k) => {
                let span = self.bump().span;
                return self.error(
                    format!("expected an expression, found keyword `{k}`"),
                    span,
                    "keywords cannot be used as values",
                );
            }
            _ => return self.expected("an expression"),
        };
        Ok(Expr {
            kind,
            span: start.to(self.prev_span()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence() {
        let (p, e) = parse_program("let y = a + b * c @ d ** -2;", 0);
        assert!(e.is_empty(), "{e:?}");
        let ItemKind::Let(_, ex) = &p.items[0].kind else {
            panic!()
        };
        let ExprKind::Binary(BinOp::Add, _, rhs) = &ex.kind else {
            panic!("{ex:?}")
        };
        assert!(matches!(rhs.kind, ExprKind::Binary(BinOp::Mul, _, _)));
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let src = format!("let y = {}1{};", "(".repeat(5000), ")".repeat(5000));
        let (_, e) = parse_program(&src, 0);
        assert!(e.iter().any(|e| e.message.contains("nesting")), "{e:?}");
    }

    #[test]
    fn recovers_and_reports_several() {
        let (_, e) = parse_program("let = 1;\nlet y = ;\nconst z = 3;", 0);
        assert_eq!(e.len(), 2, "{e:?}");
    }
}
