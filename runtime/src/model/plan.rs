//! Arena placement at run time: every arena buffer's byte size from the bound dims, then
//! first-fit by liveness (two buffers share bytes only if their live ranges are disjoint).

/// Offsets are multiples of this (a cache line; enough for any vector load).
pub const ALIGN: usize = 64;

/// A buffer to place: its size in bytes and its live range in kernel steps (inclusive).
#[derive(Clone, Copy, Debug)]
pub struct Request {
    pub bytes: usize,
    pub first: usize,
    pub last: usize,
}

/// Offsets for `reqs` (in order) and the arena size.
pub fn place(reqs: &[Request]) -> (Vec<usize>, usize) {
    let mut offs = Vec::with_capacity(reqs.len());
    let mut total = 0usize;
    for (i, r) in reqs.iter().enumerate() {
        let size = r.bytes.div_ceil(ALIGN) * ALIGN;
        let mut off = 0usize;
        // Move past every overlapping live buffer until none overlaps; `off` only grows.
        loop {
            let clash = reqs[..i].iter().zip(&offs).find(|(p, po)| {
                let psize = p.bytes.div_ceil(ALIGN) * ALIGN;
                p.first <= r.last && r.first <= p.last && **po < off + size && off < **po + psize
            });
            match clash {
                Some((p, po)) => off = po + p.bytes.div_ceil(ALIGN) * ALIGN,
                None => break,
            }
        }
        total = total.max(off + size);
        offs.push(off);
    }
    (offs, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_dead_bytes_and_separates_live_ones() {
        let r = |bytes, first, last| Request { bytes, first, last };
        // a [0,1], b [1,2] overlap at step 1; c [2,3] may reuse a's bytes.
        let (offs, total) = place(&[r(100, 0, 1), r(64, 1, 2), r(128, 2, 3)]);
        assert_eq!(offs, vec![0, 128, 0]);
        assert_eq!(total, 192);
        // c is too big for a's hole next to b? a's hole is 128 bytes: c fits exactly.
        let (offs, _) = place(&[r(100, 0, 1), r(64, 1, 2), r(200, 2, 3)]);
        assert_eq!(offs, vec![0, 128, 192]);
    }
}
