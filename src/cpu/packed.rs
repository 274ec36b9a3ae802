//! The CPU backend's own f32 GEMM for `a · b` with `b` packed once into column panels:
//! an AVX2/FMA microkernel of 6 rows × 16 columns (12 accumulators, A broadcast from
//! its rows in place, B read from a contiguous panel), with the bias and activation
//! applied to each output tile while it is still in cache, and a 16-bit output rounded
//! from it there too.
//!
//! Why our own: the `gemm` crate repacks both operands on every call (its packing took a
//! quarter as many samples as its microkernel in the 135M LLaMA prefill), while a
//! `linear` weight is static: packed once, cached by [`super::weights`], it is read
//! straight from the panels on every later call. A is used where it lies (rows
//! contiguous along K), so nothing is packed per call at all.
//!
//! **Blocking**: K is cut into even blocks of at most [`KC_MAX`]; the output into tasks
//! of up to [`MB`] rows × up to 8 panels, claimed one by one by the calling thread and
//! the pool's ([`super::tasks::for_each`]: a busy or late core just takes fewer). Within a K block a task holds one 6-row strip of A in L1
//! while its panels' blocks (in L2) stream past as contiguous runs
//! the prefetcher follows (the other way round, A's strips streamed from L2 over a
//! panel held in L1, measured a third slower, and a fifth slower with A packed into
//! strips per task: the packing costs more than it saves). Each task runs its K blocks in order,
//! the first storing, the later ones adding, then the epilogue on its tile.

use crate::ops::activation::Activation;
use crate::tensor::CpuSlice;
use rayon::prelude::*;

/// Columns of a panel (two AVX registers).
pub(crate) const NR: usize = 16;
/// Rows of the microkernel.
const MR: usize = 6;
/// Most K per block: a 6-row strip of A (13.5 KiB) stays in L1 and a task's 8 panels'
/// blocks (288 KiB) in L2. Per core-second 576 measured 5-10 % above 384 and 256 (K =
/// 576 in one block: no second pass over C), and level with 800.
const KC_MAX: usize = 576;
/// Most rows per task (a multiple of [`MR`]; A's `MB × KC` block stays in L2).
const MB: usize = 96;

/// Whether this CPU runs the packed GEMM (AVX2 and FMA).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `B` (k × n) as f32 panels of [`NR`] columns: element (kk, j) of panel p at
/// `panel(p)[kk·NR + j]`, columns past `n` zero. Panels start 64-byte aligned.
pub(crate) struct PackedB {
    pub(crate) k: usize,
    pub(crate) n: usize,
    data: Vec<f32>,
    /// Index in `data` of the first panel (for the alignment).
    start: usize,
}

impl PackedB {
    /// Panels (the last one zero-padded).
    pub(crate) fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }

    fn panel(&self, p: usize) -> &[f32] {
        let len = self.k * NR;
        &self.data[self.start + p * len..self.start + (p + 1) * len]
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.data.len() * 4
    }
}

/// Packs `b` (element (kk, j) at `kk·sbk + j·sbn`) into panels, widening 16-bit
/// elements, on all threads.
pub(crate) fn pack(b: CpuSlice<'_>, k: usize, n: usize, sbk: usize, sbn: usize) -> PackedB {
    let panels = n.div_ceil(NR);
    let len = k * NR;
    let mut data = vec![0f32; panels * len + 16];
    let start = (16 - (data.as_ptr() as usize / 4) % 16) % 16;
    let body = &mut data[start..start + panels * len];
    if len > 0 {
        body.par_chunks_mut(len)
            .enumerate()
            .for_each(|(p, dst)| match b {
                CpuSlice::F32(v) => pack_panel(v, p, k, n, sbk, sbn, dst),
                CpuSlice::F16(v) => pack_panel(v, p, k, n, sbk, sbn, dst),
                CpuSlice::BF16(v) => pack_panel(v, p, k, n, sbk, sbn, dst),
                CpuSlice::U32(_) => unreachable!("matmul refuses non-float dtypes before dispatch"),
            });
    }
    PackedB { k, n, data, start }
}

fn pack_panel<T: crate::dtype::Element>(
    v: &[T],
    p: usize,
    k: usize,
    n: usize,
    sbk: usize,
    sbn: usize,
    dst: &mut [f32],
) {
    let cols = NR.min(n - p * NR);
    if sbk == 1 {
        // B read along K (a `[out, in]` weight): widen each column's run, then scatter
        let mut run = vec![0f32; k];
        for j in 0..cols {
            let s = (p * NR + j) * sbn;
            super::math::widen(&v[s..s + k], &mut run);
            for (kk, x) in run.iter().enumerate() {
                dst[kk * NR + j] = *x;
            }
        }
    } else {
        for kk in 0..k {
            for j in 0..cols {
                dst[kk * NR + j] = v[kk * sbk + (p * NR + j) * sbn].to_f32();
            }
        }
    }
}

/// A raw output pointer shared by tasks that write disjoint tiles.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: tasks write disjoint (row range × column range) tiles of the output.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

/// Where a task puts its finished tile besides the f32 staging: nowhere, or rounded
/// into a 16-bit output of the same m × n layout.
#[derive(Clone, Copy)]
enum Narrowed {
    None,
    F16(*mut half::f16),
    BF16(*mut half::bf16),
}
// SAFETY: as for `Out`, tasks write disjoint tiles.
unsafe impl Send for Narrowed {}
unsafe impl Sync for Narrowed {}

/// The 16-bit output of [`gemm`], which tasks fill tile by tile from the f32 staging
/// while it is in their cache (no serial narrowing pass after the product).
pub(crate) enum HalfOut<'a> {
    /// f16 output.
    F16(&'a mut [half::f16]),
    /// bf16 output.
    BF16(&'a mut [half::bf16]),
}

thread_local! {
    /// This thread's f32 copy of a 16-bit A and the [`gemm`] call it belongs to (see
    /// `gemm`'s docs); reused, so it costs no allocation or page fault after the first.
    static WIDENED_A: std::cell::RefCell<(usize, Vec<f32>)> =
        const { std::cell::RefCell::new((0, Vec::new())) };
}

/// Numbers [`gemm`] calls, so a thread's [`WIDENED_A`] is never taken for another's A.
static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// `c = a · b (+ bias, activation)`: `a` is m × k with rows `lda` apart (contiguous
/// along K), `c` is m × n row-major f32 (the accumulators; with `c16` also rounded
/// into it). Needs [`available`].
///
/// A 16-bit `a` is widened by each thread that runs a task, once per call, into its own
/// buffer: a small activation (a 72-row linear's) widened by the caller alone stalled
/// the helper thread and then reached it through the other core's cache; the
/// duplicated conversion costs less. Callers pass 16-bit A only up to
/// [`super::CONVERT_SERIAL_MAX`] elements and widen larger ones themselves.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    m: usize,
    a: CpuSlice<'_>,
    lda: usize,
    b: &PackedB,
    c: &mut [f32],
    c16: Option<HalfOut<'_>>,
    bias: Option<&[f32]>,
    act: Option<Activation>,
) {
    let (k, n) = (b.k, b.n);
    let a_len = if m == 0 || k == 0 {
        0
    } else {
        (m - 1) * lda + k
    };
    assert!(c.len() >= m * n, "output smaller than m × n");
    assert!(
        m == 0 || k == 0 || a.len() >= a_len,
        "A shorter than its rows"
    );
    assert!(available(), "the packed GEMM needs AVX2 and FMA");
    let narrowed = match c16 {
        None => Narrowed::None,
        Some(HalfOut::F16(h)) => {
            assert!(h.len() >= m * n, "16-bit output smaller than m × n");
            Narrowed::F16(h.as_mut_ptr())
        }
        Some(HalfOut::BF16(h)) => {
            assert!(h.len() >= m * n, "16-bit output smaller than m × n");
            Narrowed::BF16(h.as_mut_ptr())
        }
    };
    if m == 0 || n == 0 {
        return;
    }
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let panels = b.panels();
    let row_blocks = m.div_ceil(MB);
    let threads = rayon::current_num_threads().max(1);
    // enough tasks for every thread to claim from (8 each, so a helper that joins late
    // still finds a share), at most 8 panels a task
    let per_task = (panels * row_blocks).div_ceil(8 * threads).clamp(1, 8);
    let col_blocks = panels.div_ceil(per_task);
    let tasks = row_blocks * col_blocks;
    let out = Out(c.as_mut_ptr());
    let run = move |t: usize| {
        let (rb, cb) = (t / col_blocks, t % col_blocks);
        let rows = rb * MB..(rb * MB + MB).min(m);
        let pans = cb * per_task..(cb * per_task + per_task).min(panels);
        // SAFETY: the tile (rows × pans' columns) belongs to this task alone; every
        // index stays inside m × n (checked above), A's inside its asserted length.
        let tile = |a: &[f32]| unsafe { task(a, lda, b, out, narrowed, n, rows, pans, bias, act) };
        let widen = |w: &mut Vec<f32>| {
            w.resize(a_len, 0.0);
            match a {
                CpuSlice::F16(h) => super::math::widen(&h[..a_len], w),
                CpuSlice::BF16(h) => super::math::widen(&h[..a_len], w),
                _ => unreachable!("the matmul refuses u32 operands"),
            }
        };
        match a {
            CpuSlice::F32(a) => tile(a),
            // a task runs no other op, so the buffer is free; should that ever change,
            // a nested call widens into its own vector instead of panicking
            _ => WIDENED_A.with(|cell| match cell.try_borrow_mut() {
                Ok(mut held) => {
                    let (owner, w) = &mut *held;
                    if *owner != call {
                        widen(w);
                        *owner = call;
                    }
                    tile(w)
                }
                Err(_) => {
                    let mut w = Vec::new();
                    widen(&mut w);
                    tile(&w)
                }
            }),
        }
    };
    let flops = 2 * m * n * k;
    if tasks == 1 || flops < 1 << 18 {
        (0..tasks).for_each(run);
    } else {
        super::tasks::for_each(tasks, run);
    }
}

/// One task: rows × panels of C, all of K, then the epilogue.
#[allow(clippy::too_many_arguments)]
unsafe fn task(
    a: &[f32],
    lda: usize,
    b: &PackedB,
    out: Out,
    narrowed: Narrowed,
    n: usize,
    rows: std::ops::Range<usize>,
    pans: std::ops::Range<usize>,
    bias: Option<&[f32]>,
    act: Option<Activation>,
) {
    let k = b.k;
    let c = out.0;
    let blocks = k.div_ceil(KC_MAX).max(1);
    let kc = k.div_ceil(blocks);
    if k == 0 {
        for i in rows.clone() {
            for p in pans.clone() {
                let cols = NR.min(n - p * NR);
                std::ptr::write_bytes(c.add(i * n + p * NR), 0, cols);
            }
        }
    }
    let mut k0 = 0;
    while k0 < k {
        let len = kc.min(k - k0);
        // the 6-row strip of A (6·KC floats) stays in L1 while the task's panels stream
        // through from L2, each a contiguous run the prefetcher follows
        let mut i = rows.start;
        while i < rows.end {
            let r = MR.min(rows.end - i);
            let ap = a[i * lda + k0..].as_ptr();
            for p in pans.clone() {
                let panel = b.panel(p)[k0 * NR..].as_ptr();
                let cols = NR.min(n - p * NR);
                let cp = c.add(i * n + p * NR);
                let acc = k0 > 0;
                match r {
                    6 => kernel::<6>(len, ap, lda, panel, cp, n, cols, acc),
                    5 => kernel::<5>(len, ap, lda, panel, cp, n, cols, acc),
                    4 => kernel::<4>(len, ap, lda, panel, cp, n, cols, acc),
                    3 => kernel::<3>(len, ap, lda, panel, cp, n, cols, acc),
                    2 => kernel::<2>(len, ap, lda, panel, cp, n, cols, acc),
                    _ => kernel::<1>(len, ap, lda, panel, cp, n, cols, acc),
                }
            }
            i += r;
        }
        k0 += len;
    }
    let c0 = pans.start * NR;
    let c1 = (pans.end * NR).min(n);
    for i in rows {
        let row = std::slice::from_raw_parts_mut(c.add(i * n + c0), c1 - c0);
        let at = i * n + c0;
        let bias = bias.map(|b| &b[c0..c1]);
        if let (Narrowed::F16(h), Some(b), None) = (narrowed, bias, act) {
            // a bias alone: added while narrowing, one pass over the row
            let dst = std::slice::from_raw_parts_mut(h.add(at), row.len());
            super::math::narrow_with_bias(row, b, dst);
            continue;
        }
        if bias.is_some() || act.is_some() {
            super::activation::epilogue(row, bias, act);
        }
        match narrowed {
            Narrowed::None => {}
            Narrowed::F16(h) => {
                super::math::narrow(row, std::slice::from_raw_parts_mut(h.add(at), row.len()))
            }
            Narrowed::BF16(h) => {
                super::math::narrow(row, std::slice::from_raw_parts_mut(h.add(at), row.len()))
            }
        }
    }
}

/// R rows × 16 columns of C over `kc` of K: C = (C if `accumulate`) + A·B. A's rows are
/// `lda` apart from `a`; `b` is the panel at this K block; `cols` ≤ 16 are stored.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel<const R: usize>(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    let mut rows = [a; R];
    for (r, p) in rows.iter_mut().enumerate() {
        *p = a.add(r * lda);
    }
    for kk in 0..kc {
        let b0 = _mm256_load_ps(b.add(kk * NR));
        let b1 = _mm256_load_ps(b.add(kk * NR + 8));
        for r in 0..R {
            let x = _mm256_broadcast_ss(&*rows[r].add(kk));
            acc[r][0] = _mm256_fmadd_ps(x, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(x, b1, acc[r][1]);
        }
    }
    for (r, v) in acc.iter().enumerate() {
        let cp = c.add(r * ldc);
        if cols == NR {
            let (mut v0, mut v1) = (v[0], v[1]);
            if accumulate {
                v0 = _mm256_add_ps(v0, _mm256_loadu_ps(cp));
                v1 = _mm256_add_ps(v1, _mm256_loadu_ps(cp.add(8)));
            }
            _mm256_storeu_ps(cp, v0);
            _mm256_storeu_ps(cp.add(8), v1);
        } else {
            let mut t = [0f32; NR];
            _mm256_storeu_ps(t.as_mut_ptr(), v[0]);
            _mm256_storeu_ps(t.as_mut_ptr().add(8), v[1]);
            for (j, x) in t[..cols].iter().enumerate() {
                let o = cp.add(j);
                *o = if accumulate { *o + x } else { *x };
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel<const R: usize>(
    _kc: usize,
    _a: *const f32,
    _lda: usize,
    _b: *const f32,
    _c: *mut f32,
    _ldc: usize,
    _cols: usize,
    _accumulate: bool,
) {
    unreachable!("the packed GEMM runs only where `available()`")
}
