//! The front end as one function of named passes: read → parse (with the prelude) → lower
//! (names, types, shapes) → verify. Also exposes the AST stage for `seqc dump --stage ast`.

use crate::diag::{PRELUDE, SpecError, SpecErrors};
use crate::ir::Graph;
pub use crate::lower::Config;
use crate::syntax::{self, Program, Span};
use std::path::Path;

pub use crate::diag::SpecErrors as Errors;

fn errors(path: &str, src: &str, errors: Vec<SpecError>) -> SpecErrors {
    SpecErrors {
        path: path.to_string(),
        src: src.to_string(),
        errors,
    }
}

/// Reads a file as UTF-8; a read failure or invalid bytes become a spec error.
pub fn read_source(path: &Path) -> Result<String, SpecErrors> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        errors(
            &name,
            "",
            vec![SpecError {
                message: format!("cannot read `{name}`: {e}"),
                span: Span::default(),
                label: "here".into(),
                help: None,
            }],
        )
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
        // Point at the replacement character in the lossy text.
        let start = lossy[..]
            .char_indices()
            .nth(String::from_utf8_lossy(&e.as_bytes()[..at]).chars().count())
            .map_or(at, |(i, _)| i);
        let end = lossy[start..]
            .chars()
            .next()
            .map_or(start, |c| start + c.len_utf8());
        errors(
            &name,
            &lossy,
            vec![SpecError {
                message: format!("`{name}` is not valid UTF-8 (invalid byte at offset {at})"),
                span: Span::new(0, start, end),
                label: "invalid UTF-8".into(),
                help: Some("spec files must be UTF-8 text".into()),
            }],
        )
    })
}

/// Parses the prelude (a bug in it is a compiler bug, so it panics with the errors).
pub fn prelude() -> Program {
    let (p, errs) = syntax::parse_program(PRELUDE, 1);
    assert!(errs.is_empty(), "the prelude does not parse: {errs:?}");
    p
}

/// Pass 1: parse a spec into its AST.
pub fn parse(path: &str, src: &str) -> Result<Program, SpecErrors> {
    let (program, errs) = syntax::parse_program(src, 0);
    if errs.is_empty() {
        Ok(program)
    } else {
        Err(errors(
            path,
            src,
            errs.into_iter()
                .map(|e| SpecError {
                    message: e.message,
                    span: e.span,
                    label: e.label,
                    help: None,
                })
                .collect(),
        ))
    }
}

/// Parse → lower → verify, with no config (every `config(..)` read takes its default).
pub fn load_str(path: &str, src: &str) -> Result<Graph, SpecErrors> {
    load_str_with(path, src, &Config::new())
}

/// Parse → lower (reading `config(..)` fields from `config`) → verify.
pub fn load_str_with(path: &str, src: &str, config: &Config) -> Result<Graph, SpecErrors> {
    let program = parse(path, src)?;
    let prelude = prelude();
    let graph =
        crate::lower::lower(&program, &prelude, config).map_err(|e| errors(path, src, e))?;
    if let Err(e) = crate::ir::verify::verify(&graph) {
        // A verifier failure after lowering is a compiler bug; report it, never hide it.
        return Err(errors(
            path,
            src,
            vec![SpecError {
                message: format!("internal error: the lowered IR is invalid: {e}"),
                span: Span::default(),
                label: "while compiling this spec".into(),
                help: Some("please report this as a seqc bug".into()),
            }],
        ));
    }
    Ok(graph)
}

/// Reads and loads a spec file.
pub fn load_file(path: &Path) -> Result<Graph, SpecErrors> {
    load_file_with(path, &Config::new())
}

/// Reads and loads a spec file with a config (e.g. an HF `config.json`).
pub fn load_file_with(path: &Path, config: &Config) -> Result<Graph, SpecErrors> {
    let src = read_source(path)?;
    load_str_with(&path.display().to_string(), &src, config)
}

/// Reads a JSON object of config fields (an HF `config.json`).
pub fn read_config(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config `{}`: {e}", path.display()))?;
    match serde_json::from_str::<serde_json::Value>(&encode_non_finite(&text)) {
        Ok(serde_json::Value::Object(m)) => Ok(m.into_iter().collect()),
        Ok(other) => Err(format!(
            "config `{}` must be a JSON object, found {}",
            path.display(),
            match other {
                serde_json::Value::Array(_) => "an array",
                _ => "a scalar",
            }
        )),
        Err(e) => Err(format!(
            "config `{}` is not valid JSON: {e}",
            path.display()
        )),
    }
}

/// Python's `json` (and so HF's `config.json`) writes `Infinity`, `-Infinity` and `NaN` as bare
/// tokens, which JSON does not allow. Outside strings they are rewritten to
/// `{"__float__": "Infinity"}` (the encoding the fixtures use too), which `config(..)` reads as
/// a float.
pub fn encode_non_finite(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let token = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|t| rest.starts_with(t));
        match token {
            Some(t) => {
                out.push_str(&format!("{{\"__float__\": \"{t}\"}}"));
                rest = &rest[t.len()..];
            }
            None => {
                in_string = c == '"';
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}
