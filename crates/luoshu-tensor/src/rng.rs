//! Counter-based random numbers: the value at element `i` of a random tensor is a pure
//! function of `(seed, stream, i)`, so it does not depend on the backend, the number of
//! threads, or how the tensor is sharded across devices.

/// SplitMix64's finalizer: a bijective 64-bit mixer with full avalanche.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 64 random bits for element `index` of stream `stream` under `seed`.
pub fn bits(seed: u64, stream: u64, index: u64) -> u64 {
    let key = mix(seed ^ mix(stream.wrapping_add(0x9e37_79b9_7f4a_7c15)));
    mix(key ^ mix(index.wrapping_mul(0xd1b5_4a32_d192_ed03)))
}

/// Uniform in `[0, 1)` with 24 bits of precision (exactly representable in f32).
pub fn uniform(seed: u64, stream: u64, index: u64) -> f32 {
    (bits(seed, stream, index) >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
}

/// Standard normal by Box–Muller from the two 32-bit halves of one draw.
pub fn normal(seed: u64, stream: u64, index: u64) -> f32 {
    let b = bits(seed, stream, index);
    // Shift u1 into (0, 1] so the logarithm is finite.
    let u1 = ((b >> 40) as f64 + 1.0) / (1u64 << 24) as f64;
    let u2 = ((b >> 8) & 0xff_ffff) as f64 / (1u64 << 24) as f64;
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_moments_are_right() {
        let n = 200_000u64;
        let (mut s, mut s2) = (0.0f64, 0.0f64);
        for i in 0..n {
            let u = uniform(7, 3, i) as f64;
            assert!((0.0..1.0).contains(&u));
            s += u;
            s2 += u * u;
        }
        let mean = s / n as f64;
        let var = s2 / n as f64 - mean * mean;
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
        assert!((var - 1.0 / 12.0).abs() < 0.002, "var {var}");
    }

    #[test]
    fn normal_moments_are_right() {
        let n = 200_000u64;
        let (mut s, mut s2) = (0.0f64, 0.0f64);
        for i in 0..n {
            let x = normal(1, 0, i) as f64;
            assert!(x.is_finite());
            s += x;
            s2 += x * x;
        }
        let mean = s / n as f64;
        let var = s2 / n as f64 - mean * mean;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
    }

    #[test]
    fn streams_and_seeds_differ() {
        assert_ne!(bits(1, 0, 0), bits(2, 0, 0));
        assert_ne!(bits(1, 0, 0), bits(1, 1, 0));
        assert_ne!(bits(1, 0, 0), bits(1, 0, 1));
    }
}
