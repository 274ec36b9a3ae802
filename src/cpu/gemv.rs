//! Decode-shaped products (a few rows of A) against weights read along K, such as
//! `linear` weights `[out, in]`: AVX2/FMA dot products of one row of A with four weight
//! rows at a time, 16-bit weights widened in registers (F16C for f16, a shift for
//! bf16), so each weight byte is read once, as stored, and nothing is packed or cached
//! (a decode step is bound by reading the weights; a packed f32 copy of an f16 weight
//! would double that). Parallel over blocks of output columns.

use crate::tensor::CpuSlice;
use rayon::prelude::*;

/// Whether this CPU runs these kernels (AVX2, FMA and F16C).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Weight rows per task: 64 rows of K elements (a 4096-long f16 row block is 512 KiB,
/// an L2's worth that every row of A reuses).
const ROWS_PER_TASK: usize = 64;

/// `c[i, j] = Σ a[i·lda + p] · w[j·ldw + p]` for i < m, j < n, p < k: `c` is m × n
/// row-major, `w` holds n rows of k (`ldw` apart). Needs [`available`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemv(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    w: CpuSlice<'_>,
    ldw: usize,
    c: &mut [f32],
) {
    assert!(available(), "the GEMV kernels need AVX2, FMA and F16C");
    assert!(c.len() >= m * n);
    assert!(m == 0 || k == 0 || a.len() >= (m - 1) * lda + k);
    let w_len = match w {
        CpuSlice::F32(v) => v.len(),
        CpuSlice::F16(v) => v.len(),
        CpuSlice::BF16(v) => v.len(),
        CpuSlice::U32(_) => unreachable!("matmul refuses non-float dtypes before dispatch"),
    };
    assert!(n == 0 || k == 0 || w_len >= (n - 1) * ldw + k);
    if m == 0 || n == 0 {
        return;
    }
    // column j of row i lands at t[j·m + i] (tasks own whole columns), then transposed
    let mut t = vec![0f32; n * m];
    let task = |(blk, out): (usize, &mut [f32])| {
        let j0 = blk * ROWS_PER_TASK;
        let rows = out.len() / m;
        let mut j = 0;
        while j < rows {
            let r = 4.min(rows - j);
            for i in 0..m {
                let x = &a[i * lda..i * lda + k];
                // SAFETY: `available()` was asserted; the four rows j0+j.. (repeated
                // where fewer than 4 remain) lie inside w, as asserted above.
                let d = unsafe {
                    let row = |q: usize| (j0 + j + q.min(r - 1)) * ldw;
                    match w {
                        CpuSlice::F32(v) => dot4_f32(x, [0, 1, 2, 3].map(|q| v[row(q)..].as_ptr())),
                        CpuSlice::F16(v) => {
                            dot4_f16(x, [0, 1, 2, 3].map(|q| v[row(q)..].as_ptr() as *const u16))
                        }
                        CpuSlice::BF16(v) => {
                            dot4_bf16(x, [0, 1, 2, 3].map(|q| v[row(q)..].as_ptr() as *const u16))
                        }
                        CpuSlice::U32(_) => unreachable!(),
                    }
                };
                for q in 0..r {
                    out[(j + q) * m + i] = d[q];
                }
            }
            j += r;
        }
    };
    if n * k < 1 << 15 {
        t.chunks_mut(ROWS_PER_TASK * m).enumerate().for_each(task);
    } else {
        t.par_chunks_mut(ROWS_PER_TASK * m)
            .enumerate()
            .for_each(task);
    }
    for (j, col) in t.chunks(m).enumerate() {
        for (i, v) in col.iter().enumerate() {
            c[i * n + j] = *v;
        }
    }
}

/// Defines `$name(x, w) -> [f32; 4]`: the dot products of `x` with the four rows at `w`
/// (each at least `x.len()` elements), loading 8 weights at a time with `$load`.
macro_rules! dot4 {
    ($name:ident, $elem:ty, $features:literal, |$p:ident| $load:expr, |$v:ident| $scalar:expr) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name(x: &[f32], w: [*const $elem; 4]) -> [f32; 4] {
            use std::arch::x86_64::*;
            let k = x.len();
            let xp = x.as_ptr();
            // two accumulators a row: 8 independent FMA chains cover the FMA latency
            let mut acc = [[_mm256_setzero_ps(); 2]; 4];
            let mut p = 0;
            while p + 16 <= k {
                let x0 = _mm256_loadu_ps(xp.add(p));
                let x1 = _mm256_loadu_ps(xp.add(p + 8));
                for r in 0..4 {
                    let w0 = {
                        let $p = w[r].add(p);
                        $load
                    };
                    let w1 = {
                        let $p = w[r].add(p + 8);
                        $load
                    };
                    acc[r][0] = _mm256_fmadd_ps(x0, w0, acc[r][0]);
                    acc[r][1] = _mm256_fmadd_ps(x1, w1, acc[r][1]);
                }
                p += 16;
            }
            let mut out = [0f32; 4];
            for r in 0..4 {
                let s = _mm256_add_ps(acc[r][0], acc[r][1]);
                let h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
                let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
                let h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
                let mut v = _mm_cvtss_f32(h);
                for q in p..k {
                    let $v = *w[r].add(q);
                    v += x[q] * $scalar;
                }
                out[r] = v;
            }
            out
        }

        #[cfg(not(target_arch = "x86_64"))]
        unsafe fn $name(_x: &[f32], _w: [*const $elem; 4]) -> [f32; 4] {
            unreachable!("the GEMV kernels run only where `available()`")
        }
    };
}

dot4!(dot4_f32, f32, "avx2,fma", |p| _mm256_loadu_ps(p), |v| v);
dot4!(
    dot4_f16,
    u16,
    "avx2,fma,f16c",
    |p| _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)),
    |v| half::f16::from_bits(v).to_f32()
);
dot4!(
    dot4_bf16,
    u16,
    "avx2,fma",
    |p| _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i)),
        16
    )),
    |v| half::bf16::from_bits(v).to_f32()
);
