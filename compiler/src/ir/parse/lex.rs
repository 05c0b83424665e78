//! The IR text lexer: characters to tokens with 1-based line and column (in characters).

use super::{ParseError, R};
use crate::ir::print::quote;

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
    Ref(u32),
    Ident(String),
    Int(String),
    Float(String),
    Str(String),
    Punct(char),
    Eof,
}

#[derive(Clone, Debug)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) line: usize,
    pub(super) col: usize,
}

pub(super) fn err<T>(t: &Token, message: impl Into<String>) -> R<T> {
    Err(ParseError {
        line: t.line,
        col: t.col,
        message: message.into(),
    })
}

pub(super) fn describe(t: &Tok) -> String {
    match t {
        Tok::Ref(n) => format!("`%{n}`"),
        Tok::Ident(s) | Tok::Int(s) | Tok::Float(s) => format!("`{s}`"),
        Tok::Str(s) => format!("string {}", quote(s)),
        Tok::Punct(c) => format!("`{c}`"),
        Tok::Eof => "end of input".into(),
    }
}

pub(super) fn lex(text: &str) -> R<Vec<Token>> {
    let cs: Vec<char> = text.chars().collect();
    let (mut i, mut line, mut col) = (0, 1, 1);
    let mut out = Vec::new();
    let digits = |mut j: usize| {
        while j < cs.len() && cs[j].is_ascii_digit() {
            j += 1;
        }
        j
    };
    let is_digit = |j: usize| cs.get(j).is_some_and(|c| c.is_ascii_digit());
    while i < cs.len() {
        let c = cs[i];
        let here = Token {
            tok: Tok::Eof,
            line,
            col,
        };
        if c == '\n' {
            (i, line, col) = (i + 1, line + 1, 1);
            continue;
        }
        if c.is_whitespace() {
            (i, col) = (i + 1, col + 1);
            continue;
        }
        if c == '/' && cs.get(i + 1) == Some(&'/') {
            while i < cs.len() && cs[i] != '\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        let tok = if c == '%' && is_digit(i + 1) {
            i = digits(i + 1);
            let s: String = cs[start + 1..i].iter().collect();
            match s.parse::<u32>() {
                Ok(n) => Tok::Ref(n),
                Err(_) => return err(&here, format!("node id `%{s}` is too large")),
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            while i < cs.len() && (cs[i].is_ascii_alphanumeric() || cs[i] == '_') {
                i += 1;
            }
            Tok::Ident(cs[start..i].iter().collect())
        } else if c.is_ascii_digit() {
            i = digits(i);
            let mut float = false;
            if cs.get(i) == Some(&'.') && is_digit(i + 1) {
                (i, float) = (digits(i + 1), true);
            }
            if matches!(cs.get(i), Some('e' | 'E')) {
                let sign = matches!(cs.get(i + 1), Some('+' | '-')) as usize;
                if is_digit(i + 1 + sign) {
                    (i, float) = (digits(i + 1 + sign), true);
                }
            }
            let s: String = cs[start..i].iter().collect();
            if float { Tok::Float(s) } else { Tok::Int(s) }
        } else if c == '"' {
            let (s, end) = lex_string(&cs, i + 1, &here)?;
            i = end;
            Tok::Str(s)
        } else if "()[]{},=:*/%+-".contains(c) {
            i += 1;
            Tok::Punct(c)
        } else {
            return err(&here, format!("unexpected character {c:?}"));
        };
        col += i - start;
        out.push(Token { tok, ..here });
    }
    out.push(Token {
        tok: Tok::Eof,
        line,
        col,
    });
    Ok(out)
}

/// Reads a string body starting after the opening quote; returns it and the index after the
/// closing quote.
fn lex_string(cs: &[char], mut i: usize, at: &Token) -> R<(String, usize)> {
    let mut s = String::new();
    loop {
        match cs.get(i) {
            None | Some('\n') => return err(at, "unterminated string"),
            Some('"') => return Ok((s, i + 1)),
            Some('\\') => {
                let c = match cs.get(i + 1) {
                    Some('"') => '"',
                    Some('\\') => '\\',
                    Some('n') => '\n',
                    Some('r') => '\r',
                    Some('t') => '\t',
                    Some('u') if cs.get(i + 2) == Some(&'{') => {
                        let close = cs[i + 3..].iter().position(|c| *c == '}');
                        let hex: String = match close {
                            Some(n) if (1..=6).contains(&n) => {
                                cs[i + 3..i + 3 + n].iter().collect()
                            }
                            _ => return err(at, "bad `\\u{…}` escape in string"),
                        };
                        let c = hex.chars().all(|c| c.is_ascii_hexdigit());
                        let c = u32::from_str_radix(&hex, 16).ok().filter(|_| c);
                        let c = c.and_then(char::from_u32);
                        let Some(c) = c else {
                            return err(at, format!("`\\u{{{hex}}}` is not a character"));
                        };
                        s.push(c);
                        i += 4 + hex.len();
                        continue;
                    }
                    _ => return err(at, "unknown escape in string"),
                };
                s.push(c);
                i += 2;
            }
            Some(c) => {
                s.push(*c);
                i += 1;
            }
        }
    }
}
