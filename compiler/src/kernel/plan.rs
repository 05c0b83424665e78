//! The memory plan: every arena buffer's live range in kernel steps. Placement (first-fit
//! by liveness, offsets from the sizes) is left to the runtime, which knows the dims.

use super::{BufId, BufKind, Program};

/// A temporary's live range: written first by kernel `first`, read last by kernel `last`
/// (both inclusive; outputs live to the last kernel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Live {
    pub buf: BufId,
    pub first: usize,
    pub last: usize,
}

/// The live range of every `Temp` buffer, in buffer order. A temporary no kernel writes is
/// live from the start (it cannot happen for a lowered graph, but the plan stays sound).
pub fn live_ranges(p: &Program) -> Vec<Live> {
    let n = p.buffers.len();
    let mut first = vec![usize::MAX; n];
    let mut last = vec![0usize; n];
    for (k, kernel) in p.kernels.iter().enumerate() {
        kernel.root.for_each_access(&mut |b, _write| {
            let i = b.0 as usize;
            first[i] = first[i].min(k);
            last[i] = last[i].max(k);
        });
    }
    let end = p.kernels.len().saturating_sub(1);
    for (_, b) in &p.outputs {
        last[b.0 as usize] = end;
    }
    p.buffers
        .iter()
        .enumerate()
        .filter(|(_, b)| b.kind == BufKind::Temp)
        .map(|(i, _)| Live {
            buf: BufId(i as u32),
            first: if first[i] == usize::MAX { 0 } else { first[i] },
            last: last[i].max(if first[i] == usize::MAX { 0 } else { first[i] }),
        })
        .collect()
}
