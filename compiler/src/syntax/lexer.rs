//! The lexer: source text → tokens with spans. Errors (a stray character, an unterminated
//! string or comment, a number too large) are collected, and lexing goes on after them.

use super::{Span, SyntaxError};

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Ident(String),
    /// A dotted path such as `layers.0.q_proj.weight` (at least one dot).
    Path(String),
    Int(i64),
    Float(f64),
    Str(String),
    Kw(&'static str),
    Punct(&'static str),
    Eof,
}

impl Tok {
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("identifier `{s}`"),
            Tok::Path(s) => format!("path `{s}`"),
            Tok::Int(i) => format!("integer `{i}`"),
            Tok::Float(f) => format!("number `{f}`"),
            Tok::Str(_) => "a string".into(),
            Tok::Kw(k) => format!("keyword `{k}`"),
            Tok::Punct(p) => format!("`{p}`"),
            Tok::Eof => "end of file".into(),
        }
    }
}

/// Reserved words (`import` is reserved for a later module system).
pub const KEYWORDS: [&str; 16] = [
    "dim", "const", "param", "input", "output", "let", "fn", "repeat", "in", "with", "at", "true",
    "false", "import", "if", "else",
];

const PUNCTS: [&str; 27] = [
    "**", "==", "!=", "<=", ">=", "&&", "||", "..", "->", "+", "-", "*", "/", "%", "@", "<", ">",
    "!", "=", "(", ")", "[", "]", "{", "}", ",", ";",
];
const PUNCTS1: [&str; 1] = [":"];

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
}

pub fn lex(src: &str, file: u16) -> (Vec<Token>, Vec<SyntaxError>) {
    let b = src.as_bytes();
    let mut i = 0;
    let mut toks = Vec::new();
    let mut errs = Vec::new();
    let sp = |s: usize, e: usize| Span::new(file, s, e);
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if b[i..].starts_with(b"/*") {
            let start = i;
            match src[i + 2..].find("*/") {
                Some(k) => i = i + 2 + k + 2,
                None => {
                    errs.push(SyntaxError {
                        message: "unterminated block comment".into(),
                        span: sp(start, start + 2),
                        label: "this comment is never closed with `*/`".into(),
                    });
                    i = b.len();
                }
            }
            continue;
        }
        let start = i;
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let mut dotted = false;
            // A path continues with `.segment` where a segment is an identifier or digits.
            while i + 1 < b.len()
                && b[i] == b'.'
                && (b[i + 1].is_ascii_alphanumeric() || b[i + 1] == b'_')
            {
                dotted = true;
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
            }
            let word = &src[start..i];
            let tok = if dotted {
                Tok::Path(word.to_string())
            } else if let Some(k) = KEYWORDS.iter().find(|k| **k == word) {
                Tok::Kw(k)
            } else {
                Tok::Ident(word.to_string())
            };
            toks.push(Token {
                tok,
                span: sp(start, i),
            });
            continue;
        }
        if c.is_ascii_digit() {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let mut float = false;
            if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
                float = true;
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
                let mut j = i + 1;
                if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
                    j += 1;
                }
                if j < b.len() && b[j].is_ascii_digit() {
                    float = true;
                    i = j;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let text = &src[start..i];
            let tok = if float {
                match text.parse::<f64>() {
                    Ok(f) if f.is_finite() => Tok::Float(f),
                    _ => {
                        errs.push(SyntaxError {
                            message: format!("number `{text}` is out of range"),
                            span: sp(start, i),
                            label: "not a finite f64".into(),
                        });
                        Tok::Float(0.0)
                    }
                }
            } else {
                match text.parse::<i64>() {
                    Ok(v) => Tok::Int(v),
                    Err(_) => {
                        errs.push(SyntaxError {
                            message: format!("integer `{text}` is too large"),
                            span: sp(start, i),
                            label: format!("integers must be at most {}", i64::MAX),
                        });
                        Tok::Int(0)
                    }
                }
            };
            toks.push(Token {
                tok,
                span: sp(start, i),
            });
            continue;
        }
        if c == b'"' {
            i += 1;
            let mut s = String::new();
            let mut closed = false;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        closed = true;
                        i += 1;
                        break;
                    }
                    b'\n' => break,
                    b'\\' if i + 1 < b.len() => {
                        let e = b[i + 1];
                        match e {
                            b'"' => s.push('"'),
                            b'\\' => s.push('\\'),
                            b'n' => s.push('\n'),
                            _ => errs.push(SyntaxError {
                                message: format!("unknown escape `\\{}`", e as char),
                                span: sp(i, i + 2),
                                label: "valid escapes are \\\" \\\\ \\n".into(),
                            }),
                        }
                        i += 2;
                    }
                    _ => {
                        let ch = src[i..].chars().next().expect("in bounds");
                        s.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            if !closed {
                errs.push(SyntaxError {
                    message: "unterminated string".into(),
                    span: sp(start, i),
                    label: "this string has no closing `\"` on its line".into(),
                });
            }
            toks.push(Token {
                tok: Tok::Str(s),
                span: sp(start, i),
            });
            continue;
        }
        if let Some(p) = PUNCTS
            .iter()
            .chain(PUNCTS1.iter())
            .find(|p| b[i..].starts_with(p.as_bytes()))
        {
            i += p.len();
            toks.push(Token {
                tok: Tok::Punct(p),
                span: sp(start, i),
            });
            continue;
        }
        let ch = src[i..].chars().next().expect("in bounds");
        i += ch.len_utf8();
        errs.push(SyntaxError {
            message: format!("unexpected character `{}`", ch.escape_debug()),
            span: sp(start, i),
            label: "not part of the language".into(),
        });
    }
    toks.push(Token {
        tok: Tok::Eof,
        span: sp(b.len(), b.len()),
    });
    (toks, errs)
}
