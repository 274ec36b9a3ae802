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
        let (kt_rows, ks) = rows_f32(
            k,
            kb + kt * plan.k_strides[2],
            plan.k_strides[2],
            nk,
            d,
            &mut sc.k,
        );
        if nr <= SMALL_ROWS {
            small::scores(&sc.q, d, kt_rows, ks, nk, &mut sc.s, KEYS);
        } else {
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
            let (vt_rows, vs) = rows_f32(
                v,
                vb + kt * plan.v_strides[2],
                plan.v_strides[2],
                nk,
                dv,
                &mut sc.v,
            );
            if nr <= SMALL_ROWS {
                small::accumulate(&sc.s, KEYS, nr, nk, vt_rows, vs, &mut sc.o, dv);
                kt += nk;
                continue;
            }
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

/// Tile products for a few query rows, written so LLVM vectorises them: the scores as
/// dot products four keys at a time (eight-lane partial sums, one pass over each Q row
/// per four K rows), P·V as one axpy per (row, key). Compiled for AVX2+FMA where the CPU
/// has them (the portable build assumes only SSE2).
mod small {
    /// `s[r·s_rs + j] = q_r · k_j` for r < q.len()/d, j < nk (k rows at stride ks).
    pub(super) fn scores(
        q: &[f32],
        d: usize,
        k: &[f32],
        ks: usize,
        nk: usize,
        s: &mut [f32],
        s_rs: usize,
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn fast(
                q: &[f32],
                d: usize,
                k: &[f32],
                ks: usize,
                nk: usize,
                s: &mut [f32],
                s_rs: usize,
            ) {
                scores_body::<true>(q, d, k, ks, nk, s, s_rs)
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: AVX2 and FMA were detected on this CPU just above.
                return unsafe { fast(q, d, k, ks, nk, s, s_rs) };
            }
        }
        scores_body::<false>(q, d, k, ks, nk, s, s_rs)
    }

    #[inline(always)]
    fn fma<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
        if FMA {
            a.mul_add(b, c)
        } else {
            a * b + c
        }
    }

    #[inline(always)]
    fn lanes(x: &[f32], body: usize) -> std::slice::ChunksExact<'_, f32> {
        x[..body].chunks_exact(8)
    }

    #[inline(always)]
    fn hsum(a: &[f32; 8]) -> f32 {
        ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
    }

    #[inline(always)]
    fn scores_body<const FMA: bool>(
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
        // keys outer, query rows inner: four K rows (2 KiB at d = 128) stay in L1 while
        // every query row meets them, so a K tile is read from memory once, not once per
        // row (a decode step's 8 rows per kv head re-read 64 KiB tiles from L2 before)
        let mut j = 0;
        while j + 4 <= nk {
            let k0 = &k[j * ks..j * ks + d];
            let k1 = &k[(j + 1) * ks..(j + 1) * ks + d];
            let k2 = &k[(j + 2) * ks..(j + 2) * ks + d];
            let k3 = &k[(j + 3) * ks..(j + 3) * ks + d];
            for r in 0..nr {
                let qr = &q[r * d..(r + 1) * d];
                let (mut a0, mut a1, mut a2, mut a3) = ([0f32; 8], [0f32; 8], [0f32; 8], [0f32; 8]);
                for ((((x, y0), y1), y2), y3) in lanes(qr, body)
                    .zip(lanes(k0, body))
                    .zip(lanes(k1, body))
                    .zip(lanes(k2, body))
                    .zip(lanes(k3, body))
                {
                    for t in 0..8 {
                        a0[t] = fma::<FMA>(x[t], y0[t], a0[t]);
                        a1[t] = fma::<FMA>(x[t], y1[t], a1[t]);
                        a2[t] = fma::<FMA>(x[t], y2[t], a2[t]);
                        a3[t] = fma::<FMA>(x[t], y3[t], a3[t]);
                    }
                }
                let mut t4 = [hsum(&a0), hsum(&a1), hsum(&a2), hsum(&a3)];
                for c in body..d {
                    t4[0] += qr[c] * k0[c];
                    t4[1] += qr[c] * k1[c];
                    t4[2] += qr[c] * k2[c];
                    t4[3] += qr[c] * k3[c];
                }
                s[r * s_rs + j..r * s_rs + j + 4].copy_from_slice(&t4);
            }
            j += 4;
        }
        while j < nk {
            let kj = &k[j * ks..j * ks + d];
            for r in 0..nr {
                let qr = &q[r * d..(r + 1) * d];
                let mut a = [0f32; 8];
                for (x, y) in qr[..body].chunks_exact(8).zip(kj[..body].chunks_exact(8)) {
                    for t in 0..8 {
                        a[t] = fma::<FMA>(x[t], y[t], a[t]);
                    }
                }
                let mut v = hsum(&a);
                for c in body..d {
                    v += qr[c] * kj[c];
                }
                s[r * s_rs + j] = v;
            }
            j += 1;
        }
    }

    /// `o_r += Σ_j p[r·p_rs + j] · v_j` for r < nr, j < nk (v rows at stride vs, dv wide).
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
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn fast(
                p: &[f32],
                p_rs: usize,
                nr: usize,
                nk: usize,
                v: &[f32],
                vs: usize,
                o: &mut [f32],
                dv: usize,
            ) {
                accumulate_body::<true>(p, p_rs, nr, nk, v, vs, o, dv)
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: AVX2 and FMA were detected on this CPU just above.
                return unsafe { fast(p, p_rs, nr, nk, v, vs, o, dv) };
            }
        }
        accumulate_body::<false>(p, p_rs, nr, nk, v, vs, o, dv)
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn accumulate_body<const FMA: bool>(
        p: &[f32],
        p_rs: usize,
        nr: usize,
        nk: usize,
        v: &[f32],
        vs: usize,
        o: &mut [f32],
        dv: usize,
    ) {
        // keys outer, rows inner: two V rows stay in L1 while every output row takes
        // them (read once per tile, not once per row); two keys per pass over an output
        // row halve its loads and stores
        let mut j = 0;
        while j + 2 <= nk {
            let v0 = &v[j * vs..j * vs + dv];
            let v1 = &v[(j + 1) * vs..(j + 1) * vs + dv];
            for r in 0..nr {
                let (w0, w1) = (p[r * p_rs + j], p[r * p_rs + j + 1]);
                let orow = &mut o[r * dv..(r + 1) * dv];
                for ((x, &a), &b) in orow.iter_mut().zip(v0).zip(v1) {
                    *x = fma::<FMA>(w1, b, fma::<FMA>(w0, a, *x));
                }
            }
            j += 2;
        }
        if j < nk {
            let vj = &v[j * vs..j * vs + dv];
            for r in 0..nr {
                let w = p[r * p_rs + j];
                for (x, &a) in o[r * dv..(r + 1) * dv].iter_mut().zip(vj) {
                    *x = fma::<FMA>(w, a, *x);
                }
            }
        }
    }
}
