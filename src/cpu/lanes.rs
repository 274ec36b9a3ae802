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
    /// 1 / √x (−0 gives −∞, negatives NaN).
    Rsqrt,
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
            UnaryOp::Rsqrt => Some(LaneOp::Rsqrt),
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
        unsafe { map_raw(op, v.as_ptr(), v.as_mut_ptr(), v.len()) };
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
        unsafe { map_raw(op, src.as_ptr(), dst.as_mut_ptr(), n) };
        return true;
    }
    let _ = (op, src, dst);
    false
}

/// [`map`] / [`map_into`] on `n` elements (`src` and `dst` may be the same memory): the
/// 16-lane forms where the CPU has AVX-512 F, the 8-lane ones for the rest.
///
/// # Safety
/// AVX2 and FMA must be present ([`available`]); `src` and `dst` hold `n` elements.
#[cfg(target_arch = "x86_64")]
unsafe fn map_raw(op: LaneOp, src: *const f32, dst: *mut f32, n: usize) {
    // SAFETY: the caller's contract; AVX-512 F is checked before the 16-lane forms run.
    unsafe {
        let done = if available_avx512() {
            x86::wide::map(op, src, dst, n)
        } else {
            0
        };
        x86::map(op, src.add(done), dst.add(done), n - done)
    }
}

/// Eight elements at `p` as f32 lanes: f32 loaded, f16 through F16C, bf16 by a 16-bit
/// shift (it is the top half of an f32).
///
/// # Safety
/// AVX2, FMA and F16C must be present ([`available_f16`]); `p` holds eight elements.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn load8<T: crate::dtype::Element>(p: *const T) -> std::arch::x86_64::__m256 {
    use crate::dtype::DType;
    use std::arch::x86_64::*;
    // SAFETY (all arms): the caller guarantees eight elements at p.
    unsafe {
        match T::DTYPE {
            DType::F16 => _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)),
            DType::BF16 => {
                let w = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(w))
            }
            DType::F32 => _mm256_loadu_ps(p as *const f32),
            DType::U32 => unreachable!("u32 is never widened to float lanes"),
        }
    }
}

/// `_mm_storeu_si128(p, h)` for halves that `vcvtps2ph` has just narrowed, kept as a
/// store of its own: LLVM folds the pair into `vcvtps2ph` to memory, which Zen 4 runs
/// several times slower than the register form and a store (f16 rows ran at a third of
/// f32's pace in cache). The empty asm is opaque to that folding and costs nothing.
///
/// # Safety
/// `p` must be valid for writing 16 bytes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn store_halves(p: *mut u16, h: std::arch::x86_64::__m128i) {
    let mut h = h;
    // SAFETY: an empty template; it reads and writes nothing but the register.
    unsafe {
        std::arch::asm!("/* {0} */", inout(xmm_reg) h, options(pure, nomem, nostack, preserves_flags));
        std::arch::x86_64::_mm_storeu_si128(p.cast(), h)
    }
}

/// Whether this CPU has AVX-512 F (16-lane forms of GELU, tanh and log: on Zen 4 a
/// 512-bit operation is one µop, so the long formulas keep twice the elements in flight;
/// GELU ran 1.5× faster). `OPENKERN_CPU_AVX512=0` turns them off (to time or test the
/// 8-lane forms on such a CPU).
#[inline]
pub(crate) fn available_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ON.get_or_init(|| {
            available()
                && std::arch::is_x86_feature_detected!("avx512f")
                && std::env::var("OPENKERN_CPU_AVX512").map_or(true, |v| v != "0")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
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
        unsafe {
            let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
            let done = if available_avx512() {
                x86::wide::map_f16(op, s, d, n)
            } else {
                0
            };
            x86::map_f16(op, s.add(done), d.add(done), n - done)
        };
        return true;
    }
    let _ = (op, src, dst);
    false
}

/// `out[i] = silu(g[i]) · u[i]` in 8-lane steps, from the inputs straight into the
/// output; false (nothing written) without AVX2 + FMA.
#[inline]
pub(crate) fn swiglu(g: &[f32], u: &[f32], out: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if available() {
        let n = g.len().min(u.len()).min(out.len());
        // SAFETY: AVX2 and FMA were detected on this CPU just above; all three hold n.
        unsafe { x86::swiglu(g.as_ptr(), u.as_ptr(), out.as_mut_ptr(), n) };
        return true;
    }
    let _ = (g, u, out);
    false
}

/// [`swiglu`] on f16 bit patterns, widened and narrowed in registers; false (nothing
/// written) without AVX2, FMA and F16C.
#[inline]
pub(crate) fn swiglu_f16(g: &[u16], u: &[u16], out: &mut [u16]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if available_f16() {
        let n = g.len().min(u.len()).min(out.len());
        // SAFETY: AVX2, FMA and F16C (and AVX-512 F where taken) were detected; all
        // three hold n.
        unsafe {
            let (g, u, o) = (g.as_ptr(), u.as_ptr(), out.as_mut_ptr());
            let done = if available_avx512() {
                x86::wide::swiglu_f16(g, u, o, n)
            } else {
                0
            };
            x86::swiglu_f16(g.add(done), u.add(done), o.add(done), n - done)
        };
        return true;
    }
    let _ = (g, u, out);
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

    /// 1 / √v, rounded twice as the scalar `1.0 / v.sqrt()` is (the same bits).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn rsqrt(v: __m256) -> __m256 {
        _mm256_div_ps(splat(1.0), _mm256_sqrt_ps(v))
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
            LaneOp::Rsqrt => apply(src, dst, n, |x| rsqrt(x)),
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
                super::store_halves(dst.add(i), y);
                i += 8;
            }
            if full < n {
                let mut buf = [0u16; 8];
                std::ptr::copy(src.add(full), buf.as_mut_ptr(), n - full);
                let x = _mm256_cvtph_ps(_mm_loadu_si128(buf.as_ptr() as *const __m128i));
                let y = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(f(x));
                super::store_halves(buf.as_mut_ptr(), y);
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
            LaneOp::Rsqrt => apply16(src, dst, n, |x| rsqrt(x)),
        }
    }

    /// `out[i] = silu(g[i]) · u[i]`, 8 lanes at a time, the tail through padded
    /// registers.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn swiglu(g: *const f32, u: *const f32, out: *mut f32, n: usize) {
        let full = n / 8 * 8;
        let mut i = 0;
        while i < full {
            let x = _mm256_loadu_ps(g.add(i));
            let y = _mm256_loadu_ps(u.add(i));
            _mm256_storeu_ps(out.add(i), _mm256_mul_ps(silu(x), y));
            i += 8;
        }
        if full < n {
            let (mut p, mut q) = ([0f32; 8], [0f32; 8]);
            std::ptr::copy(g.add(full), p.as_mut_ptr(), n - full);
            std::ptr::copy(u.add(full), q.as_mut_ptr(), n - full);
            let y = _mm256_mul_ps(
                silu(_mm256_loadu_ps(p.as_ptr())),
                _mm256_loadu_ps(q.as_ptr()),
            );
            _mm256_storeu_ps(p.as_mut_ptr(), y);
            std::ptr::copy(p.as_ptr(), out.add(full), n - full);
        }
    }

    /// [`swiglu`] on f16 bit patterns: both inputs widened in registers (F16C), the
    /// product narrowed once, nearest even.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn swiglu_f16(g: *const u16, u: *const u16, out: *mut u16, n: usize) {
        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn step(g: *const u16, u: *const u16, out: *mut u16) {
            let x = _mm256_cvtph_ps(_mm_loadu_si128(g as *const __m128i));
            let y = _mm256_cvtph_ps(_mm_loadu_si128(u as *const __m128i));
            let r = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_mul_ps(silu(x), y));
            super::store_halves(out, r);
        }
        let full = n / 8 * 8;
        let mut i = 0;
        while i < full {
            step(g.add(i), u.add(i), out.add(i));
            i += 8;
        }
        if full < n {
            let (mut p, mut q) = ([0u16; 8], [0u16; 8]);
            std::ptr::copy(g.add(full), p.as_mut_ptr(), n - full);
            std::ptr::copy(u.add(full), q.as_mut_ptr(), n - full);
            step(p.as_ptr(), q.as_ptr(), p.as_mut_ptr());
            std::ptr::copy(p.as_ptr(), out.add(full), n - full);
        }
    }

    /// 16-lane AVX-512 forms of the lane ops (the long formulas gain most: GELU, tanh,
    /// log). Same formulas as the 8-lane forms, except
    /// that 2^k is `vscalefps` (which also gives ∞ and subnormals at the ends) and log
    /// splits x with `vgetexpps`/`vgetmantps`.
    pub(super) mod wide {
        use super::super::LaneOp;
        use std::arch::x86_64::*;

        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn splat(x: f32) -> __m512 {
            _mm512_set1_ps(x)
        }

        /// Sixteen narrowed halves stored at `p` as two 16-byte `store_halves` (the
        /// folded `vcvtps2ph` to memory is slow on Zen 4).
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn store16(p: *mut u16, r: __m256i) {
            super::super::store_halves(p, _mm256_castsi256_si128(r));
            super::super::store_halves(p.add(8), _mm256_extracti128_si256::<1>(r));
        }

        /// e^r · 2^(k + s) for x = k·ln 2 + r: the polynomial of `exp_core`, scaled by
        /// `vscalefps`. `x` must not be NaN; below −104 the result is 0, above 89 ∞.
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn exp_scaled(x: __m512, s: f32) -> __m512 {
            let x = _mm512_max_ps(_mm512_min_ps(x, splat(89.0)), splat(-104.0));
            let k = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm512_mul_ps(x, splat(std::f32::consts::LOG2_E)),
            );
            let r = _mm512_fnmadd_ps(k, splat(0.693_359_4), x);
            let r = _mm512_fmadd_ps(k, splat(2.121_944_4e-4), r);
            let r2 = _mm512_mul_ps(r, r);
            let p01 = _mm512_fmadd_ps(r, splat(1.666_666_5e-1), splat(0.5));
            let p23 = _mm512_fmadd_ps(r, splat(8.333_452e-3), splat(4.166_579_6e-2));
            let p45 = _mm512_fmadd_ps(r, splat(1.987_569_2e-4), splat(1.398_2e-3));
            let p = _mm512_fmadd_ps(_mm512_fmadd_ps(p45, r2, p23), r2, p01);
            let e = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, splat(1.0)));
            _mm512_scalef_ps(e, _mm512_add_ps(k, splat(s)))
        }

        /// The 8-lane `gelu`: a · Φ(a), erfc from the same Chebyshev fit.
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn gelu(a: __m512) -> __m512 {
            let z = _mm512_mul_ps(a, splat(std::f32::consts::FRAC_1_SQRT_2));
            let az = _mm512_abs_ps(z);
            let d = _mm512_fmadd_ps(az, splat(0.5), splat(1.0));
            // 1/d: 14-bit estimate and a Newton step; at d = ∞ the step gives NaN, keep 0
            let r = _mm512_rcp14_ps(d);
            let t = _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, splat(1.0)), r);
            let t = _mm512_mask_mov_ps(
                t,
                _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(d, splat(f32::INFINITY)),
                r,
            );
            let t2 = _mm512_mul_ps(t, t);
            let t4 = _mm512_mul_ps(t2, t2);
            let t8 = _mm512_mul_ps(t4, t4);
            let q01 = _mm512_fmadd_ps(t, splat(0.374_091_96), splat(1.000_023_7));
            let q23 = _mm512_fmadd_ps(t, splat(-0.186_288_06), splat(0.096_784_18));
            let q45 = _mm512_fmadd_ps(t, splat(-1.135_204), splat(0.278_868_07));
            let q67 = _mm512_fmadd_ps(t, splat(-0.822_152_2), splat(1.488_515_9));
            let q03 = _mm512_fmadd_ps(q23, t2, q01);
            let q47 = _mm512_fmadd_ps(q67, t2, q45);
            let q = _mm512_fmadd_ps(splat(0.170_872_8), t8, _mm512_fmadd_ps(q47, t4, q03));
            let p = _mm512_fmadd_ps(t, q, _mm512_fnmadd_ps(az, az, splat(-1.265_512_2)));
            // p ≤ −0.26, and a NaN input reaches the result through `a`: the lanes where
            // p is NaN may hold anything (their a is NaN too)
            let p = _mm512_mask_mov_ps(p, _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(p, p), splat(0.0));
            // erfc(|z|)/2 = t · e^p / 2: the halving is one less in the exponent
            let half_e = _mm512_mul_ps(t, exp_scaled(p, -1.0));
            let pos = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(z, _mm512_setzero_ps());
            let phi = _mm512_mask_sub_ps(half_e, pos, splat(1.0), half_e);
            _mm512_mul_ps(a, phi)
        }

        /// The 8-lane `tanh`: Cephes' odd polynomial below |x| = 0.625, 1 − 2/(e^2|x| + 1)
        /// above, the sign put back.
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn tanh(x: __m512) -> __m512 {
            let ax = _mm512_abs_ps(x);
            let z = _mm512_mul_ps(x, x);
            let z2 = _mm512_mul_ps(z, z);
            let p01 = _mm512_fmadd_ps(z, splat(1.333_144_2e-1), splat(-3.333_328e-1));
            let p23 = _mm512_fmadd_ps(z, splat(2.063_909e-2), splat(-5.373_971_6e-2));
            let p = _mm512_fmadd_ps(_mm512_fmadd_ps(splat(-5.704_988_7e-3), z2, p23), z2, p01);
            let small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), x, x);
            // NaN lanes: exp sees 0 and `small` (NaN) is chosen below
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
            let s = exp_scaled(_mm512_maskz_add_ps(!nan, ax, ax), 0.0);
            let big = _mm512_sub_ps(
                splat(1.0),
                _mm512_div_ps(splat(2.0), _mm512_add_ps(s, splat(1.0))),
            );
            let big = _mm512_castsi512_ps(_mm512_or_si512(
                _mm512_castps_si512(big),
                _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN)),
            ));
            let is_small = _mm512_cmp_ps_mask::<_CMP_NLE_UQ>(splat(0.625), ax);
            _mm512_mask_mov_ps(big, is_small, small)
        }

        /// The 8-lane `log`: x = m · 2^e with m in [√½, √2) from `vgetmantps` and
        /// `vgetexpps` (subnormals included), Cephes' polynomial on m − 1.
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn log(x: __m512) -> __m512 {
            let m = _mm512_getmant_ps::<_MM_MANT_NORM_1_2, _MM_MANT_SIGN_ZERO>(x);
            let e = _mm512_getexp_ps(x);
            let hi = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(m, splat(std::f32::consts::SQRT_2));
            let m = _mm512_mask_mul_ps(m, hi, m, splat(0.5));
            let e = _mm512_mask_add_ps(e, hi, e, splat(1.0));
            let f = _mm512_sub_ps(m, splat(1.0));
            let z = _mm512_mul_ps(f, f);
            let z2 = _mm512_mul_ps(z, z);
            // degree-8 polynomial in f, Estrin's form
            let c01 = _mm512_fmadd_ps(f, splat(-2.499_999_4e-1), splat(3.333_333e-1));
            let c23 = _mm512_fmadd_ps(f, splat(-1.666_805_8e-1), splat(2.000_071_5e-1));
            let c45 = _mm512_fmadd_ps(f, splat(-1.242_014_1e-1), splat(1.424_932_3e-1));
            let c67 = _mm512_fmadd_ps(f, splat(-1.151_461e-1), splat(1.167_699_9e-1));
            let c03 = _mm512_fmadd_ps(c23, z, c01);
            let c47 = _mm512_fmadd_ps(c67, z, c45);
            let c8 = _mm512_mul_ps(splat(7.037_683_6e-2), z2);
            let y = _mm512_fmadd_ps(_mm512_add_ps(c47, c8), z2, c03);
            let y = _mm512_mul_ps(_mm512_mul_ps(y, f), z);
            let y = _mm512_fmadd_ps(e, splat(-2.121_944_4e-4), y);
            let y = _mm512_fnmadd_ps(z, splat(0.5), y);
            let r = _mm512_fmadd_ps(e, splat(0.693_359_4), _mm512_add_ps(f, y));
            // ends: x < 0 → NaN, x = ±0 → −∞, x = ∞ or NaN → x
            let r = _mm512_mask_mov_ps(
                r,
                _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, splat(0.0)),
                splat(f32::NAN),
            );
            let r = _mm512_mask_mov_ps(
                r,
                _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(x, splat(0.0)),
                splat(f32::NEG_INFINITY),
            );
            let pass = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x)
                | _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(x, splat(f32::INFINITY));
            _mm512_mask_mov_ps(r, pass, x)
        }

        /// exp with IEEE ends: NaN stays NaN (exp_scaled clamps it away), ±∞ and
        /// overflow from `vscalefps`.
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn exp(x: __m512) -> __m512 {
            let e = exp_scaled(x, 0.0);
            _mm512_mask_mov_ps(e, _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x), x)
        }

        /// The 8-lane `gelu_tanh`: a / (1 + e^(−2u)), u = √(2/π)·(a + 0.044715·a³); a
        /// NaN `a` comes back through the numerator.
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn gelu_tanh(a: __m512) -> __m512 {
            let a2 = _mm512_mul_ps(a, a);
            let inner = _mm512_mul_ps(a, _mm512_fmadd_ps(a2, splat(0.044_715), splat(1.0)));
            let m2u = _mm512_mul_ps(inner, splat(-2.0 * 0.797_884_6));
            _mm512_div_ps(a, _mm512_add_ps(splat(1.0), exp_scaled(m2u, 0.0)))
        }

        /// 1 / (1 + e^−v), NaN kept.
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn sigmoid(v: __m512) -> __m512 {
            let e = exp_scaled(_mm512_sub_ps(_mm512_setzero_ps(), v), 0.0);
            let r = _mm512_div_ps(splat(1.0), _mm512_add_ps(splat(1.0), e));
            _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v), v)
        }

        /// v / (1 + e^−v); a NaN `v` comes back through the numerator.
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn silu(v: __m512) -> __m512 {
            let e = exp_scaled(_mm512_sub_ps(_mm512_setzero_ps(), v), 0.0);
            _mm512_div_ps(v, _mm512_add_ps(splat(1.0), e))
        }

        /// 1 / √v with the 8-lane form's bits (f32 results keep their rounding).
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn rsqrt(v: __m512) -> __m512 {
            _mm512_div_ps(splat(1.0), _mm512_sqrt_ps(v))
        }

        /// 1 / √v for results narrowed to f16: `vrsqrt14ps` (relative error under 2^−14)
        /// and one Newton step, y·(1.5 − 0.5·v·y²), to about 2^−27, far inside f16's
        /// 2^−11 — three multiply-adds instead of a square root and a division, which
        /// held f16 rsqrt at 4 ms for 4096² on Zen 4. The step runs only on positive
        /// finite `v`: at 0 and ∞ it would turn the estimate's exact ±∞ and 0 into NaN,
        /// and every f16 input widens to an f32 normal, a zero or a special.
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn rsqrt_f16(v: __m512) -> __m512 {
            let y = _mm512_rsqrt14_ps(v);
            let half_vy = _mm512_mul_ps(_mm512_mul_ps(v, y), splat(0.5));
            let refined = _mm512_mul_ps(y, _mm512_fnmadd_ps(half_vy, y, splat(1.5)));
            let finite = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, _mm512_setzero_ps())
                & _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, splat(f32::INFINITY));
            _mm512_mask_mov_ps(y, finite, refined)
        }

        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn apply(
            src: *const f32,
            dst: *mut f32,
            n: usize,
            f: impl Fn(__m512) -> __m512,
        ) -> usize {
            let full = n / 16 * 16;
            let mut i = 0;
            while i < full {
                _mm512_storeu_ps(dst.add(i), f(_mm512_loadu_ps(src.add(i))));
                i += 16;
            }
            full
        }

        /// `out[i] = silu(g[i]) · u[i]` on f16 bit patterns for the first multiple of 16
        /// elements; returns how many it wrote. SiLU's exp and division dominate f16
        /// SwiGLU (it reads and writes half the bytes of f32 for the same arithmetic).
        #[target_feature(enable = "avx512f")]
        pub(in super::super) unsafe fn swiglu_f16(
            g: *const u16,
            u: *const u16,
            out: *mut u16,
            n: usize,
        ) -> usize {
            let full = n / 16 * 16;
            let mut i = 0;
            while i < full {
                let x = _mm512_cvtph_ps(_mm256_loadu_si256(g.add(i) as *const __m256i));
                let y = _mm512_cvtph_ps(_mm256_loadu_si256(u.add(i) as *const __m256i));
                // x / (1 + e^−x): a NaN x is clamped inside exp_scaled and comes back
                // through the numerator; −∞ gives ∞/∞ = NaN, as the 8-lane form does
                let e = exp_scaled(_mm512_sub_ps(_mm512_setzero_ps(), x), 0.0);
                let s = _mm512_div_ps(x, _mm512_add_ps(splat(1.0), e));
                let r = _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm512_mul_ps(s, y));
                store16(out.add(i), r);
                i += 16;
            }
            full
        }

        /// [`map`] on f16 bit patterns (F16C widening and narrowing in registers) for the
        /// first multiple of 16 elements; returns how many it wrote.
        #[target_feature(enable = "avx512f")]
        pub(in super::super) unsafe fn map_f16(
            op: LaneOp,
            src: *const u16,
            dst: *mut u16,
            n: usize,
        ) -> usize {
            #[target_feature(enable = "avx512f")]
            #[inline]
            unsafe fn apply16(
                src: *const u16,
                dst: *mut u16,
                n: usize,
                f: impl Fn(__m512) -> __m512,
            ) -> usize {
                let full = n / 16 * 16;
                let mut i = 0;
                while i < full {
                    let x = _mm512_cvtph_ps(_mm256_loadu_si256(src.add(i) as *const __m256i));
                    let r = _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(f(x));
                    store16(dst.add(i), r);
                    i += 16;
                }
                full
            }
            match op {
                LaneOp::Gelu => apply16(src, dst, n, |x| gelu(x)),
                LaneOp::Tanh => apply16(src, dst, n, |x| tanh(x)),
                LaneOp::Log => apply16(src, dst, n, |x| log(x)),
                LaneOp::Exp => apply16(src, dst, n, |x| exp(x)),
                LaneOp::GeluTanh => apply16(src, dst, n, |x| gelu_tanh(x)),
                LaneOp::Sigmoid => apply16(src, dst, n, |x| sigmoid(x)),
                LaneOp::Silu => apply16(src, dst, n, |x| silu(x)),
                LaneOp::Rsqrt => apply16(src, dst, n, |x| rsqrt_f16(x)),
            }
        }

        /// `dst[i] = op(src[i])` for the first multiple of 16 elements where `op` has a
        /// 16-lane form; returns how many it wrote. `src` and `dst`
        /// may be the same memory.
        #[target_feature(enable = "avx512f")]
        pub(in super::super) unsafe fn map(
            op: LaneOp,
            src: *const f32,
            dst: *mut f32,
            n: usize,
        ) -> usize {
            match op {
                LaneOp::Gelu => apply(src, dst, n, |x| gelu(x)),
                LaneOp::Tanh => apply(src, dst, n, |x| tanh(x)),
                LaneOp::Log => apply(src, dst, n, |x| log(x)),
                LaneOp::Exp => apply(src, dst, n, |x| exp(x)),
                LaneOp::GeluTanh => apply(src, dst, n, |x| gelu_tanh(x)),
                LaneOp::Sigmoid => apply(src, dst, n, |x| sigmoid(x)),
                LaneOp::Silu => apply(src, dst, n, |x| silu(x)),
                LaneOp::Rsqrt => apply(src, dst, n, |x| rsqrt(x)),
            }
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// Inputs that reach every branch of the formulas: the special values, the ends of
    /// exp's range, tanh's switch at 0.625, subnormals, and a dense sweep.
    fn inputs() -> Vec<f32> {
        let mut v = vec![
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            f32::MIN_POSITIVE,
            1e-40,
            -1e-40,
            f32::MAX,
            f32::MIN,
        ];
        for x in [
            0.625f32, 0.624_99, 44.0, 87.0, 88.8, 89.5, 104.0, 130.0, 1e30,
        ] {
            v.extend([x, -x]);
        }
        v.extend((0..4000).map(|i| -14.0 + i as f32 * 0.007));
        v.extend((0..400).map(|i| 10f32.powf(-30.0 + i as f32 * 0.1)));
        v.extend((0..400).map(|i| -(10f32.powf(-30.0 + i as f32 * 0.1))));
        // a length that is not a multiple of 16 leaves a tail for the 8-lane loop
        v.push(0.3);
        v
    }

    /// On every f16 input (NaN, ±∞, subnormals included) the 16-lane f16 forms give the
    /// 8-lane result or a neighbouring f16 (the f32 results differ by ulps, rounding may
    /// land on either side).
    #[test]
    fn wide_f16_forms_match_eight_lane_forms() {
        if !(available_f16() && std::arch::is_x86_feature_detected!("avx512f")) {
            return;
        }
        let x: Vec<u16> = (0..=u16::MAX).collect();
        for op in [
            LaneOp::Gelu,
            LaneOp::Tanh,
            LaneOp::Log,
            LaneOp::Exp,
            LaneOp::GeluTanh,
            LaneOp::Sigmoid,
            LaneOp::Silu,
            LaneOp::Rsqrt,
        ] {
            let (mut narrow, mut wide) = (vec![0u16; x.len()], vec![0u16; x.len()]);
            // SAFETY: AVX2, FMA, F16C and AVX-512 F were detected above; all hold x.len().
            let done = unsafe {
                x86::map_f16(op, x.as_ptr(), narrow.as_mut_ptr(), x.len());
                x86::wide::map_f16(op, x.as_ptr(), wide.as_mut_ptr(), x.len())
            };
            assert_eq!(done, x.len());
            for i in 0..done {
                let (a, b) = (
                    half::f16::from_bits(narrow[i]),
                    half::f16::from_bits(wide[i]),
                );
                let near = (a.is_nan() && b.is_nan())
                    || a == b
                    || (narrow[i] as i32 - wide[i] as i32).abs() <= 1;
                assert!(
                    near,
                    "{op:?}({}) = {a} (8 lanes) vs {b}",
                    half::f16::from_bits(x[i])
                );
            }
            // rsqrt's estimate-and-step is within 2^-27 of the correctly rounded
            // quotient, so it rounds to another f16 only next to a tie (the bare
            // 14-bit estimate differs on thousands of inputs)
            let nan = |h: u16| half::f16::from_bits(h).is_nan();
            let differ = (narrow.iter().zip(&wide))
                .filter(|&(&a, &b)| a != b && !(nan(a) && nan(b)))
                .count();
            if op == LaneOp::Rsqrt {
                assert!(differ <= 16, "rsqrt: {differ} f16 results differ");
            }
        }
    }

    /// The 16-lane forms agree with the 8-lane ones (which the op tests check against
    /// f64) to a few ulps, ends included. Runs where the CPU has AVX-512 F.
    #[test]
    fn wide_forms_match_eight_lane_forms() {
        if !(available() && std::arch::is_x86_feature_detected!("avx512f")) {
            return;
        }
        let x = inputs();
        for op in [
            LaneOp::Gelu,
            LaneOp::Tanh,
            LaneOp::Log,
            LaneOp::Exp,
            LaneOp::GeluTanh,
            LaneOp::Sigmoid,
            LaneOp::Silu,
            LaneOp::Rsqrt,
        ] {
            let (mut narrow, mut wide) = (vec![0f32; x.len()], vec![0f32; x.len()]);
            // SAFETY: AVX2, FMA and AVX-512 F were detected above; all slices hold x.len().
            let done = unsafe {
                x86::map(op, x.as_ptr(), narrow.as_mut_ptr(), x.len());
                x86::wide::map(op, x.as_ptr(), wide.as_mut_ptr(), x.len())
            };
            assert_eq!(done, x.len() / 16 * 16, "{op:?} leaves the tail");
            for i in 0..done {
                let (a, b) = (narrow[i], wide[i]);
                // GELU's far tail is e^(−x²/2): an ulp of the exponent is x²/2 ulps of
                // the result, whichever form rounds it
                let rel = 3e-6 * (1.0 + x[i] * x[i] / 16.0);
                let same = (a.is_nan() && b.is_nan())
                    || a == b
                    || (a - b).abs() <= rel * a.abs().max(b.abs())
                    || (a - b).abs() < 1e-37;
                assert!(
                    same,
                    "{op:?}({}) = {a:e} (8 lanes) vs {b:e} (16 lanes)",
                    x[i]
                );
            }
        }
    }
}
