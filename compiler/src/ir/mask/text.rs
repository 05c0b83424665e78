//! The text form of mask predicates: prefix notation with the IR's binary operator names,
//! printed by `Display` and read back by [`parse`] (errors say what was expected, where).

use super::{MAX_DEPTH, Mask};
use crate::ir::op::{BinaryOp, binary_from_name, binary_name};
use std::fmt;

/// Parses a mask expression (not yet checked to be a predicate).
pub(super) fn parse(text: &str) -> Result<Mask, String> {
    let mut p = TextParser {
        s: text.as_bytes(),
        pos: 0,
    };
    let m = p.expr(0)?;
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err(p.error("the end of the mask"));
    }
    Ok(m)
}

/// Prefix form: `t`, `s`, `b0`, `b1`, …, integers, `true`, `false`, `not(x)`, `OP(a, b)` with the IR's
/// binary operator names, `table(bJ, [v, …])`, `operand(J, [i, …])`.
impl fmt::Display for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mask::Q => f.write_str("t"),
            Mask::K => f.write_str("s"),
            Mask::Batch(j) => write!(f, "b{j}"),
            Mask::Table(j, vs) => {
                let vs: Vec<String> = vs.iter().map(|v| v.to_string()).collect();
                write!(f, "table(b{j}, [{}])", vs.join(", "))
            }
            Mask::Operand(j, idx) => {
                let idx: Vec<String> = idx.iter().map(|x| x.to_string()).collect();
                write!(f, "operand({j}, [{}])", idx.join(", "))
            }
            Mask::Int(c) => write!(f, "{c}"),
            Mask::Bool(b) => write!(f, "{b}"),
            Mask::Not(x) => write!(f, "not({x})"),
            Mask::Bin(op, a, b) => write!(f, "{}({a}, {b})", binary_name(*op)),
        }
    }
}

struct TextParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl TextParser<'_> {
    fn skip_ws(&mut self) {
        while self
            .s
            .get(self.pos)
            .is_some_and(|c| c.is_ascii_whitespace())
        {
            self.pos += 1;
        }
    }

    fn error(&self, expected: &str) -> String {
        let found = match self.s.get(self.pos) {
            None => "the end of the text".to_string(),
            Some(_) => {
                let rest = String::from_utf8_lossy(&self.s[self.pos..]);
                format!("`{}`", rest.chars().take(12).collect::<String>())
            }
        };
        format!(
            "mask, at character {}: expected {expected}, found {found}",
            self.pos + 1
        )
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.s.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.error(&format!("`{}`", c as char)))
        }
    }

    fn expr(&mut self, depth: usize) -> Result<Mask, String> {
        if depth > MAX_DEPTH {
            return Err(format!("mask: nested deeper than {MAX_DEPTH}"));
        }
        self.skip_ws();
        let start = self.pos;
        if self.s.get(self.pos) == Some(&b'-')
            || self.s.get(self.pos).is_some_and(u8::is_ascii_digit)
        {
            self.pos += 1;
            while self.s.get(self.pos).is_some_and(u8::is_ascii_digit) {
                self.pos += 1;
            }
            let text = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("");
            return match text.parse::<i32>() {
                Ok(c) => Ok(Mask::Int(c.into())),
                Err(_) => {
                    self.pos = start;
                    Err(self.error("an i32 integer"))
                }
            };
        }
        while self
            .s
            .get(self.pos)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            self.pos += 1;
        }
        let word = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("");
        match word {
            "t" => return Ok(Mask::Q),
            "s" => return Ok(Mask::K),
            "true" => return Ok(Mask::Bool(true)),
            "false" => return Ok(Mask::Bool(false)),
            w if w.len() > 1
                && w.starts_with('b')
                && w[1..].bytes().all(|c| c.is_ascii_digit())
                && (w.len() == 2 || !w[1..].starts_with('0')) =>
            {
                return w[1..]
                    .parse::<u8>()
                    .map(|j| Mask::Batch(j.into()))
                    .map_err(|_| {
                        self.pos = start;
                        self.error("a batch axis `b0` … `b255`")
                    });
            }
            "" => {
                return Err(
                    self.error("`t`, `s`, `b0`, …, an integer, `true`, `false` or an operator")
                );
            }
            _ => {}
        }
        if word == "table" {
            self.expect(b'(')?;
            let axis = self.expr(depth + 1)?;
            let Mask::Batch(j) = axis else {
                return Err(format!(
                    "mask: a `table` is indexed by a batch axis `bJ`, found `{axis}`"
                ));
            };
            self.expect(b',')?;
            self.expect(b'[')?;
            let mut vs = Vec::new();
            loop {
                match self.expr(depth + 1)? {
                    Mask::Int(v) => vs.push(v),
                    other => {
                        return Err(format!("mask: a `table` holds integers, found `{other}`"));
                    }
                }
                if self.eat(b']') {
                    break;
                }
                self.expect(b',')?;
            }
            self.expect(b')')?;
            return Ok(Mask::Table(j, vs));
        }
        if word == "operand" {
            self.expect(b'(')?;
            let j = match self.expr(depth + 1)? {
                Mask::Int(j) if j >= 0 => j as usize,
                other => {
                    return Err(format!(
                        "mask: an `operand` is numbered by a non-negative integer, found `{other}`"
                    ));
                }
            };
            self.expect(b',')?;
            self.expect(b'[')?;
            let mut idx = Vec::new();
            if !self.eat(b']') {
                loop {
                    idx.push(self.expr(depth + 1)?);
                    if self.eat(b']') {
                        break;
                    }
                    self.expect(b',')?;
                }
            }
            self.expect(b')')?;
            return Ok(Mask::Operand(j, idx));
        }
        let op = if word == "not" {
            None
        } else {
            match binary_from_name(word) {
                Some(op) if op != BinaryOp::Pow => Some(op),
                _ => {
                    self.pos = start;
                    return Err(
                        self.error("`t`, `s`, `b0`, …, an integer, `true`, `false` or an operator")
                    );
                }
            }
        };
        self.expect(b'(')?;
        let a = self.expr(depth + 1)?;
        let m = match op {
            None => Mask::Not(Box::new(a)),
            Some(op) => {
                self.expect(b',')?;
                let b = self.expr(depth + 1)?;
                Mask::bin(op, a, b)
            }
        };
        self.expect(b')')?;
        Ok(m)
    }
}
