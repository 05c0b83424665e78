//! The spec language's syntax: source text → tokens (`lexer`) → AST (`parser`), and the AST's
//! canonical text form (`print`). Nothing here knows about shapes or the IR.

pub mod ast;
pub mod lexer;
pub mod parser;
pub mod print;

pub use ast::Program;
pub use parser::parse_program;

/// A byte range in one source file. `file` 0 is the user's spec, 1 the prelude.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub file: u16,
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(file: u16, start: usize, end: usize) -> Self {
        Span {
            file,
            start: start as u32,
            end: end as u32,
        }
    }
    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            file: self.file,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }
    pub fn is_empty(self) -> bool {
        self.end == self.start
    }
}

/// A syntax error: a message, where, and what to put under the culprit.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntaxError {
    pub message: String,
    pub span: Span,
    pub label: String,
}
