//! CPU twin of `shaders/attention.wgsl`: flash attention with an online softmax.
//!
//! Work is split into tasks of (batch, key/value head, tile of [`ROWS`] query rows),
//! where the rows of one key/value head are its `group` query heads × `q_len` tokens, so
//! grouped-query heads (and a decode step's few queries) read each K/V tile once. A task
//! walks the key tiles ([`KEYS`] keys) its rows may see (tiles wholly hidden by the causal
//! mask or the window are skipped) and keeps per row a running max `m`, a running sum `l`
//! and an unnormalised output `o`:
//!
//! ```text
//! S = Q·Kᵀ (scaled, capped, masked)     one tile, never the whole score matrix
//! m' = max(m, rowmax S);  P = exp(S − m');  α = exp(m − m')
//! l = α·l + rowsum P;     o = α·o + P·V
//! ```
//!
//! and writes `o / l` (zeros where no key was visible). The two tile products go through
//! the `gemm` crate's microkernels (AVX2/AVX-512/NEON); f32 operands are read in place
//! through their strides, 16-bit ones are widened tile by tile into f32 blocks first.
//! The exponentials use the vectorised `math::exp`.

use super::math::{exp_in_place, narrow, widen};
use super::{take, CpuStorage, Pooled};
use crate::dtype::Element;
use crate::ops::attention::Plan;
use crate::tensor::CpuSlice;
use crate::tensor::Tensor;
use half::{bf16, f16};
use rayon::prelude::*;

/// Query rows per task (one tile of Q).
pub(crate) const ROWS: usize = 64;
/// Keys per K/V tile.
pub(crate) const KEYS: usize = 128;
/// Tiles of at most this many rows (decode: a few tokens × the grouped heads) use the
/// direct loops in [`small`] instead of gemm, whose packing dominates at such sizes and
/// would keep decode far from the memory bandwidth it is bound by.
const SMALL_ROWS: usize = 8;

pub(crate) fn describe(plan: &Plan) -> String {
    format!(
        "cpu flash attention ({} query rows × {} keys per tile, {} tasks)",
        ROWS,
        KEYS,
        tasks(plan).len()
    )
}

/// (batch, kv head, first row, rows) of every task.
fn tasks(plan: &Plan) -> Vec<(usize, usize, usize, usize)> {
    let rows = plan.rows();
    let mut v = Vec::new();
    for b in 0..plan.batch {
        for h in 0..plan.kv_heads {
            let mut r = 0;
            while r < rows {
                let n = ROWS.min(rows - r);
                v.push((b, h, r, n));
                r += n;
            }
        }
    }
    v
}

pub(crate) fn attention(q: &Tensor, k: &Tensor, v: &Tensor, plan: &Plan) -> CpuStorage {
    let n = plan.out_shape.iter().product();
    match (q.cpu_storage(), k.cpu_storage(), v.cpu_storage()) {
        (CpuSlice::F32(q), CpuSlice::F32(k), CpuSlice::F32(v)) => {
            CpuStorage::F32(run(q, k, v, plan, n))
        }
        (CpuSlice::F16(q), CpuSlice::F16(k), CpuSlice::F16(v)) => {
            CpuStorage::F16(run::<f16>(q, k, v, plan, n))
        }
        (CpuSlice::BF16(q), CpuSlice::BF16(k), CpuSlice::BF16(v)) => {
            CpuStorage::BF16(run::<bf16>(q, k, v, plan, n))
        }
        _ => unreachable!("attention checks dtypes before dispatch"),
    }
}

/// The output pointer, shared by tasks that write disjoint rows.
#[derive(Clone, Copy)]
struct Out<T>(*mut T);
// SAFETY: every task writes only the output rows of its own (batch, head, token) set,
// and the sets of different tasks are disjoint.
unsafe impl<T> Send for Out<T> {}
unsafe impl<T> Sync for Out<T> {}

/// What every task of one call reads: the operands, the plan and the widened mask.
struct Inputs<'a, T> {
    q: &'a [T],
    k: &'a [T],
    v: &'a [T],
    plan: &'a Plan,
    mask: Option<&'a [f32]>,
}

/// Per-thread scratch.
#[derive(Default)]
struct Scratch {
    q: Vec<f32>,
    s: Vec<f32>,
    o: Vec<f32>,
    m: Vec<f32>,
    l: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    row: Vec<f32>,
}

fn run<T: Element + Pooled>(q: &[T], k: &[T], v: &[T], plan: &Plan, n: usize) -> Vec<T> {
    // every output row belongs to exactly one task, which writes all of it (zeros where
    // no key is visible), so a pooled buffer's stale contents never show
    let mut out = take::<T>(n);
    let mask = plan.mask.as_ref().map(|m| m.cpu_storage().to_f32());
    let mask = mask.as_deref();
    let lengths = plan
        .kv_lengths
        .as_ref()
        .map(|l| l.cpu_storage().as_slice::<u32>());
    let ptr = Out(out.as_mut_ptr());
    let inputs = Inputs {
        q,
        k,
        v,
        plan,
        mask,
    };
    tasks(plan)
        .into_par_iter()
        .for_each_init(Scratch::default, |scratch, (b, h, r0, nr)| {
            let len = lengths.map_or(plan.kv_len, |l| (l[b] as usize).min(plan.kv_len));
            task_avx2(&inputs, len, (b, h, r0, nr), scratch, ptr);
        });
    out
}

/// `dst[i·dst_rs + j·dst_cs] (+)= Σ_k lhs[i·lhs_rs + k·lhs_cs] · rhs[k·rhs_rs + j·rhs_cs]`
/// for an m×n block; `accumulate` adds to dst instead of overwriting it.
///
/// # Safety
/// Every index the strides produce for i < m, j < n, k < depth must lie inside the
/// slices the pointers come from, and dst must not alias lhs or rhs.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm(
    m: usize,
    n: usize,
    depth: usize,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: *const f32,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const f32,
    rhs_rs: usize,
    rhs_cs: usize,
) {
    gemm::gemm(
        m,
        n,
        depth,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs,
        lhs_cs as isize,
        lhs_rs as isize,
        rhs,
        rhs_cs as isize,
        rhs_rs as isize,
        if accumulate { 1.0 } else { 0.0 },
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

/// `rows` rows of `dim` elements starting at `base` with row stride `stride`, as f32:
/// borrowed in place for f32 (stride kept), else widened into `buf` (stride `dim`).
fn rows_f32<'a, T: Element>(
    src: &'a [T],
    base: usize,
    stride: usize,
    rows: usize,
    dim: usize,
    buf: &'a mut Vec<f32>,
) -> (&'a [f32], usize) {
    let end = base + (rows - 1) * stride + dim;
    if T::DTYPE == crate::DType::F32 {
        let all: &[f32] = bytemuck::cast_slice(&src[..end]);
        return (&all[base..], stride);
    }
    buf.resize(rows * dim, 0.0);
    for r in 0..rows {
        let s = base + r * stride;
        widen(&src[s..s + dim], &mut buf[r * dim..(r + 1) * dim]);
    }
    (&buf[..], dim)
}

/// [`task`] compiled for AVX2 + FMA where the CPU has them: the per-row softmax loops
/// between the tile products (max, mask, rescale) run 8 wide instead of SSE2's 4.
fn task_avx2<T: Element>(
    inputs: &Inputs<'_, T>,
    len: usize,
    tile: (usize, usize, usize, usize),
    sc: &mut Scratch,
    out: Out<T>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<T: Element>(
            inputs: &Inputs<'_, T>,
            len: usize,
            tile: (usize, usize, usize, usize),
            sc: &mut Scratch,
            out: Out<T>,
        ) {
            task(inputs, len, tile, sc, out)
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: AVX2 and FMA were detected on this CPU just above.
            return unsafe { avx2(inputs, len, tile, sc, out) };
        }
    }
    task(inputs, len, tile, sc, out)
}

/// One task: a tile of query rows of one (batch, kv head) against its visible keys.
#[inline(always)]
fn task<T: Element>(
    &Inputs {
        q,
        k,
        v,
        plan,
        mask,
    }: &Inputs<'_, T>,
    len: usize,
    (b, h, r0, nr): (usize, usize, usize, usize),
    sc: &mut Scratch,
    out: Out<T>,
) {
    let (d, dv, ql) = (plan.head_dim, plan.v_dim, plan.q_len);
    // (query head, token) of each row
    let row = |r: usize| (h * plan.group + (r0 + r) / ql, (r0 + r) % ql);
    // Q tile, widened and pre-scaled
    sc.q.resize(nr * d, 0.0);
    for r in 0..nr {
        let (qh, i) = row(r);
        let s = b * plan.q_strides[0] + qh * plan.q_strides[1] + i * plan.q_strides[2];
        let dst = &mut sc.q[r * d..(r + 1) * d];
        widen(&q[s..s + d], dst);
        for x in dst.iter_mut() {
            *x *= plan.scale;
        }
    }
    sc.o.clear();
    sc.o.resize(nr * dv, 0.0);
    sc.m.clear();
    sc.m.resize(nr, f32::NEG_INFINITY);
    sc.l.clear();
    sc.l.resize(nr, 0.0);
    sc.s.resize(nr * KEYS, 0.0);
    // the tokens of this tile (rows wrapping into the next head span every token)
    let (i_min, i_max) = if (r0 / ql) == (r0 + nr - 1) / ql {
        (r0 % ql, (r0 + nr - 1) % ql)
    } else {
        (0, ql - 1)
    };
    let (lo, hi) = plan.key_range(len, i_min, i_max);
    let kb = b * plan.k_strides[0] + h * plan.k_strides[1];
    let vb = b * plan.v_strides[0] + h * plan.v_strides[1];
    let mut kt = lo;
    while kt < hi {
        let nk = KEYS.min(hi - kt);
        if nr <= SMALL_ROWS {
            let ks = plan.k_strides[2];
            let base = kb + kt * ks;
            let kt_rows = &k[base..base + (nk - 1) * ks + d];
            small::scores(&sc.q, d, kt_rows, ks, nk, &mut sc.s, KEYS, &mut sc.k);
        } else {
            let (kt_rows, ks) = rows_f32(
                k,
                kb + kt * plan.k_strides[2],
                plan.k_strides[2],
                nk,
                d,
                &mut sc.k,
            );
            // S = Q · Kᵀ
            // SAFETY: S is nr×KEYS (we write nr×nk with row stride KEYS); Q is nr×d;
            // the K rows lie in kt_rows (nk rows of d, stride ks).
            unsafe {
                gemm(
                    nr,
                    nk,
                    d,
                    sc.s.as_mut_ptr(),
                    KEYS,
                    false,
                    sc.q.as_ptr(),
                    d,
                    1,
                    kt_rows.as_ptr(),
                    1,
                    ks,
                );
            }
        }
        let mut any = false;
        for r in 0..nr {
            let (qh, i) = row(r);
            let srow = &mut sc.s[r * KEYS..r * KEYS + nk];
            if plan.softcap > 0.0 {
                let c = plan.softcap;
                for x in srow.iter_mut() {
                    *x = c * (*x / c).tanh();
                }
            }
            if let Some(m) = mask {
                let off = b * plan.mask_strides[0]
                    + qh * plan.mask_strides[1]
                    + i * plan.mask_strides[2]
                    + kt;
                for (x, &mv) in srow.iter_mut().zip(&m[off..off + nk]) {
                    *x += mv;
                }
            }
            // visibility: keys of this row form one interval [a, e) within the tile
            let (a, e) = plan.key_range(len, i, i);
            let a = a.clamp(kt, kt + nk) - kt;
            let e = e.clamp(kt, kt + nk) - kt;
            srow[..a].fill(f32::NEG_INFINITY);
            srow[e.max(a)..].fill(f32::NEG_INFINITY);
            let mut mx = [f32::NEG_INFINITY; 8];
            let mut chunks = srow.chunks_exact(8);
            for c in &mut chunks {
                for t in 0..8 {
                    mx[t] = if c[t] > mx[t] { c[t] } else { mx[t] };
                }
            }
            let mut tmax = mx.iter().fold(f32::NEG_INFINITY, |x, &y| x.max(y));
            for &x in chunks.remainder() {
                tmax = tmax.max(x);
            }
            let m_old = sc.m[r];
            let m_new = m_old.max(tmax);
            if m_new == f32::NEG_INFINITY {
                // nothing visible yet: this tile adds nothing to the row
                srow.fill(0.0);
                continue;
            }
            any = true;
            exp_in_place(srow, m_new);
            let alpha = if m_old == f32::NEG_INFINITY {
                0.0
            } else {
                super::math::exp(m_old - m_new)
            };
            sc.l[r] = sc.l[r] * alpha + super::math::lanes_sum(srow, |x| x);
            sc.m[r] = m_new;
            if alpha != 1.0 {
                for x in &mut sc.o[r * dv..(r + 1) * dv] {
                    *x *= alpha;
                }
            }
        }
        if any {
            if nr <= SMALL_ROWS {
                let vs = plan.v_strides[2];
                let base = vb + kt * vs;
                let vt_rows = &v[base..base + (nk - 1) * vs + dv];
                small::accumulate(&sc.s, KEYS, nr, nk, vt_rows, vs, &mut sc.o, dv, &mut sc.v);
                kt += nk;
                continue;
            }
            let (vt_rows, vs) = rows_f32(
                v,
                vb + kt * plan.v_strides[2],
                plan.v_strides[2],
                nk,
                dv,
                &mut sc.v,
            );
            // O += P · V
            // SAFETY: O is nr×dv, P is the nr×nk block of S (row stride KEYS), the V rows
            // lie in vt_rows (nk rows of dv, stride vs).
            unsafe {
                gemm(
                    nr,
                    dv,
                    nk,
                    sc.o.as_mut_ptr(),
                    dv,
                    true,
                    sc.s.as_ptr(),
                    KEYS,
                    1,
                    vt_rows.as_ptr(),
                    vs,
                    1,
                );
            }
        }
        kt += nk;
    }
    sc.row.resize(dv, 0.0);
    for r in 0..nr {
        let (qh, i) = row(r);
        let l = sc.l[r];
        let inv = if l > 0.0 { 1.0 / l } else { 0.0 };
        for (dst, &x) in sc.row.iter_mut().zip(&sc.o[r * dv..(r + 1) * dv]) {
            *dst = x * inv;
        }
        let s = b * plan.o_strides[0] + qh * plan.o_strides[1] + i * plan.o_strides[2];
        // SAFETY: row (b, qh, i) belongs to this task alone (see `Out`), and s + dv is
        // within the output, whose strides come from its shape.
        let dst = unsafe { std::slice::from_raw_parts_mut(out.0.add(s), dv) };
        narrow(&sc.row, dst);
    }
}

/// Tile products for a few query rows (decode: a token or a few × the grouped heads),
/// where the step is bound by reading K and V once. On x86_64 with AVX2 + FMA + F16C they
/// are register-blocked intrinsics that read 16-bit K/V rows in place (eight lanes
/// widened per load, no widened copy of the tile); elsewhere portable loops over an f32
/// tile LLVM vectorises (16-bit tiles widened into `buf` first).
mod small {
    use super::Element;

    /// `s[r·s_rs + j] = q_r · k_j` for r < q.len()/d, j < nk (k rows at stride ks).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn scores<T: Element>(
        q: &[f32],
        d: usize,
        k: &[T],
        ks: usize,
        nk: usize,
        s: &mut [f32],
        s_rs: usize,
        buf: &mut Vec<f32>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if crate::cpu::lanes::available_f16() {
            // SAFETY: the features were detected just above; the slices' lengths bound
            // every index (k holds nk rows of d at stride ks, s nr rows of s_rs ≥ nk).
            return unsafe { x86::scores(q, d, k, ks, nk, s, s_rs) };
        }
        let (k, ks) = super::rows_f32(k, 0, ks, nk, d, buf);
        portable::scores(q, d, k, ks, nk, s, s_rs)
    }

    /// `o_r += Σ_j p[r·p_rs + j] · v_j` for r < nr, j < nk (v rows at stride vs, dv wide).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn accumulate<T: Element>(
        p: &[f32],
        p_rs: usize,
        nr: usize,
        nk: usize,
        v: &[T],
        vs: usize,
        o: &mut [f32],
        dv: usize,
        buf: &mut Vec<f32>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if crate::cpu::lanes::available_f16() {
            // SAFETY: as for `scores`; o holds nr rows of dv, p nr rows of p_rs ≥ nk.
            return unsafe { x86::accumulate(p, p_rs, nr, nk, v, vs, o, dv) };
        }
        let (v, vs) = super::rows_f32(v, 0, vs, nk, dv, buf);
        portable::accumulate(p, p_rs, nr, nk, v, vs, o, dv)
    }

    // register blocks read as acc[row][vector]: index loops over R and C say that best
    #[cfg(target_arch = "x86_64")]
    #[allow(clippy::needless_range_loop)]
    mod x86 {
        use super::Element;
        use crate::cpu::lanes::load8;
        use std::arch::x86_64::*;

        /// The four horizontal sums of a0..a3, in order.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        fn sum4(a0: __m256, a1: __m256, a2: __m256, a3: __m256) -> __m128 {
            let h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
            _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h))
        }

        /// `R` query rows against four keys: R×4 accumulators, each K load feeding R
        /// FMAs and each Q load four. The first `d8` elements (a multiple of 8) only.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn rows_x4<T: Element, const R: usize>(
            q: [*const f32; R],
            k: [*const T; 4],
            d8: usize,
            ahead: usize,
        ) -> [[f32; 4]; R] {
            let mut acc = [[_mm256_setzero_ps(); 4]; R];
            let mut c = 0;
            while c < d8 {
                if ahead > 0 && (c * std::mem::size_of::<T>()).is_multiple_of(64) {
                    // the same columns `ahead` elements on, one line per row, spread
                    // through the loop (a burst of prefetches fills the miss buffers)
                    for kt in k {
                        _mm_prefetch::<_MM_HINT_T1>(kt.wrapping_add(c + ahead) as *const i8);
                    }
                }
                // SAFETY: c + 8 <= d8 <= the rows' lengths (the caller's contract).
                unsafe {
                    let kv = [
                        load8(k[0].add(c)),
                        load8(k[1].add(c)),
                        load8(k[2].add(c)),
                        load8(k[3].add(c)),
                    ];
                    for r in 0..R {
                        let qv = _mm256_loadu_ps(q[r].add(c));
                        for t in 0..4 {
                            acc[r][t] = _mm256_fmadd_ps(qv, kv[t], acc[r][t]);
                        }
                    }
                }
                c += 8;
            }
            let mut out = [[0f32; 4]; R];
            for r in 0..R {
                let s = sum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
                // SAFETY: out[r] is four f32s.
                unsafe { _mm_storeu_ps(out[r].as_mut_ptr(), s) };
            }
            out
        }

        /// See `super::scores`.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(super) unsafe fn scores<T: Element>(
            q: &[f32],
            d: usize,
            k: &[T],
            ks: usize,
            nk: usize,
            s: &mut [f32],
            s_rs: usize,
        ) {
            let nr = q.len() / d;
            assert!(nk == 0 || k.len() >= (nk - 1) * ks + d);
            let d8 = d / 8 * 8;
            let tail = |r: usize, j: usize| -> f32 {
                (d8..d)
                    .map(|c| q[r * d + c] * k[j * ks + c].to_f32())
                    .sum::<f32>()
            };
            let qp = |r: usize| q[r * d..].as_ptr();
            // the first row pair asks for the K rows `ahead_keys` on
            let ahead_k = ahead_keys::<T>(d) * ks;
            let ahead = |r: usize| if r == 0 { ahead_k } else { 0 };
            // keys outer, rows inner: the four K rows (2 KiB at d = 128, f32) stay in L1
            // while every row meets them, so K is read from memory once per step
            let mut j = 0;
            while j < nk {
                let kn = (nk - j).min(4);
                // past the last key, repeat it: its sums are computed and dropped
                let kp: [*const T; 4] =
                    std::array::from_fn(|t| k[(j + t.min(kn - 1)) * ks..].as_ptr());
                let mut r = 0;
                while r < nr {
                    if r + 2 <= nr {
                        // SAFETY: rows r, r+1 of q and the four K rows hold d ≥ d8 elements.
                        let out = unsafe { rows_x4::<T, 2>([qp(r), qp(r + 1)], kp, d8, ahead(r)) };
                        for (i, o) in out.iter().enumerate() {
                            for t in 0..kn {
                                s[(r + i) * s_rs + j + t] = o[t] + tail(r + i, j + t);
                            }
                        }
                        r += 2;
                    } else {
                        // SAFETY: as above, one row.
                        let out = unsafe { rows_x4::<T, 1>([qp(r)], kp, d8, ahead(r)) };
                        for t in 0..kn {
                            s[r * s_rs + j + t] = out[0][t] + tail(r, j + t);
                        }
                        r += 1;
                    }
                }
                j += 4;
            }
        }

        /// How far ahead of the rows being read the K and V lines are asked for, in bytes
        /// of rows consumed (64 keys of f32 at head_dim 128, 128 of f16).
        ///
        /// The prefetches go to L2 (`T1`), not L1: a `T0` prefetch holds one of the few
        /// L1 miss buffers until its line arrives, and with them one core kept too few
        /// lines in flight to cover DRAM latency — decode read 7–8 GB/s per core here
        /// while a plain streaming sum reads 25. Through L2 (which tracks many more
        /// misses) the f32 decode at a 32k cache went from 7.5 to 14–16 GB/s on one
        /// core and from 13–15 to 20–29 GB/s on two; the distance mattered little
        /// between 32 and 256 keys.
        const AHEAD_BYTES: usize = 32 << 10;

        /// Keys [`AHEAD_BYTES`] on, for rows of `dim` elements of `T`.
        fn ahead_keys<T>(dim: usize) -> usize {
            (AHEAD_BYTES / (dim * std::mem::size_of::<T>()).max(1)).max(1)
        }

        /// `R` output rows × `C` vectors of columns from `c`, over keys `j0..j1`: the
        /// R×C accumulators stay in registers across the keys, each V load feeding R
        /// FMAs.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn block<T: Element, const R: usize, const C: usize>(
            p: *const f32,
            p_rs: usize,
            v: *const T,
            vs: usize,
            o: *mut f32,
            dv: usize,
            c: usize,
            j0: usize,
            j1: usize,
        ) {
            // SAFETY (whole body): rows < R of o and p, keys j0..j1 of v and columns
            // c..c + 8C lie inside the slices (the caller's contract).
            unsafe {
                let mut acc = [[_mm256_setzero_ps(); C]; R];
                for r in 0..R {
                    for i in 0..C {
                        acc[r][i] = _mm256_loadu_ps(o.add(r * dv + c + 8 * i));
                    }
                }
                let ahead_v = ahead_keys::<T>(dv) * vs;
                for j in j0..j1 {
                    let vj = v.add(j * vs + c);
                    // the same columns a few key blocks on: one line per key, spread
                    // through the loop rather than a burst the fill buffers would drop
                    let ahead = vj.wrapping_add(ahead_v) as *const i8;
                    for off in (0..8 * C * std::mem::size_of::<T>()).step_by(64) {
                        _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(off));
                    }
                    let vv: [__m256; C] = std::array::from_fn(|i| load8(vj.add(8 * i)));
                    for r in 0..R {
                        let w = _mm256_broadcast_ss(&*p.add(r * p_rs + j));
                        for i in 0..C {
                            acc[r][i] = _mm256_fmadd_ps(w, vv[i], acc[r][i]);
                        }
                    }
                }
                for r in 0..R {
                    for i in 0..C {
                        _mm256_storeu_ps(o.add(r * dv + c + 8 * i), acc[r][i]);
                    }
                }
            }
        }

        /// Rows r..r+R over every column group of 8, widest blocks first.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn rows<T: Element, const R: usize, const C: usize>(
            p: *const f32,
            p_rs: usize,
            v: *const T,
            vs: usize,
            o: *mut f32,
            dv: usize,
            j0: usize,
            j1: usize,
        ) {
            let d8 = dv / 8 * 8;
            let mut c = 0;
            // SAFETY: c + 8C <= d8 (then c + 8 <= d8) keeps every block inside the rows.
            unsafe {
                while c + 8 * C <= d8 {
                    block::<T, R, C>(p, p_rs, v, vs, o, dv, c, j0, j1);
                    c += 8 * C;
                }
                while c + 8 <= d8 {
                    block::<T, R, 1>(p, p_rs, v, vs, o, dv, c, j0, j1);
                    c += 8;
                }
            }
        }

        /// See `super::accumulate`.
        #[target_feature(enable = "avx2,fma,f16c")]
        #[allow(clippy::too_many_arguments)]
        pub(super) unsafe fn accumulate<T: Element>(
            p: &[f32],
            p_rs: usize,
            nr: usize,
            nk: usize,
            v: &[T],
            vs: usize,
            o: &mut [f32],
            dv: usize,
        ) {
            assert!(nr == 0 || (p.len() >= (nr - 1) * p_rs + nk && o.len() >= nr * dv));
            assert!(nk == 0 || v.len() >= (nk - 1) * vs + dv);
            // keys in blocks of 16 (8 KiB of f32 V at dv = 128, in L1 across the column
            // blocks); eight accumulators per block: 4 rows × 2 vectors, 2 × 4 or 1 × 8
            const KEY_BLOCK: usize = 16;
            let (pp, vp, op) = (p.as_ptr(), v.as_ptr(), o.as_mut_ptr());
            let mut j0 = 0;
            while j0 < nk {
                let j1 = (j0 + KEY_BLOCK).min(nk);
                let mut r = 0;
                // SAFETY: the asserts above bound rows < nr, keys < nk and columns < dv.
                unsafe {
                    while r < nr {
                        let (pr, or) = (pp.add(r * p_rs), op.add(r * dv));
                        let n = match nr - r {
                            1 => {
                                rows::<T, 1, 8>(pr, p_rs, vp, vs, or, dv, j0, j1);
                                1
                            }
                            2 | 3 => {
                                rows::<T, 2, 4>(pr, p_rs, vp, vs, or, dv, j0, j1);
                                2
                            }
                            _ => {
                                rows::<T, 4, 2>(pr, p_rs, vp, vs, or, dv, j0, j1);
                                4
                            }
                        };
                        r += n;
                    }
                }
                j0 = j1;
            }
            // the columns past the last multiple of 8
            for c in dv / 8 * 8..dv {
                for r in 0..nr {
                    let mut x = o[r * dv + c];
                    for j in 0..nk {
                        x += p[r * p_rs + j] * v[j * vs + c].to_f32();
                    }
                    o[r * dv + c] = x;
                }
            }
        }
    }

    /// The same products without AVX2: loops over f32 tiles that LLVM vectorises for
    /// the portable target (SSE2 on x86_64, NEON on aarch64).
    mod portable {
        #[inline(always)]
        fn lanes(x: &[f32], body: usize) -> std::slice::ChunksExact<'_, f32> {
            x[..body].chunks_exact(8)
        }

        #[inline(always)]
        fn hsum(a: &[f32; 8]) -> f32 {
            ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
        }

        pub(super) fn scores(
            q: &[f32],
            d: usize,
            k: &[f32],
            ks: usize,
            nk: usize,
            s: &mut [f32],
            s_rs: usize,
        ) {
            let nr = q.len() / d;
            let body = d / 8 * 8;
            for j in 0..nk {
                let kj = &k[j * ks..j * ks + d];
                for r in 0..nr {
                    let qr = &q[r * d..(r + 1) * d];
                    let mut a = [0f32; 8];
                    for (x, y) in lanes(qr, body).zip(lanes(kj, body)) {
                        for t in 0..8 {
                            a[t] += x[t] * y[t];
                        }
                    }
                    let mut v = hsum(&a);
                    for c in body..d {
                        v += qr[c] * kj[c];
                    }
                    s[r * s_rs + j] = v;
                }
            }
        }

        #[allow(clippy::too_many_arguments)]
        pub(super) fn accumulate(
            p: &[f32],
            p_rs: usize,
            nr: usize,
            nk: usize,
            v: &[f32],
            vs: usize,
            o: &mut [f32],
            dv: usize,
        ) {
            for j in 0..nk {
                let vj = &v[j * vs..j * vs + dv];
                for r in 0..nr {
                    let w = p[r * p_rs + j];
                    for (x, &a) in o[r * dv..(r + 1) * dv].iter_mut().zip(vj) {
                        *x += w * a;
                    }
                }
            }
        }
    }
}
