//! Decode-shaped products (a few rows of A) against weights read along K, such as
//! `linear` weights `[out, in]`: AVX2/FMA dot products of one row of A with four weight
//! rows at a time, 16-bit weights widened in registers (F16C for f16, a shift for
//! bf16), so each weight byte is read once, as stored, and nothing is packed or cached
//! (a decode step is bound by reading the weights; a packed f32 copy of an f16 weight
//! would double that). Parallel over blocks of output columns, claimed by the calling
//! thread and the pool's ([`super::tasks::for_each`]); 16-bit rows are prefetched in
//! software ahead of the loads ([`PREFETCH_16BIT`]).

use crate::tensor::CpuSlice;

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
    // column j of row i lands at t[j·m + i] (tasks own whole columns), then transposed;
    // with one row of A that is c itself
    let mut t = if m == 1 {
        Vec::new()
    } else {
        vec![0f32; n * m]
    };
    let dst = Out(if m == 1 {
        c.as_mut_ptr()
    } else {
        t.as_mut_ptr()
    });
    let task = |blk: usize| {
        let j0 = blk * ROWS_PER_TASK;
        let rows = ROWS_PER_TASK.min(n - j0);
        // SAFETY: task `blk` alone writes columns j0..j0+rows, i.e. this m·rows block
        // of the n·m output (c holds at least m·n, asserted above)
        let out = unsafe { std::slice::from_raw_parts_mut(dst.at(j0 * m), rows * m) };
        let mut j = 0;
        while j < rows {
            let r = 4.min(rows - j);
            for i in 0..m {
                let x = &a[i * lda..i * lda + k];
                // SAFETY: `available()` was asserted; the four rows j0+j.. (repeated
                // where fewer than 4 remain) lie inside w, as asserted above.
                let d = unsafe {
                    let row = |q: usize| (j0 + j + q.min(r - 1)) * ldw;
                    // the rows after these four (this task's next group, else these)
                    let nrow = |q: usize| {
                        if j + 4 < rows {
                            (j0 + j + 4 + q.min(rows - j - 5)) * ldw
                        } else {
                            row(q)
                        }
                    };
                    match w {
                        CpuSlice::F32(v) => dot4_f32(
                            x,
                            [0, 1, 2, 3].map(|q| v[row(q)..].as_ptr()),
                            [0, 1, 2, 3].map(|q| v[nrow(q)..].as_ptr()),
                        ),
                        CpuSlice::F16(v) => dot4_f16(
                            x,
                            [0, 1, 2, 3].map(|q| v[row(q)..].as_ptr() as *const u16),
                            [0, 1, 2, 3].map(|q| v[nrow(q)..].as_ptr() as *const u16),
                        ),
                        CpuSlice::BF16(v) => dot4_bf16(
                            x,
                            [0, 1, 2, 3].map(|q| v[row(q)..].as_ptr() as *const u16),
                            [0, 1, 2, 3].map(|q| v[nrow(q)..].as_ptr() as *const u16),
                        ),
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
    let tasks = n.div_ceil(ROWS_PER_TASK);
    if n * k < 1 << 15 {
        (0..tasks).for_each(task);
    } else {
        super::tasks::for_each(tasks, task);
    }
    if m == 1 {
        return;
    }
    for (j, col) in t.chunks(m).enumerate() {
        for (i, v) in col.iter().enumerate() {
            c[i * n + j] = *v;
        }
    }
}

/// How far ahead (bytes) the 16-bit kernels prefetch each of their four weight rows,
/// continuing into the next four rows past a row's end. The hardware prefetcher stops
/// at every 4 KiB page and restarts on each new group of rows; with 16-bit rows the
/// loop crosses those twice as often per instruction. Measured on 8B/70B decode shapes
/// (f16, interleaved in one process): 1024 B was the fastest of 0/256/512/1024/2048 in
/// two runs (6–25 % over none); for f32 rows the distances were within the noise of none
/// (±15 %, some rows better, some worse), so they are left to the hardware.
const PREFETCH_16BIT: usize = 1024;

/// The output pointer the tasks share; each writes its own columns.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: tasks write disjoint column blocks of the output.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// The output pointer offset by `i` elements (inside the output).
    unsafe fn at(self, i: usize) -> *mut f32 {
        self.0.add(i)
    }
}

/// Defines `$name(x, w, next) -> [f32; 4]`: the dot products of `x` with the four rows
/// at `w` (each at least `x.len()` elements), loading 8 weights at a time with `$load`
/// and prefetching `$dist` bytes ahead (0: none), into the rows at `next` (the four
/// the caller reads after these) past a row's end. Prefetches never fault, so a
/// distance past the weights' end is harmless.
macro_rules! dot4 {
    ($name:ident, $elem:ty, $features:literal, $dist:expr, |$p:ident| $load:expr, |$v:ident| $scalar:expr) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name(x: &[f32], w: [*const $elem; 4], next: [*const $elem; 4]) -> [f32; 4] {
            use std::arch::x86_64::*;
            let k = x.len();
            let xp = x.as_ptr();
            let es = std::mem::size_of::<$elem>();
            let dist: usize = $dist;
            // prefetch pointers run `dist` bytes ahead of the loads, past a row's end
            // into the same row of the next group
            let pf: [*const u8; 4] = [0, 1, 2, 3].map(|r| (w[r] as *const u8).wrapping_add(dist));
            let pn: [*const u8; 4] = [0, 1, 2, 3].map(|r| {
                (next[r] as *const u8)
                    .wrapping_add(dist)
                    .wrapping_sub(k * es)
            });
            let switch = (k * es).saturating_sub(dist) / es;
            // two accumulators a row: 8 independent FMA chains cover the FMA latency
            let mut acc = [[_mm256_setzero_ps(); 2]; 4];
            let mut p = 0;
            while p + 16 <= k {
                if dist > 0 {
                    for r in 0..4 {
                        let a = if p < switch { pf[r] } else { pn[r] }.wrapping_add(p * es);
                        _mm_prefetch::<_MM_HINT_T0>(a as *const i8);
                    }
                }
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
        unsafe fn $name(_x: &[f32], _w: [*const $elem; 4], _next: [*const $elem; 4]) -> [f32; 4] {
            unreachable!("the GEMV kernels run only where `available()`")
        }
    };
}

dot4!(dot4_f32, f32, "avx2,fma", 0, |p| _mm256_loadu_ps(p), |v| v);
dot4!(
    dot4_f16,
    u16,
    "avx2,fma,f16c",
    PREFETCH_16BIT,
    |p| _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)),
    |v| half::f16::from_bits(v).to_f32()
);
dot4!(
    dot4_bf16,
    u16,
    "avx2,fma",
    PREFETCH_16BIT,
    |p| _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i)),
        16
    )),
    |v| half::bf16::from_bits(v).to_f32()
);
