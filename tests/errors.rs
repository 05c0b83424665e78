//! The error corpus (`tests/errors/*.seq`): every file is rejected with at least one
//! diagnostic that points into the source, none panics, and the rendered diagnostics match
//! their reviewed snapshots.

use seqc::frontend;
use seqc_tests::{files, rel};

fn render(path: &std::path::Path) -> String {
    let name = rel(path);
    let src = match frontend::read_source(path) {
        Ok(s) => s,
        Err(e) => return e.render(false).replace(&path.display().to_string(), &name),
    };
    match frontend::load_str(&name, &src) {
        Ok(_) => panic!("{name} was accepted, but it is in the error corpus"),
        Err(e) => {
            assert!(!e.errors.is_empty(), "{name}: rejected with no diagnostic");
            assert!(!e.to_string().contains("internal error"), "{name}: {e}");
            e.render(false)
        }
    }
}

#[test]
fn corpus_is_large_enough() {
    assert!(files("tests/errors", "seq").len() >= 40);
}

#[test]
fn no_bad_spec_panics() {
    let mut panicked = Vec::new();
    for path in files("tests/errors", "seq") {
        if std::panic::catch_unwind(|| render(&path)).is_err() {
            panicked.push(rel(&path));
        }
    }
    assert!(panicked.is_empty(), "panicked on: {panicked:?}");
}

#[test]
fn diagnostics_snapshots() {
    insta::glob!("errors/*.seq", |path| {
        insta::assert_snapshot!("diagnostic", render(path));
    });
}

/// Each diagnostic names file:line:col and underlines the culprit.
#[test]
fn diagnostics_point_into_the_source() {
    for path in files("tests/errors", "seq") {
        let out = render(&path);
        let name = rel(&path);
        assert!(
            out.contains(&format!("[{name}:")) || out.contains("[<prelude>:"),
            "{name}: no location in\n{out}"
        );
        assert!(out.contains('─'), "{name}: no source excerpt in\n{out}");
    }
}

/// Several independent errors are reported in one run.
#[test]
fn several_errors_per_run() {
    for (file, at_least) in [("several_errors.seq", 3), ("several_syntax_errors.seq", 2)] {
        let path = seqc_tests::root().join("tests/errors").join(file);
        let src = std::fs::read_to_string(&path).unwrap();
        let e = frontend::load_str(file, &src).unwrap_err();
        assert!(e.errors.len() >= at_least, "{file}: {e}");
    }
}
