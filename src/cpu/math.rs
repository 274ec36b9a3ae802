//! Scalar kernels the CPU twins share, written so LLVM vectorises the loops that call
//! them (no libm calls, no data-dependent branches).

/// exp(x) for x ≤ 88.7, relative error about 1e-7; 0 below −87.3 (where exp leaves the
/// normal range), so exp(−∞) = 0. Cephes' expf: exp(x) = 2^k · e^r with
/// k = round(x / ln 2) and r = x − k·ln 2 (ln 2 in two parts, so r is exact),
/// e^r from a degree-6 polynomial on |r| ≤ ln 2 / 2. NaN is not handled: callers
/// screen rows with NaN first.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LO: f32 = -87.336_54;
    let under = x < LO;
    let x = if x > 88.722_83 { 88.722_83 } else { x };
    let x = if under { LO } else { x };
    // round(x · log2 e) by the 1.5·2^23 trick: the add rounds to an integer
    let t = x * std::f32::consts::LOG2_E + 12_582_912.0;
    let k = t - 12_582_912.0;
    let r = x - k * 0.693_359_4 + k * 2.121_944_4e-4;
    let mut p = 1.987_569_2e-4f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    let scale = f32::from_bits(((k as i32 + 127) << 23) as u32);
    if under {
        0.0
    } else {
        e * scale
    }
}

/// Rows per rayon task so each task moves at least ~64 KiB.
pub(crate) fn rows_per_task(n: usize) -> usize {
    (16_384 / n.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_matches_libm() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let got = super::exp(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_7;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(super::exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(super::exp(0.0), 1.0);
    }
}
