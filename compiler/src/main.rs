//! The `seqc` command-line tool.
fn main() {}
