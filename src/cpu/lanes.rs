//! 8-lane AVX2 + FMA versions of the activations and transcendental unary ops, for the
//! CPU twins' f32 blocks. The formulas and constants are those of the scalar twins
//! (`math::exp`, `activation::gelu`, ...), so results agree to rounding; what changes is
//! that every multiply-add is one FMA and every lane of a 256-bit register is in use.
//! LLVM's auto-vectorised scalar loops reach neither: Rust never contracts `a * b + c`
//! into an FMA, and `f32::tanh` / `f32::ln` are libm calls per element. GELU went from
//! about 20 to about 8 instructions per element this way.
//!
//! [`map`] returns false where the CPU lacks AVX2 or FMA (or off x86_64); callers then
//! run their portable loop.

use crate::ops::activation::Activation;
use crate::ops::unary::UnaryOp;

/// An op [`map`] has an 8-lane form of.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum LaneOp {
    /// exp with IEEE ends.
    Exp,
    /// Natural log (NaN below 0, −∞ at 0).
    Log,
    /// tanh.
    Tanh,
    /// 1 / (1 + e^−x).
    Sigmoid,
    /// GELU, erf form.
    Gelu,
    /// GELU, tanh form.
    GeluTanh,
    /// x · sigmoid(x).
    Silu,
}

impl LaneOp {
    /// The lane form of a unary op, if it has one (the cheap ops vectorise well as they
    /// are).
    pub(crate) fn of_unary(op: UnaryOp) -> Option<LaneOp> {
        match op {
            UnaryOp::Exp => Some(LaneOp::Exp),
            UnaryOp::Log => Some(LaneOp::Log),
            UnaryOp::Tanh => Some(LaneOp::Tanh),
            UnaryOp::Sigmoid => Some(LaneOp::Sigmoid),
            _ => None,
        }
    }

    /// The lane form of a one-input activation, if it has one.
    pub(crate) fn of_activation(act: Activation) -> Option<LaneOp> {
        match act {
            Activation::Gelu => Some(LaneOp::Gelu),
            Activation::GeluTanh => Some(LaneOp::GeluTanh),
            Activation::Silu => Some(LaneOp::Silu),
            _ => None,
        }
    }
}

/// Whether this CPU runs the lane forms.
#[inline]
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `v[i] = op(v[i])` in 8-lane steps; false (nothing written) without AVX2 + FMA.
#[inline]
pub(crate) fn map(op: LaneOp, v: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: AVX2 and FMA were detected on this CPU just above; source and
        // destination are the same valid slice, read before written lane by lane.
        unsafe { x86::map(op, v.as_ptr(), v.as_mut_ptr(), v.len()) };
        return true;
    }
    let _ = (op, v);
    false
}

/// `dst[i] = op(src[i])` in 8-lane steps; false (nothing written) without AVX2 + FMA.
#[inline]
pub(crate) fn map_into(op: LaneOp, src: &[f32], dst: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if available() {
        let n = src.len().min(dst.len());
        // SAFETY: AVX2 and FMA were detected on this CPU just above; both slices hold n.
        unsafe { x86::map(op, src.as_ptr(), dst.as_mut_ptr(), n) };
        return true;
    }
    let _ = (op, src, dst);
    false
}

/// Whether this CPU runs [`map_f16`] (the lane forms plus F16C).
#[inline]
pub(crate) fn available_f16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        available() && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `dst[i] = op(src[i])` on f16 data (bit patterns), widened and narrowed in registers
/// (F16C, nearest even); false (nothing written) without AVX2, FMA and F16C.
#[inline]
pub(crate) fn map_f16(op: LaneOp, src: &[u16], dst: &mut [u16]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if available_f16() {
        let n = src.len().min(dst.len());
        // SAFETY: AVX2, FMA and F16C were detected on this CPU just above; both slices
        // hold n elements.
        unsafe { x86::map_f16(op, src.as_ptr(), dst.as_mut_ptr(), n) };
        return true;
    }
    let _ = (op, src, dst);
    false
}

/// `a[i] = silu(a[i]) · b[i]` in 8-lane steps; false (nothing written) without AVX2 +
/// FMA.
#[inline]
pub(crate) fn swiglu(a: &mut [f32], b: &[f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: AVX2 and FMA were detected on this CPU just above.
        unsafe { x86::swiglu(a, b) };
        return true;
    }
    let _ = (a, b);
    false
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::LaneOp;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn splat(x: f32) -> __m256 {
        _mm256_set1_ps(x)
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn is_nan(x: __m256) -> __m256 {
        _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x)
    }

    /// `math::exp`: Cephes' expf, 2^k · e^r, 0 below −87.34 (NaN not handled).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn exp_core(x: __m256) -> __m256 {
        let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, splat(-87.336_54));
        let x = _mm256_min_ps(x, splat(88.722_83));
        let x = _mm256_max_ps(x, splat(-87.336_54));
        // round(x · log2 e) by the 1.5·2^23 trick: k sits in the low mantissa bits of t
        let t = _mm256_fmadd_ps(x, splat(std::f32::consts::LOG2_E), splat(12_582_912.0));
        let k = _mm256_sub_ps(t, splat(12_582_912.0));
        let r = _mm256_fnmadd_ps(k, splat(0.693_359_4), x);
        let r = _mm256_fmadd_ps(k, splat(2.121_944_4e-4), r);
        let mut p = splat(1.987_569_2e-4);
        p = _mm256_fmadd_ps(p, r, splat(1.398_2e-3));
        p = _mm256_fmadd_ps(p, r, splat(8.333_452e-3));
        p = _mm256_fmadd_ps(p, r, splat(4.166_579_6e-2));
        p = _mm256_fmadd_ps(p, r, splat(1.666_666_5e-1));
        p = _mm256_fmadd_ps(p, r, splat(0.5));
        let e = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, splat(1.0)));
        let bits = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(0x4b40_0000));
        let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            bits,
            _mm256_set1_epi32(127),
        )));
        _mm256_andnot_ps(under, _mm256_mul_ps(e, scale))
    }

    /// exp with IEEE ends: NaN stays NaN, overflow gives ∞, exp(−∞) = 0.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn exp_full(x: __m256) -> __m256 {
        let e = exp_core(x);
        let over = _mm256_cmp_ps::<_CMP_GT_OQ>(x, splat(88.722_83));
        let e = _mm256_blendv_ps(e, splat(f32::INFINITY), over);
        _mm256_blendv_ps(e, x, is_nan(x))
    }

    /// `activation::gelu`: a · Φ(a) with erfc from its Chebyshev fit (fractional error
    /// below 1.2e-7), so the negative tail keeps its relative precision.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn gelu(a: __m256) -> __m256 {
        let z = _mm256_mul_ps(a, splat(std::f32::consts::FRAC_1_SQRT_2));
        let az = _mm256_andnot_ps(splat(-0.0), z);
        let t = _mm256_div_ps(splat(1.0), _mm256_fmadd_ps(az, splat(0.5), splat(1.0)));
        let mut q = splat(0.170_872_8);
        for c in [
            -0.822_152_2,
            1.488_515_9,
            -1.135_204,
            0.278_868_07,
            -0.186_288_06,
            0.096_784_18,
            0.374_091_96,
            1.000_023_7,
        ] {
            q = _mm256_fmadd_ps(q, t, splat(c));
        }
        // −z² − 1.2655122 + t·q
        let p = _mm256_fmadd_ps(t, q, _mm256_fnmadd_ps(az, az, splat(-1.265_512_2)));
        let e = _mm256_mul_ps(t, exp_full(p));
        let half_e = _mm256_mul_ps(splat(0.5), e);
        let pos = _mm256_cmp_ps::<_CMP_GE_OQ>(z, splat(0.0));
        let phi = _mm256_blendv_ps(half_e, _mm256_sub_ps(splat(1.0), half_e), pos);
        _mm256_mul_ps(a, phi)
    }

    /// `activation::gelu_tanh`: a / (1 + e^(−2u)), u = √(2/π)·(a + 0.044715·a³).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn gelu_tanh(a: __m256) -> __m256 {
        let a2 = _mm256_mul_ps(a, a);
        let inner = _mm256_mul_ps(a, _mm256_fmadd_ps(a2, splat(0.044_715), splat(1.0)));
        let m2u = _mm256_mul_ps(inner, splat(-2.0 * 0.797_884_6));
        _mm256_div_ps(a, _mm256_add_ps(splat(1.0), exp_full(m2u)))
    }

    /// 1 / (1 + e^−v).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn sigmoid(v: __m256) -> __m256 {
        let neg = _mm256_xor_ps(v, splat(-0.0));
        _mm256_div_ps(splat(1.0), _mm256_add_ps(splat(1.0), exp_full(neg)))
    }

    /// v / (1 + e^−v).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn silu(v: __m256) -> __m256 {
        let neg = _mm256_xor_ps(v, splat(-0.0));
        _mm256_div_ps(v, _mm256_add_ps(splat(1.0), exp_full(neg)))
    }

    /// Cephes' tanhf: an odd polynomial below |x| = 0.625, 1 − 2/(e^2|x| + 1) above
    /// (where that difference loses no precision), the sign put back.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn tanh(x: __m256) -> __m256 {
        let sign = _mm256_and_ps(x, splat(-0.0));
        let ax = _mm256_andnot_ps(splat(-0.0), x);
        let z = _mm256_mul_ps(x, x);
        let mut p = splat(-5.704_988_7e-3);
        for c in [2.063_909e-2, -5.373_971_6e-2, 1.333_144_2e-1, -3.333_328e-1] {
            p = _mm256_fmadd_ps(p, z, splat(c));
        }
        let small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
        let s = exp_full(_mm256_add_ps(ax, ax));
        let big = _mm256_sub_ps(
            splat(1.0),
            _mm256_div_ps(splat(2.0), _mm256_add_ps(s, splat(1.0))),
        );
        let big = _mm256_or_ps(big, sign);
        let is_small = _mm256_cmp_ps::<_CMP_LT_OQ>(ax, splat(0.625));
        _mm256_blendv_ps(big, small, is_small)
    }

    /// Cephes' logf: x = m · 2^e with m in [√½, √2), log(1 + (m − 1)) from a degree-8
    /// polynomial, e·ln 2 added in two parts. Subnormals are scaled by 2^23 first; below
    /// 0 NaN, at 0 −∞, ∞ and NaN pass through.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn log(x: __m256) -> __m256 {
        let sub = _mm256_cmp_ps::<_CMP_LT_OQ>(x, splat(f32::MIN_POSITIVE));
        let xs = _mm256_blendv_ps(x, _mm256_mul_ps(x, splat(8_388_608.0)), sub);
        let bits = _mm256_castps_si256(xs);
        let mut e = _mm256_cvtepi32_ps(_mm256_sub_epi32(
            _mm256_srli_epi32::<23>(bits),
            _mm256_set1_epi32(126),
        ));
        e = _mm256_sub_ps(e, _mm256_and_ps(sub, splat(23.0)));
        // mantissa with the exponent of 0.5: m in [0.5, 1)
        let m = _mm256_castsi256_ps(_mm256_or_si256(
            _mm256_and_si256(bits, _mm256_set1_epi32(0x007f_ffff)),
            _mm256_set1_epi32(0x3f00_0000),
        ));
        let lo = _mm256_cmp_ps::<_CMP_LT_OQ>(m, splat(std::f32::consts::FRAC_1_SQRT_2));
        e = _mm256_sub_ps(e, _mm256_and_ps(lo, splat(1.0)));
        // m < √½: 2m − 1, else m − 1
        let m = _mm256_sub_ps(_mm256_add_ps(m, _mm256_and_ps(lo, m)), splat(1.0));
        let z = _mm256_mul_ps(m, m);
        let mut y = splat(7.037_683_6e-2);
        for c in [
            -1.151_461e-1,
            1.167_699_9e-1,
            -1.242_014_1e-1,
            1.424_932_3e-1,
            -1.666_805_8e-1,
            2.000_071_5e-1,
            -2.499_999_4e-1,
            3.333_333e-1,
        ] {
            y = _mm256_fmadd_ps(y, m, splat(c));
        }
        y = _mm256_mul_ps(_mm256_mul_ps(y, m), z);
        y = _mm256_fmadd_ps(e, splat(-2.121_944_4e-4), y);
        y = _mm256_fnmadd_ps(z, splat(0.5), y);
        let r = _mm256_fmadd_ps(e, splat(0.693_359_4), _mm256_add_ps(m, y));
        // ends: x < 0 → NaN, x = 0 → −∞, x = ∞ or NaN → x
        let r = _mm256_blendv_ps(
            r,
            splat(f32::NAN),
            _mm256_cmp_ps::<_CMP_LT_OQ>(x, splat(0.0)),
        );
        let r = _mm256_blendv_ps(
            r,
            splat(f32::NEG_INFINITY),
            _mm256_cmp_ps::<_CMP_EQ_OQ>(x, splat(0.0)),
        );
        let pass = _mm256_or_ps(
            is_nan(x),
            _mm256_cmp_ps::<_CMP_EQ_OQ>(x, splat(f32::INFINITY)),
        );
        _mm256_blendv_ps(r, x, pass)
    }

    /// `dst[i] = f(src[i])`, 8 lanes at a time; the tail goes through a padded register.
    /// `src` and `dst` may be the same memory (each lane is read before it is written).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn apply(src: *const f32, dst: *mut f32, n: usize, f: impl Fn(__m256) -> __m256) {
        let full = n / 8 * 8;
        let mut i = 0;
        while i < full {
            _mm256_storeu_ps(dst.add(i), f(_mm256_loadu_ps(src.add(i))));
            i += 8;
        }
        if full < n {
            let mut buf = [0f32; 8];
            std::ptr::copy(src.add(full), buf.as_mut_ptr(), n - full);
            let y = f(_mm256_loadu_ps(buf.as_ptr()));
            _mm256_storeu_ps(buf.as_mut_ptr(), y);
            std::ptr::copy(buf.as_ptr(), dst.add(full), n - full);
        }
    }

    /// One loop per op, each with its lane function inlined. `src` and `dst` hold `n`
    /// elements each (they may be the same memory).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn map(op: LaneOp, src: *const f32, dst: *mut f32, n: usize) {
        match op {
            LaneOp::Exp => apply(src, dst, n, |x| exp_full(x)),
            LaneOp::Log => apply(src, dst, n, |x| log(x)),
            LaneOp::Tanh => apply(src, dst, n, |x| tanh(x)),
            LaneOp::Sigmoid => apply(src, dst, n, |x| sigmoid(x)),
            LaneOp::Gelu => apply(src, dst, n, |x| gelu(x)),
            LaneOp::GeluTanh => apply(src, dst, n, |x| gelu_tanh(x)),
            LaneOp::Silu => apply(src, dst, n, |x| silu(x)),
        }
    }

    /// [`map`] on f16 bit patterns: 8 halves widened into a register, mapped, narrowed.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn map_f16(op: LaneOp, src: *const u16, dst: *mut u16, n: usize) {
        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn apply16(src: *const u16, dst: *mut u16, n: usize, f: impl Fn(__m256) -> __m256) {
            let full = n / 8 * 8;
            let mut i = 0;
            while i < full {
                let x = _mm256_cvtph_ps(_mm_loadu_si128(src.add(i) as *const __m128i));
                let y = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(f(x));
                _mm_storeu_si128(dst.add(i) as *mut __m128i, y);
                i += 8;
            }
            if full < n {
                let mut buf = [0u16; 8];
                std::ptr::copy(src.add(full), buf.as_mut_ptr(), n - full);
                let x = _mm256_cvtph_ps(_mm_loadu_si128(buf.as_ptr() as *const __m128i));
                let y = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(f(x));
                _mm_storeu_si128(buf.as_mut_ptr() as *mut __m128i, y);
                std::ptr::copy(buf.as_ptr(), dst.add(full), n - full);
            }
        }
        match op {
            LaneOp::Exp => apply16(src, dst, n, |x| exp_full(x)),
            LaneOp::Log => apply16(src, dst, n, |x| log(x)),
            LaneOp::Tanh => apply16(src, dst, n, |x| tanh(x)),
            LaneOp::Sigmoid => apply16(src, dst, n, |x| sigmoid(x)),
            LaneOp::Gelu => apply16(src, dst, n, |x| gelu(x)),
            LaneOp::GeluTanh => apply16(src, dst, n, |x| gelu_tanh(x)),
            LaneOp::Silu => apply16(src, dst, n, |x| silu(x)),
        }
    }

    /// `a[i] = silu(a[i]) · b[i]`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn swiglu(a: &mut [f32], b: &[f32]) {
        let n = a.len().min(b.len());
        let (a, b) = (&mut a[..n], &b[..n]);
        let full = n / 8 * 8;
        for i in (0..full).step_by(8) {
            let x = _mm256_loadu_ps(a.as_ptr().add(i));
            let y = _mm256_loadu_ps(b.as_ptr().add(i));
            _mm256_storeu_ps(a.as_mut_ptr().add(i), _mm256_mul_ps(silu(x), y));
        }
        if full < n {
            let (mut p, mut q) = ([0f32; 8], [0f32; 8]);
            p[..n - full].copy_from_slice(&a[full..]);
            q[..n - full].copy_from_slice(&b[full..]);
            let y = _mm256_mul_ps(
                silu(_mm256_loadu_ps(p.as_ptr())),
                _mm256_loadu_ps(q.as_ptr()),
            );
            _mm256_storeu_ps(p.as_mut_ptr(), y);
            a[full..].copy_from_slice(&p[..n - full]);
        }
    }
}
