//! Spec diagnostics: every error carries a span and a label and is rendered with miette as
//! `file:line:col`, the source line and a label under the culprit. Several errors per run.

use crate::syntax::Span;
use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, NamedSource, SourceSpan};
use std::fmt;

/// The prelude's source, shared by the front end and the renderer.
pub const PRELUDE: &str = include_str!("prelude.seq");
pub const PRELUDE_NAME: &str = "<prelude>";

/// One error in a spec.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecError {
    pub message: String,
    pub span: Span,
    pub label: String,
    pub help: Option<String>,
}

/// Every error found in one spec, with the source needed to render them.
#[derive(Clone, Debug)]
pub struct SpecErrors {
    pub path: String,
    pub src: String,
    pub errors: Vec<SpecError>,
}

#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
struct Rendered {
    message: String,
    #[source_code]
    src: NamedSource<String>,
    #[label("{label}")]
    span: SourceSpan,
    label: String,
    #[help]
    help: Option<String>,
}

impl SpecErrors {
    fn source_of(&self, file: u16) -> (&str, &str) {
        if file == 1 {
            (PRELUDE_NAME, PRELUDE)
        } else {
            (&self.path, &self.src)
        }
    }

    /// 1-based line and column of a span's start.
    pub fn line_col(&self, span: Span) -> (usize, usize) {
        let (_, src) = self.source_of(span.file);
        let start = (span.start as usize).min(src.len());
        let before = &src[..floor_char_boundary(src, start)];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    /// Renders every error as miette does, without colour when `color` is false.
    pub fn render(&self, color: bool) -> String {
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
        let mut out = String::new();
        for e in &self.errors {
            let (name, src) = self.source_of(e.span.file);
            let start = floor_char_boundary(src, (e.span.start as usize).min(src.len()));
            let end = floor_char_boundary(src, (e.span.end as usize).clamp(start, src.len()));
            let r = Rendered {
                message: e.message.clone(),
                src: NamedSource::new(name, src.to_string()),
                span: (start, end - start).into(),
                label: e.label.clone(),
                help: e.help.clone(),
            };
            let _ = handler.render_report(&mut out, &r);
        }
        let n = self.errors.len();
        out.push_str(&format!(
            "{n} error{} in {}\n",
            if n == 1 { "" } else { "s" },
            self.path
        ));
        out
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// One line per error: `path:line:col: message`.
impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.errors {
            let (line, col) = self.line_col(e.span);
            let (name, _) = self.source_of(e.span.file);
            writeln!(f, "{name}:{line}:{col}: {}", e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}
