//! Expanding block statements into scalar loop nests: [`Stmt::Gemm`], [`Stmt::Recur`] and
//! [`Stmt::AttnTile`] become the plain loops, loads, stores and accumulators their doc
//! comments define, so a backend without micro-kernels of its own (the GPU backend, for now)
//! runs the same program. Sums are accumulated in f64 and rounded at their stores, within
//! the rounding freedom each statement's contract allows. The expanded program is checked
//! against the interpreter by running it on the CPU (`tests/backend_expanded.rs`).

use super::access::{add, int, mul};
use super::{
    Acc, AttnTile, Expr, Gemm, Kernel, Loop, Program, Recur, Sched, Stmt, Strided, Ty, Var,
};
use crate::ir::{BinaryOp, UnaryOp};

/// `p` with every block statement expanded.
pub fn expand_blocks(p: &Program) -> Program {
    let mut p = p.clone();
    for k in &mut p.kernels {
        let mut x = Expander::new(k);
        let body = std::mem::take(&mut k.root.body);
        k.root.body = x.stmts(body);
        k.accs = x.accs;
    }
    p
}

struct Expander {
    next_var: u32,
    accs: Vec<Ty>,
}

fn max_var(stmts: &[Stmt], m: &mut u32) {
    for s in stmts {
        if let Stmt::Loop(l) = s {
            *m = (*m).max(l.var.0);
            max_var(&l.body, m);
        } else if let Stmt::If { body, .. } = s {
            max_var(body, m);
        }
    }
}

fn f64c(v: f64) -> Expr {
    Expr::Float(v, Ty::F64)
}

fn fbin(op: BinaryOp, a: Expr, b: Expr) -> Expr {
    Expr::Binary {
        op,
        ty: Ty::F64,
        a: Box::new(a),
        b: Box::new(b),
    }
}

fn f32bin(op: BinaryOp, a: Expr, b: Expr) -> Expr {
    Expr::Binary {
        op,
        ty: Ty::F32,
        a: Box::new(a),
        b: Box::new(b),
    }
}

fn wide(x: Expr) -> Expr {
    Expr::Cast {
        from: Ty::F32,
        to: Ty::F64,
        x: Box::new(x),
    }
}

fn narrow(x: Expr) -> Expr {
    Expr::Cast {
        from: Ty::F64,
        to: Ty::F32,
        x: Box::new(x),
    }
}

fn select(cond: Expr, a: Expr, b: Expr) -> Expr {
    Expr::Select {
        cond: Box::new(cond),
        a: Box::new(a),
        b: Box::new(b),
    }
}

/// The index of element (i, j) of a view.
fn at(s: &Strided, i: Expr, j: Expr) -> Expr {
    add(
        add(s.offset.clone(), mul(i, s.rows.clone())),
        mul(j, s.cols.clone()),
    )
}

/// Element (i, j) of an f32 view, widened to f64.
fn get(s: &Strided, i: Expr, j: Expr) -> Expr {
    wide(Expr::Load {
        buf: s.buf,
        index: Box::new(at(s, i, j)),
    })
}

fn put(s: &Strided, i: Expr, j: Expr, value: Expr) -> Stmt {
    Stmt::Store {
        buf: s.buf,
        index: at(s, i, j),
        value,
    }
}

fn set(acc: Acc, value: Expr) -> Stmt {
    Stmt::Assign { acc, value }
}

impl Expander {
    fn new(k: &Kernel) -> Self {
        let mut m = k.root.var.0;
        max_var(&k.root.body, &mut m);
        Expander {
            next_var: m + 1,
            accs: k.accs.clone(),
        }
    }

    fn var(&mut self) -> Var {
        self.next_var += 1;
        Var(self.next_var - 1)
    }

    fn acc(&mut self, t: Ty) -> Acc {
        self.accs.push(t);
        Acc(self.accs.len() as u32 - 1)
    }

    /// `for v in 0..extent { body(v) }`.
    fn serial(&mut self, extent: Expr, body: impl FnOnce(&mut Self, Expr) -> Vec<Stmt>) -> Stmt {
        let v = self.var();
        let body = body(self, Expr::Var(v));
        Stmt::Loop(Loop {
            var: v,
            extent,
            sched: Sched::Serial,
            body,
        })
    }

    fn stmts(&mut self, stmts: Vec<Stmt>) -> Vec<Stmt> {
        let mut out = Vec::with_capacity(stmts.len());
        for s in stmts {
            match s {
                Stmt::Loop(mut l) => {
                    l.body = self.stmts(l.body);
                    out.push(Stmt::Loop(l));
                }
                Stmt::If { cond, body } => out.push(Stmt::If {
                    cond,
                    body: self.stmts(body),
                }),
                Stmt::Gemm(g) => out.push(self.gemm(&g)),
                Stmt::Recur(r) => out.extend(self.recur(&r)),
                Stmt::AttnTile(t) => out.push(self.attn_tile(&t)),
                s => out.push(s),
            }
        }
        out
    }

    /// c[i, j] (+)= Σ_p a[i, p]·b[p, j].
    fn gemm(&mut self, g: &Gemm) -> Stmt {
        let s = self.acc(Ty::F64);
        self.serial(g.m.clone(), |x, i| {
            vec![x.serial(g.n.clone(), |x, j| {
                let init = if g.accumulate {
                    get(&g.c, i.clone(), j.clone())
                } else {
                    f64c(0.0)
                };
                let sum = x.serial(g.k.clone(), |_, p| {
                    let prod = fbin(
                        BinaryOp::Mul,
                        get(&g.a, i.clone(), p.clone()),
                        get(&g.b, p, j.clone()),
                    );
                    vec![set(s, fbin(BinaryOp::Add, Expr::Acc(s), prod))]
                });
                vec![set(s, init), sum, put(&g.c, i.clone(), j, Expr::Acc(s))]
            })]
        })
    }

    /// The linear-attention recurrence (see [`Recur`]): state and normaliser zeroed, then per
    /// step the normaliser's update and denominator, and per column its update and output.
    fn recur(&mut self, r: &Recur) -> Vec<Stmt> {
        let (o, den, old) = (self.acc(Ty::F64), self.acc(Ty::F64), self.acc(Ty::F64));
        let zero_state = self.serial(r.rows.clone(), |x, c| {
            let mut v = vec![x.serial(r.width.clone(), |_, e| {
                vec![put(&r.state, c.clone(), e, Expr::Float(0.0, Ty::F32))]
            })];
            if let Some(n) = &r.norm {
                v.push(Stmt::Store {
                    buf: n.buf,
                    index: add(n.offset.clone(), c.clone()),
                    value: Expr::Float(0.0, Ty::F32),
                });
            }
            v
        });
        let step = self.serial(r.steps.clone(), |x, t| {
            let decay = |c: &Expr| match &r.decay {
                Some(d) => get(d, t.clone(), c.clone()),
                None => f64c(1.0),
            };
            let mut body = Vec::new();
            if let Some(n) = &r.norm {
                let n_at = |c: &Expr| add(n.offset.clone(), c.clone());
                body.push(set(den, f64c(0.0)));
                body.push(x.serial(r.rows.clone(), |_, c| {
                    let nc = wide(Expr::Load {
                        buf: n.buf,
                        index: Box::new(n_at(&c)),
                    });
                    let q = get(&r.q, t.clone(), c.clone());
                    let upd = fbin(
                        BinaryOp::Add,
                        fbin(BinaryOp::Mul, decay(&c), nc.clone()),
                        get(&r.k, t.clone(), c.clone()),
                    );
                    let mut v = Vec::new();
                    if r.strict {
                        v.push(set(
                            den,
                            fbin(
                                BinaryOp::Add,
                                Expr::Acc(den),
                                fbin(BinaryOp::Mul, q.clone(), nc),
                            ),
                        ));
                    }
                    v.push(Stmt::Store {
                        buf: n.buf,
                        index: n_at(&c),
                        value: upd,
                    });
                    if !r.strict {
                        let nc = wide(Expr::Load {
                            buf: n.buf,
                            index: Box::new(n_at(&c)),
                        });
                        v.push(set(
                            den,
                            fbin(BinaryOp::Add, Expr::Acc(den), fbin(BinaryOp::Mul, q, nc)),
                        ));
                    }
                    v
                }));
            }
            body.push(x.serial(r.width.clone(), |x, e| {
                let sum = x.serial(r.rows.clone(), |_, c| {
                    let s = get(&r.state, c.clone(), e.clone());
                    let q = get(&r.q, t.clone(), c.clone());
                    let upd = fbin(
                        BinaryOp::Add,
                        fbin(BinaryOp::Mul, decay(&c), Expr::Acc(old)),
                        fbin(
                            BinaryOp::Mul,
                            get(&r.k, t.clone(), c.clone()),
                            get(&r.v, t.clone(), e.clone()),
                        ),
                    );
                    let mut v = vec![set(old, s)];
                    if r.strict {
                        v.push(set(
                            o,
                            fbin(
                                BinaryOp::Add,
                                Expr::Acc(o),
                                fbin(BinaryOp::Mul, q.clone(), Expr::Acc(old)),
                            ),
                        ));
                    }
                    v.push(put(&r.state, c.clone(), e.clone(), upd));
                    if !r.strict {
                        let s = get(&r.state, c.clone(), e.clone());
                        v.push(set(
                            o,
                            fbin(BinaryOp::Add, Expr::Acc(o), fbin(BinaryOp::Mul, q, s)),
                        ));
                    }
                    v
                });
                let value = if r.norm.is_some() {
                    f32bin(BinaryOp::Div, narrow(Expr::Acc(o)), narrow(Expr::Acc(den)))
                } else {
                    Expr::Acc(o)
                };
                vec![set(o, f64c(0.0)), sum, put(&r.out, t.clone(), e, value)]
            }));
            body
        });
        vec![zero_state, step]
    }

    /// One online-softmax step (see [`AttnTile`]), per row: the new maximum over the visible
    /// scores, the rescaling of the running sum and output, then each key's weight.
    fn attn_tile(&mut self, a: &AttnTile) -> Stmt {
        let (mx, old, rowsum, dot) = (
            self.acc(Ty::F32),
            self.acc(Ty::F32),
            self.acc(Ty::F64),
            self.acc(Ty::F64),
        );
        let (score, p) = (self.acc(Ty::F32), self.acc(Ty::F32));
        let scale = Expr::Float(a.scale, Ty::F32);
        let ninf = Expr::Float(f64::NEG_INFINITY, Ty::F32);
        let load = |s: &Strided, i: Expr, j: Expr| Expr::Load {
            buf: s.buf,
            index: Box::new(at(s, i, j)),
        };
        self.serial(a.rows.clone(), |x, i| {
            // The score of key j into `score` (−∞ where hidden).
            let scored = |x: &mut Self, j: &Expr| -> Vec<Stmt> {
                let sum = x.serial(a.depth.clone(), |_, d| {
                    let prod = fbin(
                        BinaryOp::Mul,
                        get(&a.q, i.clone(), d.clone()),
                        get(&a.k, j.clone(), d),
                    );
                    vec![set(dot, fbin(BinaryOp::Add, Expr::Acc(dot), prod))]
                });
                let visible = select(
                    a.masked.clone(),
                    Expr::Binary {
                        op: BinaryOp::Ne,
                        ty: Ty::F32,
                        a: Box::new(load(&a.mask, i.clone(), j.clone())),
                        b: Box::new(Expr::Float(0.0, Ty::F32)),
                    },
                    Expr::Bool(true),
                );
                vec![
                    set(dot, f64c(0.0)),
                    sum,
                    set(
                        score,
                        select(
                            visible,
                            f32bin(BinaryOp::Mul, narrow(Expr::Acc(dot)), scale.clone()),
                            ninf.clone(),
                        ),
                    ),
                ]
            };
            let find_max = x.serial(a.cols.clone(), |x, j| {
                let mut v = scored(x, &j);
                let bigger = f32bin(BinaryOp::Gt, Expr::Acc(score), Expr::Acc(mx));
                v.push(set(mx, select(bigger, Expr::Acc(score), Expr::Acc(mx))));
                v
            });
            // α = e^{old − mx}, 0 while old = −∞ (then the sums are 0 anyway).
            let was_empty = f32bin(BinaryOp::Eq, Expr::Acc(old), ninf.clone());
            let alpha = select(
                was_empty,
                Expr::Float(0.0, Ty::F32),
                Expr::Unary {
                    op: UnaryOp::Exp,
                    ty: Ty::F32,
                    x: Box::new(f32bin(BinaryOp::Sub, Expr::Acc(old), Expr::Acc(mx))),
                },
            );
            let alpha_acc = x.acc(Ty::F32);
            let rescale = x.serial(a.width.clone(), |_, e| {
                vec![put(
                    &a.out,
                    i.clone(),
                    e.clone(),
                    f32bin(
                        BinaryOp::Mul,
                        load(&a.out, i.clone(), e),
                        Expr::Acc(alpha_acc),
                    ),
                )]
            });
            let accumulate = x.serial(a.cols.clone(), |x, j| {
                let mut v = scored(x, &j);
                let hidden = f32bin(BinaryOp::Eq, Expr::Acc(score), ninf.clone());
                let e = Expr::Unary {
                    op: UnaryOp::Exp,
                    ty: Ty::F32,
                    x: Box::new(f32bin(BinaryOp::Sub, Expr::Acc(score), Expr::Acc(mx))),
                };
                v.push(set(p, select(hidden, Expr::Float(0.0, Ty::F32), e)));
                v.push(set(
                    rowsum,
                    fbin(BinaryOp::Add, Expr::Acc(rowsum), wide(Expr::Acc(p))),
                ));
                v.push(x.serial(a.width.clone(), |_, e| {
                    let prod = fbin(
                        BinaryOp::Mul,
                        wide(Expr::Acc(p)),
                        get(&a.v, j.clone(), e.clone()),
                    );
                    vec![put(
                        &a.out,
                        i.clone(),
                        e.clone(),
                        fbin(BinaryOp::Add, get(&a.out, i.clone(), e), prod),
                    )]
                }));
                v
            });
            vec![
                set(old, load(&a.max, i.clone(), int(0))),
                set(mx, Expr::Acc(old)),
                find_max,
                set(alpha_acc, alpha),
                rescale,
                set(rowsum, f64c(0.0)),
                accumulate,
                put(
                    &a.sum,
                    i.clone(),
                    int(0),
                    fbin(
                        BinaryOp::Add,
                        fbin(
                            BinaryOp::Mul,
                            get(&a.sum, i.clone(), int(0)),
                            wide(Expr::Acc(alpha_acc)),
                        ),
                        Expr::Acc(rowsum),
                    ),
                ),
                put(&a.max, i, int(0), Expr::Acc(mx)),
            ]
        })
    }
}
