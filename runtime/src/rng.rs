//! The project's seeded RNG for random constants (`randn`, `rand`) and seeded fills: SplitMix64
//! for bits, Box–Muller for normals; and [`torch_randn`], PyTorch's CPU `torch.randn` (float32)
//! after `torch.manual_seed`. Defined once here so every backend produces the same values.

/// A SplitMix64 generator.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform on [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal by Box–Muller (one value per call; the pair's second half is dropped
    /// so that element i depends only on the seed and i).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// `n` values of `dist` from `seed`, as f32 (normal or uniform; `torch` selects
/// [`torch_randn`], which is always normal).
pub fn fill_dist(seed: u64, n: usize, normal: bool, torch: bool) -> Vec<f32> {
    if torch {
        torch_randn(seed, n)
    } else {
        fill(seed, n, normal)
    }
}

/// `n` values of `dist` from `seed`, as f32.
pub fn fill(seed: u64, n: usize, normal: bool) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n)
        .map(|_| if normal { r.normal() } else { r.uniform() } as f32)
        .collect()
}

/// The 32-bit Mersenne Twister (MT19937) as PyTorch's CPU generator runs it: `manual_seed(s)`
/// initialises the state from the low 32 bits of `s` with the standard recurrence.
pub struct Mt19937 {
    state: [u32; 624],
    next: usize,
}

impl Mt19937 {
    pub fn new(seed: u64) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed as u32;
        for j in 1..624 {
            let p = state[j - 1];
            state[j] = 1_812_433_253u32
                .wrapping_mul(p ^ (p >> 30))
                .wrapping_add(j as u32);
        }
        Mt19937 { state, next: 624 }
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.next >= 624 {
            self.twist();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9D2C_5680;
        y ^= (y << 15) & 0xEFC6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        for k in 0..624 {
            let y = (self.state[k] & 0x8000_0000) | (self.state[(k + 1) % 624] & 0x7FFF_FFFF);
            let mag = if y & 1 == 1 { 0x9908_B0DF } else { 0 };
            self.state[k] = self.state[(k + 397) % 624] ^ (y >> 1) ^ mag;
        }
        self.next = 0;
    }

    /// torch's float uniform on [0, 1): the low 24 bits of one draw, times 2⁻²⁴.
    fn uniform_f32(&mut self) -> f32 {
        (self.next_u32() & 0xFF_FFFF) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// torch's double uniform on [0, 1): 53 bits of two draws (first draw high), times 2⁻⁵³.
    fn uniform_f64(&mut self) -> f64 {
        let hi = self.next_u32() as u64;
        let lo = self.next_u32() as u64;
        (((hi << 32) | lo) & ((1u64 << 53) - 1)) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// `torch.manual_seed(seed); torch.randn(n)` on the CPU in float32, flattened.
///
/// Below 16 values torch draws each pair by Box–Muller in double from two 53-bit uniforms
/// (cos first, the sin half cached for the next value) and rounds to f32: reproduced exactly.
/// From 16 values it fills all `n` 24-bit uniforms first and transforms each block of 16 in
/// place (u₁ = 1 − x[j], u₂ = x[j+8], j < 8: x[j] = r cos θ, x[j+8] = r sin θ with
/// r = √(−2 ln u₁), θ = 2π u₂ in f32); a ragged tail redraws the last 16 uniforms and redoes
/// them. torch evaluates ln, cos and sin there with vectorised f32 routines; this computes them
/// in f64 and rounds once, so those values agree with torch's to within a few f32 ulps
/// (at most 2 in the committed fixture, about 60 % exact), not bit for bit.
pub fn torch_randn(seed: u64, n: usize) -> Vec<f32> {
    let mut g = Mt19937::new(seed);
    if n < 16 {
        let mut out = Vec::with_capacity(n);
        let mut cached: Option<f64> = None;
        while out.len() < n {
            if let Some(s) = cached.take() {
                out.push(s as f32);
                continue;
            }
            let u1 = g.uniform_f64();
            let u2 = g.uniform_f64();
            let r = (-2.0 * (-u2).ln_1p()).sqrt();
            let theta = 2.0 * std::f64::consts::PI * u1;
            cached = Some(r * theta.sin());
            out.push((r * theta.cos()) as f32);
        }
        return out;
    }
    let mut x: Vec<f32> = (0..n).map(|_| g.uniform_f32()).collect();
    for start in (0..=n - 16).step_by(16) {
        box_muller_16(&mut x[start..start + 16]);
    }
    if !n.is_multiple_of(16) {
        let tail = &mut x[n - 16..];
        for v in tail.iter_mut() {
            *v = g.uniform_f32();
        }
        box_muller_16(tail);
    }
    x
}

/// torch's in-place Box–Muller over 16 uniforms (see [`torch_randn`]).
fn box_muller_16(x: &mut [f32]) {
    let two_pi = (2.0 * std::f64::consts::PI) as f32;
    for j in 0..8 {
        let u1 = f64::from(1.0 - x[j]);
        let theta = f64::from(two_pi * x[j + 8]);
        let r = (-2.0 * u1.ln()).sqrt();
        x[j] = (r * theta.cos()) as f32;
        x[j + 8] = (r * theta.sin()) as f32;
    }
}
