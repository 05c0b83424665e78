//! `docs/architectures.md` stays true: every spec in `ir-specs/` appears in its tables, and
//! every spec file it names exists and has fixtures.

use seqc_tests::{files, root};

#[test]
fn every_spec_is_in_the_table_and_every_named_spec_exists() {
    let doc = std::fs::read_to_string(root().join("docs/architectures.md")).unwrap();
    let mut missing = Vec::new();
    for p in files("ir-specs", "seq") {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !doc.contains(&format!("`{name}`")) {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "specs missing from docs/architectures.md: {missing:?}"
    );
    let mut unknown = Vec::new();
    for word in doc.split('`').skip(1).step_by(2) {
        if let Some(stem) = word.strip_suffix(".seq") {
            if !root().join("ir-specs").join(word).is_file() {
                unknown.push(word.to_string());
            } else if !root()
                .join("tests/fixtures")
                .join(format!("{stem}.json"))
                .is_file()
            {
                unknown.push(format!("{word} (no fixture)"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "docs/architectures.md names: {unknown:?}"
    );
}
