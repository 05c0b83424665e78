//! The front end as one function of named passes: read → parse (with the prelude) → lower
//! (names, types, shapes) → verify. Also exposes the AST stage for `seqc dump --stage ast`.

use crate::diag::{PRELUDE, SpecError, SpecErrors};
use crate::ir::Graph;
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

/// Parse → lower → verify.
pub fn load_str(path: &str, src: &str) -> Result<Graph, SpecErrors> {
    let program = parse(path, src)?;
    let prelude = prelude();
    let graph = crate::lower::lower(&program, &prelude).map_err(|e| errors(path, src, e))?;
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
    let src = read_source(path)?;
    load_str(&path.display().to_string(), &src)
}
