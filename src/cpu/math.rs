//! Scalar kernels the CPU twins share, written so LLVM vectorises the loops that call
//! them (no libm calls, no data-dependent branches).

use crate::dtype::{DType, Element};
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

/// exp(x) for x ≤ 88.7, relative error about 1e-7; 0 below −87.3 (where exp leaves the
/// normal range), so exp(−∞) = 0. Cephes' expf: exp(x) = 2^k · e^r with
/// k = round(x / ln 2) and r = x − k·ln 2 (ln 2 in two parts, so r is exact),
/// e^r from a degree-6 polynomial on |r| ≤ ln 2 / 2. NaN is not handled: callers
/// screen rows with NaN first.
///
/// Branch-free and cast-free (2^k is built from the bits of the rounding sum), so a loop
/// calling it vectorises; see [`map_exp`].
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LO: f32 = -87.336_54;
    const HI: f32 = 88.722_83;
    let under = x < LO;
    let x = if x > HI { HI } else { x };
    let x = if under { LO } else { x };
    // round(x · log2 e) by the 1.5·2^23 trick: the add rounds to an integer k, which
    // then sits in the low mantissa bits of t
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
    // 2^k: (k + 127) << 23, with k = bits(t) − bits(1.5·2^23)
    let scale = f32::from_bits(t.to_bits().wrapping_sub(0x4b40_0000).wrapping_add(127) << 23);
    if under {
        0.0
    } else {
        e * scale
    }
}

/// `dst[i] = exp(src[i] − m)`, compiled for AVX2 where the CPU has it (8 lanes; the
/// portable build only assumes SSE2's 4).
pub(crate) fn map_exp(src: &[f32], dst: &mut [f32], m: f32) {
    #[inline(always)]
    fn body(src: &[f32], dst: &mut [f32], m: f32) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = exp(s - m);
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(src: &[f32], dst: &mut [f32], m: f32) {
            body(src, dst, m)
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 was detected on this CPU just above.
            return unsafe { avx2(src, dst, m) };
        }
    }
    body(src, dst, m)
}

/// `v[i] = exp(v[i] − m)` in place; see [`map_exp`].
pub(crate) fn exp_in_place(v: &mut [f32], m: f32) {
    #[inline(always)]
    fn body(v: &mut [f32], m: f32) {
        for x in v.iter_mut() {
            *x = exp(*x - m);
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(v: &mut [f32], m: f32) {
            body(v, m)
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 was detected on this CPU just above.
            return unsafe { avx2(v, m) };
        }
    }
    body(v, m)
}

/// `v[i] = f(v[i])`, compiled for AVX2+FMA where the CPU has them (8 lanes) and for the
/// portable baseline otherwise. `f` is a closure, monomorphised into both, so the loop
/// vectorises with the op inlined (no call per element).
#[inline(always)]
pub(crate) fn each(v: &mut [f32], f: impl Fn(f32) -> f32 + Copy) {
    #[inline(always)]
    fn body(v: &mut [f32], f: impl Fn(f32) -> f32) {
        for x in v.iter_mut() {
            *x = f(*x);
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(v: &mut [f32], f: impl Fn(f32) -> f32) {
            body(v, f)
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: AVX2 and FMA were detected on this CPU just above.
            return unsafe { avx2(v, f) };
        }
    }
    body(v, f)
}

/// `dst[i] = f(src[i])`, vectorised as [`each`]. Out of place, so an `f` that returns
/// its argument unchanged for some inputs (ReLU, clamp) stays a full vector store; in
/// place, LLVM turns that into a masked store of the changed lanes only, which AMD
/// CPUs run as slow microcode (`vmaskmovps`: ReLU ran at half the speed of neg).
#[inline(always)]
pub(crate) fn each_into(src: &[f32], dst: &mut [f32], f: impl Fn(f32) -> f32 + Copy) {
    #[inline(always)]
    fn body(src: &[f32], dst: &mut [f32], f: impl Fn(f32) -> f32) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = f(s);
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(src: &[f32], dst: &mut [f32], f: impl Fn(f32) -> f32) {
            body(src, dst, f)
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: AVX2 and FMA were detected on this CPU just above.
            return unsafe { avx2(src, dst, f) };
        }
    }
    body(src, dst, f)
}

/// `a[i] = f(a[i], b[i])`, vectorised as [`each`].
#[inline(always)]
pub(crate) fn each2(a: &mut [f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Copy) {
    #[inline(always)]
    fn body(a: &mut [f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
        for (x, &y) in a.iter_mut().zip(b) {
            *x = f(*x, y);
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(a: &mut [f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
            body(a, b, f)
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: AVX2 and FMA were detected on this CPU just above.
            return unsafe { avx2(a, b, f) };
        }
    }
    body(a, b, f)
}

/// Σ f(v[i]): blocks of 4096 summed in f32 over eight interleaved partial sums (this
/// vectorises), the block totals in f64. One running f32 sum over a 2^24-element row
/// drifts by about 1% once the sum dwarfs the terms; blocked, the error stays near f32
/// rounding of the result at any length.
#[inline(always)]
pub(crate) fn lanes_sum(v: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    const BLOCK: usize = 4096;
    let block_sum = |b: &[f32]| {
        let mut acc = [0f32; 8];
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            for k in 0..8 {
                acc[k] += f(c[k]);
            }
        }
        let tail: f32 = chunks.remainder().iter().map(|&x| f(x)).sum();
        ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
    };
    if v.len() <= BLOCK {
        return block_sum(v);
    }
    v.chunks(BLOCK).map(|b| block_sum(b) as f64).sum::<f64>() as f32
}

/// Whether the [`f16c`] loops run here (F16C and AVX).
#[cfg(target_arch = "x86_64")]
#[inline]
fn has_f16c() -> bool {
    std::arch::is_x86_feature_detected!("f16c") && std::arch::is_x86_feature_detected!("avx")
}

/// `dst = src` widened to f32; 16-bit rows go through half's slice conversion (F16C
/// where the CPU has it) rather than one software conversion per element.
pub(crate) fn widen<T: Element>(src: &[T], dst: &mut [f32]) {
    match T::DTYPE {
        DType::F16 => {
            #[cfg(target_arch = "x86_64")]
            if has_f16c() {
                // SAFETY: F16C and AVX were detected (`has_f16c`).
                return unsafe { f16c::widen(bytemuck::cast_slice(src), dst) };
            }
            bytemuck::cast_slice::<T, f16>(src).convert_to_f32_slice(dst)
        }
        DType::BF16 => bytemuck::cast_slice::<T, bf16>(src).convert_to_f32_slice(dst),
        _ => {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = s.to_f32();
            }
        }
    }
}

/// f16 bits widened into fresh (uninitialised) memory, so a new f32 operand needs no
/// clearing first (the clear was 6 % of a 72 × 384 × 384 f16 linear); `None` where the
/// CPU lacks F16C, else the filled vector.
pub(crate) fn widened_f16(src: &[u16]) -> Option<Vec<f32>> {
    #[cfg(target_arch = "x86_64")]
    if has_f16c() {
        let mut out = Vec::with_capacity(src.len());
        // SAFETY: F16C and AVX were detected (`has_f16c`); `widen_uninit` writes every one
        // of the src.len() elements of the spare capacity before the length is set.
        unsafe {
            f16c::widen_uninit(src, out.spare_capacity_mut());
            out.set_len(src.len());
        }
        return Some(out);
    }
    let _ = src;
    None
}

/// `dst = src` rounded to `T` (nearest even); the inverse of [`widen`].
pub(crate) fn narrow<T: Element>(src: &[f32], dst: &mut [T]) {
    match T::DTYPE {
        DType::F16 => {
            #[cfg(target_arch = "x86_64")]
            if has_f16c() {
                // SAFETY: F16C and AVX were detected (`has_f16c`).
                return unsafe { f16c::narrow(src, bytemuck::cast_slice_mut(dst)) };
            }
            bytemuck::cast_slice_mut::<T, f16>(dst).convert_from_f32_slice(src)
        }
        DType::BF16 => bytemuck::cast_slice_mut::<T, bf16>(dst).convert_from_f32_slice(src),
        _ => {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = T::from_f32(s);
            }
        }
    }
}

/// `dst = src + bias` rounded to f16, in one pass where the CPU has F16C (a matmul
/// tile's bias epilogue and its narrowing: two passes over the tile cost a 72 × 384 ×
/// 384 f16 linear 10 µs more than f32's one).
pub(crate) fn narrow_with_bias(src: &[f32], bias: &[f32], dst: &mut [f16]) {
    let n = src.len().min(bias.len()).min(dst.len());
    #[cfg(target_arch = "x86_64")]
    if has_f16c() {
        // SAFETY: F16C and AVX were detected (`has_f16c`); all three hold n elements.
        return unsafe {
            f16c::narrow_with_bias(
                &src[..n],
                &bias[..n],
                bytemuck::cast_slice_mut(&mut dst[..n]),
            )
        };
    }
    for ((d, &s), &b) in dst[..n].iter_mut().zip(src).zip(bias) {
        *d = f16::from_f32(s + b);
    }
}

/// f16 ⇄ f32 with F16C, eight lanes per instruction in one inlined loop (half's slice
/// conversion makes a call and two copies per eight elements). Same instruction, so
/// the same rounding (nearest even), infinities and NaNs as half's F16C path.
#[cfg(target_arch = "x86_64")]
mod f16c {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx,f16c")]
    pub(super) unsafe fn widen(src: &[u16], dst: &mut [f32]) {
        let n = src.len().min(dst.len());
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n bounds both the 16-byte load and the 32-byte store.
            unsafe {
                let h = _mm_loadu_si128(src.as_ptr().add(i) as *const __m128i);
                _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
            }
            i += 8;
        }
        for j in i..n {
            dst[j] = half::f16::from_bits(src[j]).to_f32();
        }
    }

    /// [`widen`] into uninitialised memory: every element of `dst[..src.len()]` is
    /// written (through raw pointers; nothing is read).
    #[target_feature(enable = "avx,f16c")]
    pub(super) unsafe fn widen_uninit(src: &[u16], dst: &mut [std::mem::MaybeUninit<f32>]) {
        let n = src.len().min(dst.len());
        let d = dst.as_mut_ptr() as *mut f32;
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n bounds both the 16-byte load and the 32-byte store.
            unsafe {
                let h = _mm_loadu_si128(src.as_ptr().add(i) as *const __m128i);
                _mm256_storeu_ps(d.add(i), _mm256_cvtph_ps(h));
            }
            i += 8;
        }
        for j in i..n {
            dst[j].write(half::f16::from_bits(src[j]).to_f32());
        }
    }

    #[target_feature(enable = "avx,f16c")]
    pub(super) unsafe fn narrow_with_bias(src: &[f32], bias: &[f32], dst: &mut [u16]) {
        let n = src.len();
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n bounds the loads and the 16-byte store (all hold n).
            unsafe {
                let v = _mm256_add_ps(
                    _mm256_loadu_ps(src.as_ptr().add(i)),
                    _mm256_loadu_ps(bias.as_ptr().add(i)),
                );
                let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
                crate::cpu::lanes::store_halves(dst.as_mut_ptr().add(i), h);
            }
            i += 8;
        }
        for j in i..n {
            dst[j] = half::f16::from_f32(src[j] + bias[j]).to_bits();
        }
    }

    #[target_feature(enable = "avx,f16c")]
    pub(super) unsafe fn narrow(src: &[f32], dst: &mut [u16]) {
        let n = src.len().min(dst.len());
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n bounds both the 32-byte load and the 16-byte store.
            unsafe {
                let v = _mm256_loadu_ps(src.as_ptr().add(i));
                let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
                crate::cpu::lanes::store_halves(dst.as_mut_ptr().add(i), h);
            }
            i += 8;
        }
        for j in i..n {
            dst[j] = half::f16::from_f32(src[j]).to_bits();
        }
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
