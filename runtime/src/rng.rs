//! The project's seeded RNG for random constants (`randn`, `rand`) and seeded fills: SplitMix64
//! for bits, Box–Muller for normals. Defined once here so every backend produces the same values.

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

/// `n` values of `dist` from `seed`, as f32.
pub fn fill(seed: u64, n: usize, normal: bool) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n)
        .map(|_| if normal { r.normal() } else { r.uniform() } as f32)
        .collect()
}
