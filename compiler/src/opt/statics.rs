//! Which e-classes depend on no input: their values are functions of the weights, constants
//! and dims only. Extraction prices load-time e-nodes (`cost::is_load_time`) at zero.

use super::analysis::EG;
use crate::ir::Op;
use egg::Id;
use std::collections::HashSet;

/// The canonical ids of the e-classes that hold an e-node which is not an `input` and whose
/// children are all such e-classes (a least fixpoint: iterate until nothing is added).
pub fn static_classes(eg: &EG) -> HashSet<Id> {
    let mut st: HashSet<Id> = HashSet::new();
    loop {
        let before = st.len();
        for class in eg.classes() {
            if st.contains(&class.id) {
                continue;
            }
            let is_static = class.nodes.iter().any(|n| {
                !matches!(n.op.op(), Op::Input { .. })
                    && n.children.iter().all(|c| st.contains(&eg.find(*c)))
            });
            if is_static {
                st.insert(class.id);
            }
        }
        if st.len() == before {
            return st;
        }
    }
}
