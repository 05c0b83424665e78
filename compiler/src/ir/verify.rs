//! The IR verifier: checks the invariants listed in graph.rs.
