//! CPU twin of `shaders/norm.wgsl`: rows in parallel, in tasks of many rows
//! ([`task_rows`]), each task's 16-bit weights (and biases) widened once into f32
//! (f32 ones are read in place); the call itself converts nothing. Each call picks its
//! [`Kernel`] once:
//!
//! - `Avx2` (AVX2 + FMA + F16C): a row is read straight from the tensor, 16-bit
//!   elements widened in registers. The first statistics pass brings the row from
//!   memory; the centred sum of squares (layer norm, two-pass for precision under a
//!   large mean) and the write re-read it from L1/L2, so memory sees one read and one
//!   write per element. A residual is added into an f32 row buffer that stays in cache.
//!   Outputs of [`STREAM_MIN_BYTES`] or more are written with non-temporal stores: a
//!   plain store first reads the destination line into cache, a third memory transfer
//!   per element that the copy probe (glibc's memcpy streams) does not pay.
//! - `Portable`: each row widened (and summed with the residual) into an f32 buffer,
//!   reduced with eight lanes so the loops vectorise for the baseline ISA, and written
//!   once.

use super::math::{lanes_sum, narrow, rows_per_task, widen};
use super::{take, CpuStorage, Pooled};
use crate::dtype::Element;
use crate::tensor::CpuSlice;
use half::{bf16, f16};
use rayon::prelude::*;

type Pair = (CpuStorage, Option<CpuStorage>);
/// One task's rows: (y, h, x, residual).
type Task<'a, T> = (&'a mut [T], Option<&'a mut [T]>, &'a [T], Option<&'a [T]>);

/// Outputs at least this large are streamed past the cache (`Kernel::Avx2 { stream }`):
/// beyond about half an L3 the next op finds little of them in cache anyway, and the
/// write no longer pays a read of each destination line.
const STREAM_MIN_BYTES: usize = 16 << 20;

/// How a call's rows are computed, chosen once per call by [`Kernel::select`].
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kernel {
    /// Portable loops over an f32 row buffer (CPUs without AVX2 + FMA + F16C, non-x86).
    Portable,
    /// 8-lane AVX2 + FMA + F16C rows ([`x86`]); `stream`: non-temporal output stores.
    #[cfg(target_arch = "x86_64")]
    Avx2 {
        /// Write the outputs with non-temporal stores.
        stream: bool,
    },
}

impl Kernel {
    /// The fastest kernel this CPU runs, for a call writing `out_bytes` in all.
    fn select(out_bytes: usize) -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if super::lanes::available_f16() {
            return Kernel::Avx2 {
                stream: out_bytes >= STREAM_MIN_BYTES,
            };
        }
        let _ = out_bytes;
        Kernel::Portable
    }

    /// Every kernel this CPU runs, streaming or not (for tests that compare them).
    #[cfg(test)]
    fn all_available() -> Vec<Kernel> {
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))] // only x86_64 adds
        let mut all = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        if super::lanes::available_f16() {
            all.push(Kernel::Avx2 { stream: false });
            all.push(Kernel::Avx2 { stream: true });
        }
        all
    }
}

/// Rows per rayon task: at least [`rows_per_task`]'s ~64 KiB, and a large tensor in
/// about 16 tasks per thread, so the per-task setup (weights widened, row buffer) is
/// paid rarely while work stealing still evens out a core another process slows.
fn task_rows(rows: usize, n: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    rows_per_task(n).max(rows.div_ceil(threads * 16))
}

/// Layer norm (with a bias `b`) or RMS norm (without) over rows of `n`, of `x` or of
/// `x + res`; returns `(y, h)`, `h = x + res` when `write_sum` asks for it.
pub(crate) fn norm(
    x: CpuSlice<'_>,
    res: Option<CpuSlice<'_>>,
    w: CpuSlice<'_>,
    b: Option<CpuSlice<'_>>,
    eps: f32,
    n: usize,
    write_sum: bool,
) -> Pair {
    macro_rules! go {
        ($v:expr, $variant:ident, $t:ty) => {{
            let r = res.map(|r| r.as_slice::<$t>());
            let (y, h) = run::<$t>($v, r, w, b, eps, n, write_sum);
            (CpuStorage::$variant(y), h.map(CpuStorage::$variant))
        }};
    }
    match x {
        CpuSlice::F32(v) => go!(v, F32, f32),
        CpuSlice::F16(v) => go!(v, F16, f16),
        CpuSlice::BF16(v) => go!(v, BF16, bf16),
        CpuSlice::U32(_) => unreachable!("norms refuse u32 before dispatch"),
    }
}

/// [`norm`] for one element type: the outputs, the kernel and the tasks.
fn run<T: Element + Pooled>(
    x: &[T],
    res: Option<&[T]>,
    w: CpuSlice<'_>,
    b: Option<CpuSlice<'_>>,
    eps: f32,
    n: usize,
    write_sum: bool,
) -> (Vec<T>, Option<Vec<T>>) {
    let mut y = take::<T>(x.len());
    let mut h = res.filter(|_| write_sum).map(|_| take::<T>(x.len()));
    let outputs = 1 + usize::from(h.is_some());
    let kernel = Kernel::select(outputs * std::mem::size_of_val(x));
    let per = task_rows(x.len() / n, n) * n;
    let body = |t: Task<'_, T>| norm_task(kernel, t, w, b, eps, n);
    match (h.as_mut(), res) {
        (Some(h), Some(r)) => y
            .par_chunks_mut(per)
            .zip(h.par_chunks_mut(per))
            .zip(x.par_chunks(per).zip(r.par_chunks(per)))
            .for_each(|((ys, hs), (xs, rs))| body((ys, Some(hs), xs, Some(rs)))),
        (None, Some(r)) => y
            .par_chunks_mut(per)
            .zip(x.par_chunks(per).zip(r.par_chunks(per)))
            .for_each(|(ys, (xs, rs))| body((ys, None, xs, Some(rs)))),
        _ => y
            .par_chunks_mut(per)
            .zip(x.par_chunks(per))
            .for_each(|(ys, xs)| body((ys, None, xs, None))),
    }
    (y, h)
}

/// One task's rows (whole rows of `n`) with `kernel`.
fn norm_task<T: Element>(
    kernel: Kernel,
    t: Task<'_, T>,
    w: CpuSlice<'_>,
    b: Option<CpuSlice<'_>>,
    eps: f32,
    n: usize,
) {
    // a weight or bias in f32 for the task: borrowed, or widened once (F16C)
    let w = w.to_f32();
    let b = b.map(CpuSlice::to_f32);
    let b = b.as_deref();
    match kernel {
        Kernel::Portable => portable::norm_rows(t, &w, b, eps, n),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `select` picks Avx2 only where AVX2, FMA and F16C were detected; the
        // weights hold n elements (the op checked their shape).
        Kernel::Avx2 { stream } => unsafe {
            if stream {
                x86::norm_rows::<T, true>(t, &w, b, eps, n)
            } else {
                x86::norm_rows::<T, false>(t, &w, b, eps, n)
            }
        },
    }
}

/// `1 / sqrt(sum_sq / n + eps)`, or NaN when the row's sum of squares is not finite (the
/// row held NaN or ±∞): the whole row then comes out NaN, as on the GPU.
fn inv_scale(sum_sq: f32, inv_n: f32, eps: f32) -> f32 {
    if sum_sq.is_finite() {
        1.0 / (sum_sq * inv_n + eps).sqrt()
    } else {
        f32::NAN
    }
}

/// `1 / max(‖x‖₂, eps)` from the row's sum of squares; NaN when that is not finite, so
/// the whole row comes out NaN, as in the norms.
fn l2_scale(sum_sq: f32, eps: f32) -> f32 {
    if sum_sq.is_finite() {
        1.0 / sum_sq.sqrt().max(eps)
    } else {
        f32::NAN
    }
}

/// `y = x / max(‖x‖₂, eps)` per row of `n`, the norm in f32.
pub(crate) fn l2_normalize(x: CpuSlice<'_>, eps: f32, n: usize) -> CpuStorage {
    fn go<T: Element + Pooled>(x: &[T], eps: f32, n: usize) -> Vec<T> {
        let mut y = take::<T>(x.len());
        let kernel = Kernel::select(std::mem::size_of_val(x));
        let per = task_rows(x.len() / n, n) * n;
        y.par_chunks_mut(per)
            .zip(x.par_chunks(per))
            .for_each(|(ys, xs)| l2_task(kernel, ys, xs, eps, n));
        y
    }
    match x {
        CpuSlice::F32(v) => CpuStorage::F32(go(v, eps, n)),
        CpuSlice::F16(v) => CpuStorage::F16(go(v, eps, n)),
        CpuSlice::BF16(v) => CpuStorage::BF16(go(v, eps, n)),
        CpuSlice::U32(_) => unreachable!("l2_normalize refuses u32 before dispatch"),
    }
}

/// One task's rows of [`l2_normalize`] with `kernel`.
fn l2_task<T: Element>(kernel: Kernel, ys: &mut [T], xs: &[T], eps: f32, n: usize) {
    match kernel {
        Kernel::Portable => portable::l2_rows(ys, xs, eps, n),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `select` picks Avx2 only where AVX2, FMA and F16C were detected.
        Kernel::Avx2 { stream } => unsafe {
            if stream {
                x86::l2_rows::<T, true>(ys, xs, eps, n)
            } else {
                x86::l2_rows::<T, false>(ys, xs, eps, n)
            }
        },
    }
}

/// The rows through an f32 buffer, for CPUs without the lanes of [`x86`].
mod portable {
    use super::{inv_scale, l2_scale, lanes_sum, narrow, widen, Task};
    use crate::dtype::Element;

    /// One task's norm rows (see the module docs).
    pub(super) fn norm_rows<T: Element>(
        (ys, hs, xs, rs): Task<'_, T>,
        w: &[f32],
        b: Option<&[f32]>,
        eps: f32,
        n: usize,
    ) {
        let inv_n = 1.0 / n as f32;
        let mut buf = vec![0f32; n];
        let mut tmp = vec![0f32; if rs.is_some() { n } else { 0 }];
        let mut hs = hs;
        for r in 0..xs.len() / n {
            let span = r * n..(r + 1) * n;
            match rs {
                Some(rs) => {
                    widen(&xs[span.clone()], &mut buf);
                    widen(&rs[span.clone()], &mut tmp);
                    for (o, &c) in buf.iter_mut().zip(&tmp) {
                        *o += c;
                    }
                    if let Some(hs) = hs.as_deref_mut() {
                        narrow(&buf, &mut hs[span.clone()]);
                    }
                }
                None => widen(&xs[span.clone()], &mut buf),
            }
            let yr = &mut ys[span];
            match b {
                Some(b) => {
                    let mean = lanes_sum(&buf, |v| v) * inv_n;
                    let var_sum = lanes_sum(&buf, |v| (v - mean) * (v - mean));
                    let rstd = inv_scale(var_sum, inv_n, eps);
                    for ((v, &wj), &bj) in buf.iter_mut().zip(w).zip(b) {
                        *v = (*v - mean) * rstd * wj + bj;
                    }
                }
                None => {
                    let rstd = inv_scale(lanes_sum(&buf, |v| v * v), inv_n, eps);
                    for (v, &wj) in buf.iter_mut().zip(w) {
                        *v = *v * rstd * wj;
                    }
                }
            }
            narrow(&buf, yr);
        }
    }

    /// One task's rows of `l2_normalize`.
    pub(super) fn l2_rows<T: Element>(ys: &mut [T], xs: &[T], eps: f32, n: usize) {
        let mut buf = vec![0f32; n];
        for (yr, xr) in ys.chunks_mut(n).zip(xs.chunks(n)) {
            widen(xr, &mut buf);
            let inv = l2_scale(lanes_sum(&buf, |v| v * v), eps);
            for v in buf.iter_mut() {
                *v *= inv;
            }
            narrow(&buf, yr);
        }
    }
}

/// The rows in 8-lane AVX2 + FMA + F16C registers (see the module docs). Everything
/// here is `#[inline]` into the two `*_rows` entry points, which are compiled for those
/// features; element types differ only in [`load`] and [`store`].
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{inv_scale, l2_scale, Task};
    use crate::dtype::{DType, Element};
    use std::arch::x86_64::*;

    /// Elements summed in f32 lanes before the running total moves to f64, as in
    /// `math::lanes_sum` (one f32 sum over a long row drifts).
    const BLOCK: usize = 4096;

    use crate::cpu::lanes::load8 as load;

    /// Eight lanes rounded to `T` (nearest even) and stored at `p`; with `NT` a
    /// non-temporal store, which needs `p` aligned to the store's width (32 bytes for
    /// f32, 16 for 16-bit types).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn store<T: Element, const NT: bool>(p: *mut T, v: __m256) {
        let h = match T::DTYPE {
            DType::F32 if NT => return _mm256_stream_ps(p.cast(), v),
            DType::F32 => return _mm256_storeu_ps(p.cast(), v),
            DType::F16 => _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v),
            DType::BF16 => to_bf16(v),
            DType::U32 => unreachable!("norms refuse u32 before dispatch"),
        };
        if NT {
            _mm_stream_si128(p.cast(), h)
        } else {
            // conversion and store kept apart (see `store_halves`: Zen 4's folded form)
            crate::cpu::lanes::store_halves(p.cast(), h)
        }
    }

    /// f32 → bf16 bits, eight lanes in the low 128 bits, as half's `bf16::from_f32`:
    /// nearest even (add 0x7fff plus the kept part's lowest bit, then truncate) and a
    /// NaN kept a quiet NaN (that add could carry a NaN's payload into the sign).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn to_bf16(v: __m256) -> __m128i {
        let x = _mm256_castps_si256(v);
        let lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(x), _mm256_set1_epi32(1));
        let rounded = _mm256_add_epi32(x, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
        let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
        let quiet = _mm256_or_si256(x, _mm256_set1_epi32(0x0040_0000));
        let top = _mm256_srli_epi32::<16>(_mm256_blendv_epi8(rounded, quiet, nan));
        // every lane now holds at most 0xffff, so the unsigned saturating pack is exact
        _mm_packus_epi32(
            _mm256_castsi256_si128(top),
            _mm256_extracti128_si256::<1>(top),
        )
    }

    /// The first `k < 8` elements at `p` in the low lanes, the rest 0.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn load_part<T: Element>(p: *const T, k: usize) -> __m256 {
        let mut pad = [<T as bytemuck::Zeroable>::zeroed(); 8];
        std::ptr::copy_nonoverlapping(p, pad.as_mut_ptr(), k);
        load(pad.as_ptr())
    }

    /// The low `k < 8` lanes of `v` stored at `p`; nothing past them is written.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn store_part<T: Element>(p: *mut T, k: usize, v: __m256) {
        let mut pad = [<T as bytemuck::Zeroable>::zeroed(); 8];
        store::<T, false>(pad.as_mut_ptr(), v);
        std::ptr::copy_nonoverlapping(pad.as_ptr(), p, k);
    }

    /// Eight f32 weights at `p + j`, or the `k < 8` that remain there.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn weights(p: *const f32, j: usize, k: usize) -> __m256 {
        if k == 8 {
            _mm256_loadu_ps(p.add(j))
        } else {
            load_part(p.add(j), k)
        }
    }

    /// All ones in the first `k` lanes.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn first(k: usize) -> __m256 {
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(k as i32), lane))
    }

    /// The sum of the eight lanes.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }

    /// Σ over the `n` elements at `p` of a per-element term: `acc(a, v)` adds the terms
    /// of the lanes `v` to the partial sums `a`. Four registers in flight; each block of
    /// [`BLOCK`] elements totalled in f64. The last `n % 8` go through a zero-padded
    /// register whose padding's terms are masked off (they need not be 0: (0 − mean)²).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn reduce<T: Element>(
        p: *const T,
        n: usize,
        acc: impl Fn(__m256, __m256) -> __m256,
    ) -> f32 {
        let zero = _mm256_setzero_ps();
        let mut total = 0f64;
        let mut j = 0;
        while j < n {
            let end = (j + BLOCK).min(n);
            let (mut a0, mut a1, mut a2, mut a3) = (zero, zero, zero, zero);
            while j + 32 <= end {
                a0 = acc(a0, load(p.add(j)));
                a1 = acc(a1, load(p.add(j + 8)));
                a2 = acc(a2, load(p.add(j + 16)));
                a3 = acc(a3, load(p.add(j + 24)));
                j += 32;
            }
            while j + 8 <= end {
                a0 = acc(a0, load(p.add(j)));
                j += 8;
            }
            if j < end {
                let k = end - j;
                let t = acc(zero, load_part(p.add(j), k));
                a1 = _mm256_add_ps(a1, _mm256_and_ps(t, first(k)));
                j = end;
            }
            total += hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3))) as f64;
        }
        total as f32
    }

    /// `dst[j..j + 8] = f(src[j..j + 8] widened, j, 8)` over a row of `n`; the last
    /// `k < 8` as `f(.., j, k)` through a padded register (`f` loads its weights with
    /// [`weights`]). With `NT` the stores are non-temporal; they need an aligned `dst`,
    /// so the elements before the first aligned one go first, as a short part.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn write<S: Element, T: Element, const NT: bool>(
        src: *const S,
        dst: *mut T,
        n: usize,
        f: impl Fn(__m256, usize, usize) -> __m256,
    ) {
        let mut j = 0;
        if NT {
            // 8 elements: 32 bytes of f32 or 16 of a 16-bit type, the stream store's width
            let width = 8 * size_of::<T>();
            let head = ((width - dst as usize % width) % width / size_of::<T>()).min(n);
            if head > 0 {
                store_part(dst, head, f(load_part(src, head), 0, head));
                j = head;
            }
        }
        while j + 8 <= n {
            store::<T, NT>(dst.add(j), f(load(src.add(j)), j, 8));
            j += 8;
        }
        if j < n {
            let k = n - j;
            store_part(dst.add(j), k, f(load_part(src.add(j), k), j, k));
        }
    }

    /// Normalises the row of `n` at `src` into `dst`: layer norm with a bias `b`, RMS
    /// norm without; `w` and `b` hold `n` f32s.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn normalise<S: Element, T: Element, const NT: bool>(
        src: *const S,
        dst: *mut T,
        n: usize,
        w: *const f32,
        b: Option<*const f32>,
        eps: f32,
    ) {
        let inv_n = 1.0 / n as f32;
        match b {
            Some(b) => {
                let mean = reduce(src, n, |a, v| _mm256_add_ps(a, v)) * inv_n;
                let m = _mm256_set1_ps(mean);
                let var_sum = reduce(src, n, |a, v| {
                    let d = _mm256_sub_ps(v, m);
                    _mm256_fmadd_ps(d, d, a)
                });
                let rstd = _mm256_set1_ps(inv_scale(var_sum, inv_n, eps));
                write::<S, T, NT>(src, dst, n, |v, j, k| {
                    let z = _mm256_mul_ps(_mm256_sub_ps(v, m), rstd);
                    _mm256_fmadd_ps(z, weights(w, j, k), weights(b, j, k))
                });
            }
            None => {
                let sum_sq = reduce(src, n, |a, v| _mm256_fmadd_ps(v, v, a));
                let rstd = _mm256_set1_ps(inv_scale(sum_sq, inv_n, eps));
                write::<S, T, NT>(src, dst, n, |v, j, k| {
                    _mm256_mul_ps(_mm256_mul_ps(v, rstd), weights(w, j, k))
                });
            }
        }
    }

    /// One task's norm rows. A residual is added into an f32 row buffer (so the
    /// statistics see the unrounded sum, as the GPU does), which `h` is narrowed from.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `w` (and `b`) hold `n` elements; the slices of
    /// the task hold whole rows of `n`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn norm_rows<T: Element, const NT: bool>(
        (ys, mut hs, xs, rs): Task<'_, T>,
        w: &[f32],
        b: Option<&[f32]>,
        eps: f32,
        n: usize,
    ) {
        let (w, b) = (w.as_ptr(), b.map(<[f32]>::as_ptr));
        let mut buf = vec![0f32; if rs.is_some() { n } else { 0 }];
        let bp = buf.as_mut_ptr();
        for at in (0..xs.len() / n).map(|r| r * n) {
            let (x, y) = (xs.as_ptr().add(at), ys.as_mut_ptr().add(at));
            let Some(rs) = rs else {
                normalise::<T, T, NT>(x, y, n, w, b, eps);
                continue;
            };
            let r = rs.as_ptr().add(at);
            let mut j = 0;
            while j + 8 <= n {
                let s = _mm256_add_ps(load(x.add(j)), load(r.add(j)));
                _mm256_storeu_ps(bp.add(j), s);
                j += 8;
            }
            if j < n {
                let k = n - j;
                let s = _mm256_add_ps(load_part(x.add(j), k), load_part(r.add(j), k));
                store_part(bp.add(j), k, s);
            }
            if let Some(hs) = hs.as_deref_mut() {
                write::<f32, T, NT>(bp, hs.as_mut_ptr().add(at), n, |v, _, _| v);
            }
            normalise::<f32, T, NT>(bp, y, n, w, b, eps);
        }
        if NT {
            // order the streamed lines before the task's end is observed
            _mm_sfence();
        }
    }

    /// One task's rows of `l2_normalize`.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; the slices hold whole rows of `n`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn l2_rows<T: Element, const NT: bool>(
        ys: &mut [T],
        xs: &[T],
        eps: f32,
        n: usize,
    ) {
        for at in (0..xs.len() / n).map(|r| r * n) {
            let (x, y) = (xs.as_ptr().add(at), ys.as_mut_ptr().add(at));
            let sum_sq = reduce(x, n, |a, v| _mm256_fmadd_ps(v, v, a));
            let s = _mm256_set1_ps(l2_scale(sum_sq, eps));
            write::<T, T, NT>(x, y, n, |v, _, _| _mm256_mul_ps(v, s));
        }
        if NT {
            _mm_sfence();
        }
    }

    #[cfg(test)]
    mod tests {
        use std::arch::x86_64::*;

        /// The bf16 narrowing in lanes rounds as half's `bf16::from_f32`: ties to even,
        /// the largest finite values up to ∞, and every NaN stays a NaN (adding the
        /// rounding bias to an all-ones payload would carry into the sign).
        #[test]
        fn bf16_lanes_round_as_half() {
            if !crate::cpu::lanes::available_f16() {
                eprintln!("skipped: this CPU lacks AVX2 + FMA + F16C");
                return;
            }
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn narrow8(v: &[f32; 8]) -> [u16; 8] {
                let mut out = [0u16; 8];
                let h = super::to_bf16(_mm256_loadu_ps(v.as_ptr()));
                _mm_storeu_si128(out.as_mut_ptr().cast(), h);
                out
            }
            let mut bits = vec![
                0x3f80_0000u32,
                0x3f80_8000, // a tie, kept part even: stays
                0x3f81_8000, // a tie, kept part odd: rounds up
                0x3f80_8001,
                0x3f80_7fff,
                0x7f7f_ffff, // f32::MAX: rounds to ∞
                0x0000_0001,
                0x8000_0000,
                0x7f80_0000,
                0xff80_0000,
                0x7fff_ffff, // NaN, every payload bit set
                0xffff_ffff,
                0x7f80_0001,
                0xffc0_0001,
            ];
            let mut s = 0x9e37_79b9u32;
            bits.extend((0..4000).map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                s
            }));
            for chunk in bits.chunks(8) {
                let mut v = [0f32; 8];
                for (d, &b) in v.iter_mut().zip(chunk) {
                    *d = f32::from_bits(b);
                }
                // SAFETY: AVX2, FMA and F16C were detected above.
                let got = unsafe { narrow8(&v) };
                for (&x, &g) in v.iter().zip(&got) {
                    let want = half::bf16::from_f32(x);
                    if want.is_nan() {
                        assert!(
                            half::bf16::from_bits(g).is_nan(),
                            "{:#x} -> {g:#x}",
                            x.to_bits()
                        );
                    } else {
                        assert_eq!(g, want.to_bits(), "{:#x}", x.to_bits());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Each kernel this CPU runs, called on one task directly, so that every path of the
    //! lane code is reached whatever the tensor size: rows shorter than a register, row
    //! tails, rows over two reduction blocks, outputs that start off the stream stores'
    //! alignment, and special values in the lanes, the tail and the padded head.

    use super::{l2_task, norm_task, Kernel};
    use crate::dtype::{DType, Element};
    use crate::tensor::CpuSlice;
    use half::{bf16, f16};

    /// Row lengths: below, at and around one register (8) and four (32), and two
    /// reduction blocks (4096) with a tail.
    const LENGTHS: &[usize] = &[1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 100, 4096 + 43];
    /// Output offsets (in elements) from an aligned start: the stream stores' head part.
    const OFFSETS: &[usize] = &[0, 1, 3, 7];
    const ROWS: usize = 3;
    /// What the test fills around the output; a kernel must not write it.
    const SENTINEL: f32 = 3.0;

    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6_364_136_223_846_793_005) | 1;
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    fn to<T: Element>(v: &[f32]) -> Vec<T> {
        v.iter().map(|&x| T::from_f32(x)).collect()
    }

    fn wide<T: Element>(v: &[T]) -> Vec<f64> {
        v.iter().map(|x| x.to_f32() as f64).collect()
    }

    /// How many f32 roundings of the inputs an output can amount to: max |x| / std for
    /// layer norm (the centring's cancellation), 1 for the others, times max |w|.
    fn conditioning(row: &[f64], w: &[f64], centred: bool) -> f64 {
        let n = row.len() as f64;
        let mean = row.iter().sum::<f64>() / n;
        let sd = (row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n + 1e-5).sqrt();
        let big = row.iter().fold(0f64, |a, v| a.max(v.abs()));
        let c = if centred { (big / sd).max(1.0) } else { 1.0 };
        c * w.iter().fold(1f64, |a, v| a.max(v.abs()))
    }

    /// Layer norm (with `b`), RMS norm (without) or, with `l2`, `x / max(‖x‖, eps)`.
    fn reference(row: &[f64], w: &[f64], b: Option<&[f64]>, eps: f64, l2: bool) -> Vec<f64> {
        let n = row.len() as f64;
        if l2 {
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt().max(eps);
            return row.iter().map(|v| v / norm).collect();
        }
        let mean = b.map_or(0.0, |_| row.iter().sum::<f64>() / n);
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let rstd = 1.0 / (var + eps).sqrt();
        (0..row.len())
            .map(|j| (row[j] - mean) * rstd * w[j] + b.map_or(0.0, |b| b[j]))
            .collect()
    }

    /// A 16-bit output's relative rounding; f32's is below the absolute tolerance.
    fn rounding(dtype: DType) -> f64 {
        match dtype {
            DType::F32 => 0.0,
            d => d.epsilon() * 1.01,
        }
    }

    /// Which op a case runs.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Op {
        Rms,
        Layer,
        AddRms,
        AddLayer,
        L2,
    }
    const OPS: [Op; 5] = [Op::Rms, Op::Layer, Op::AddRms, Op::AddLayer, Op::L2];

    /// Runs `op` with `kernel` on ROWS rows of `n` into outputs that start `off` elements
    /// into sentinel-filled buffers; returns (y, h) without the sentinels, having
    /// checked those.
    #[allow(clippy::too_many_arguments)]
    fn run<T: Element>(
        kernel: Kernel,
        op: Op,
        x: &[T],
        r: &[T],
        w: &[f32],
        b: &[f32],
        n: usize,
        off: usize,
    ) -> (Vec<T>, Vec<T>) {
        let len = ROWS * n;
        let fill = vec![T::from_f32(SENTINEL); off + len + 9];
        let (mut y, mut h) = (fill.clone(), fill.clone());
        let (ys, hs) = (&mut y[off..off + len], &mut h[off..off + len]);
        let (w, b) = (CpuSlice::F32(w), CpuSlice::F32(b));
        match op {
            Op::Rms => norm_task(kernel, (ys, None, x, None), w, None, 1e-5, n),
            Op::Layer => norm_task(kernel, (ys, None, x, None), w, Some(b), 1e-5, n),
            Op::AddRms => norm_task(kernel, (ys, Some(hs), x, Some(r)), w, None, 1e-5, n),
            Op::AddLayer => norm_task(kernel, (ys, Some(hs), x, Some(r)), w, Some(b), 1e-5, n),
            Op::L2 => l2_task(kernel, ys, x, 1e-12, n),
        }
        for out in [&y, &h] {
            let outside = out[..off].iter().chain(&out[off + len..]);
            assert!(
                outside.map(|v| v.to_f32()).all(|v| v == SENTINEL),
                "{kernel:?} {op:?} n {n} offset {off}: wrote outside its rows"
            );
        }
        (y[off..off + len].to_vec(), h[off..off + len].to_vec())
    }

    fn against_f64<T: Element>() {
        let dtype = T::DTYPE;
        let kernels = Kernel::all_available();
        for &n in LENGTHS {
            let x: Vec<T> = to(&values(ROWS * n, n as u64));
            let r: Vec<T> = to(&values(ROWS * n, n as u64 + 1));
            let w: Vec<f32> = values(n, 2).iter().map(|v| v + 2.5).collect();
            let b = values(n, 3);
            let (w64, b64): (Vec<f64>, Vec<f64>) =
                (w.iter().map(|&v| v as f64).collect(), wide(&to::<f32>(&b)));
            for op in OPS {
                let residual = matches!(op, Op::AddRms | Op::AddLayer);
                let bias = matches!(op, Op::Layer | Op::AddLayer);
                // the residual sum in f32, as the kernels form it
                let h: Vec<f32> = x
                    .iter()
                    .zip(&r)
                    .map(|(a, c)| a.to_f32() + if residual { c.to_f32() } else { 0.0 })
                    .collect();
                let src: Vec<f64> = h.iter().map(|&v| v as f64).collect();
                let want: Vec<f64> = src
                    .chunks(n)
                    .flat_map(|row| {
                        reference(row, &w64, bias.then_some(&b64[..]), 1e-5, op == Op::L2)
                    })
                    .collect();
                let cond: Vec<f64> = src
                    .chunks(n)
                    .map(|row| conditioning(row, &w64, bias))
                    .collect();
                let mut lanes_result: Option<Vec<u32>> = None;
                for &kernel in &kernels {
                    for &off in OFFSETS {
                        let (y, hs) = run(kernel, op, &x, &r, &w, &b, n, off);
                        let what = format!("{kernel:?} {op:?} {dtype} n {n} offset {off}");
                        if residual {
                            let exact: Vec<T> = to(&h);
                            assert!(
                                hs.iter().zip(&exact).all(|(a, e)| a.to_f32() == e.to_f32()),
                                "{what}: h is not x + r rounded once"
                            );
                        }
                        for (j, (g, e)) in y.iter().zip(&want).enumerate() {
                            let g = g.to_f32() as f64;
                            let tol = 1e-6 * (1.0 + cond[j / n]) + rounding(dtype) * e.abs();
                            assert!(
                                (g - e).abs() <= tol,
                                "{what}: element {j} is {g}, want {e} (tolerance {tol:e})"
                            );
                        }
                        // the lane kernels (streaming or not, at any offset) differ in
                        // how, not what, they write
                        if kernel != Kernel::Portable {
                            let bits: Vec<u32> = y.iter().map(|v| v.to_f32().to_bits()).collect();
                            match &lanes_result {
                                None => lanes_result = Some(bits),
                                Some(first) => assert!(
                                    *first == bits,
                                    "{what}: differs from the first lane kernel's result"
                                ),
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_kernel_against_f64_f32() {
        against_f64::<f32>();
    }

    #[test]
    fn every_kernel_against_f64_f16() {
        against_f64::<f16>();
    }

    #[test]
    fn every_kernel_against_f64_bf16() {
        against_f64::<bf16>();
    }

    /// One special value anywhere in a row (first element, a full register, the tail)
    /// makes that whole row NaN and leaves the rows around it finite, in every kernel.
    fn special_values<T: Element>() {
        let mut specials = vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
        if T::DTYPE != DType::F16 {
            specials.push(3e19); // its square overflows f32 (in f16 it is ∞ already)
        }
        for &n in &[1usize, 5, 8, 13, 40, 4096 + 43] {
            let w = vec![1.0f32; n];
            let b = vec![0.5f32; n];
            let zero = vec![T::from_f32(0.0); ROWS * n];
            for &s in &specials {
                for at in [0, n / 2, n - 1] {
                    // one finite 3e19 alone in its row is its own mean: layer norm is finite
                    let layer_ok = n == 1 && s.is_finite();
                    let mut v = values(ROWS * n, 9);
                    v[n + at] = s; // the middle row
                    let x: Vec<T> = to(&v);
                    for kernel in Kernel::all_available() {
                        for op in OPS {
                            if layer_ok && matches!(op, Op::Layer | Op::AddLayer) {
                                continue;
                            }
                            for off in [0, 1] {
                                let (y, _) = run(kernel, op, &x, &zero, &w, &b, n, off);
                                let y: Vec<f32> = y.iter().map(|v| v.to_f32()).collect();
                                let what =
                                    format!("{kernel:?} {op:?} {} n {n}: {s} at {at}", T::DTYPE);
                                assert!(
                                    y[n..2 * n].iter().all(|v| v.is_nan()),
                                    "{what}: row not NaN"
                                );
                                assert!(
                                    y[..n].iter().chain(&y[2 * n..]).all(|v| v.is_finite()),
                                    "{what}: another row is not finite"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn special_values_make_their_row_nan_in_every_kernel() {
        special_values::<f32>();
        special_values::<f16>();
        special_values::<bf16>();
    }
}
