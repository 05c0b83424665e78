//! The abstract syntax tree of a `.seq` file. Every node carries the span it came from.

use super::Span;

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Program {
    pub items: Vec<Item>,
}

/// `dtype[d, …]`.
#[derive(Clone, Debug, PartialEq)]
pub struct TypeExpr {
    pub dtype: Ident,
    pub dims: Vec<Expr>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LetPat {
    Name(Ident),
    Tuple(Vec<Ident>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum ItemKind {
    Dim(Vec<Ident>),
    Const(Ident, Expr),
    /// The name is a path (may contain dots).
    Param(Ident, TypeExpr),
    Input(Ident, TypeExpr),
    Output(Ident, Option<TypeExpr>, Expr),
    Let(LetPat, Expr),
    Fn(FnDef),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub kind: ItemKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FnParam {
    pub name: Ident,
    pub default: Option<Expr>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FnDef {
    pub name: Ident,
    pub params: Vec<FnParam>,
    pub body: Block,
}

/// `{ stmt; …; result }`: statements are `let`, `const` and `param` items.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub stmts: Vec<Item>,
    pub result: Box<Expr>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    Neg,
    Not,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    MatMul,
    Pow,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "||",
            BinOp::And => "&&",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::MatMul => "@",
            BinOp::Pow => "**",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    /// An identifier or a dotted path.
    Name(String),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Call {
        callee: Ident,
        args: Vec<Arg>,
        at: Option<Box<Expr>>,
    },
    List(Vec<Expr>),
    Tuple(Vec<Expr>),
    /// `if cond { … } else { … }`: `cond` is a compile-time boolean; only the chosen branch
    /// is lowered (so it may declare params the other branch does not).
    If {
        cond: Box<Expr>,
        then: Block,
        otherwise: Block,
    },
    Repeat {
        var: Ident,
        start: Box<Expr>,
        end: Box<Expr>,
        acc: Ident,
        init: Box<Expr>,
        body: Block,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}
