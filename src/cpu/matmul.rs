//! CPU twin of the matmul kernels. Three paths: a streaming GEMV for a few rows against
//! weights read along K (`cpu/gemv.rs` where the CPU has AVX2, FMA and F16C; a portable
//! one for 16-bit weights elsewhere); where the CPU has AVX2 and FMA and A's rows are
//! contiguous, our own
//! GEMM on B packed into panels (cached for weights, see `cpu/packed.rs` and
//! `cpu/weights.rs`) with the bias and activation applied per output tile; otherwise
//! the `gemm` crate (AVX2/AVX-512/NEON microkernels, multithreaded on rayon). 16-bit
//! inputs are widened to f32 first, so accumulation is f32 as on the GPU.

use super::activation::epilogue;
use super::packed::HalfOut;
use super::CpuStorage;
use crate::dtype::DType;
use crate::ops::matmul::MatmulPlan;
use crate::tensor::CpuSlice;
use gemm::Parallelism;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;
use std::borrow::Cow;

/// Elements per chunk when widening 16-bit operands in parallel.
const WIDEN_CHUNK: usize = 1 << 16;

/// The operand as f32: borrowed when already f32, else widened on all threads with the
/// half crate's SIMD (F16C) conversion.
fn widen(s: CpuSlice<'_>) -> Cow<'_, [f32]> {
    fn par<T: Sync>(v: &[T], convert: impl Fn(&[T], &mut [f32]) + Sync) -> Vec<f32> {
        let mut out = vec![0f32; v.len()];
        if v.len() <= super::CONVERT_SERIAL_MAX {
            convert(v, &mut out);
            return out;
        }
        out.par_chunks_mut(WIDEN_CHUNK)
            .zip(v.par_chunks(WIDEN_CHUNK))
            .for_each(|(o, i)| convert(i, o));
        out
    }
    match s {
        CpuSlice::F32(v) => Cow::Borrowed(v),
        // up to CONVERT_SERIAL_MAX: one thread and no clearing pass
        CpuSlice::F16(v) => match (v.len() <= super::CONVERT_SERIAL_MAX)
            .then(|| super::math::widened_f16(bytemuck::cast_slice(v)))
            .flatten()
        {
            Some(w) => Cow::Owned(w),
            None => Cow::Owned(par(v, |i, o| i.convert_to_f32_slice(o))),
        },
        CpuSlice::BF16(v) => Cow::Owned(par(v, |i, o| i.convert_to_f32_slice(o))),
        #[allow(unreachable_patterns)] // storage kinds added later widen the plain way
        _ => s.to_f32(),
    }
}

/// Dot product with 16 independent partial sums, so the compiler can keep them in SIMD
/// registers (a single running f32 sum cannot be reordered, hence not vectorised).
fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (xc, yc) = (x.chunks_exact(16), y.chunks_exact(16));
    let tail: f32 = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in xc.zip(yc) {
        for l in 0..16 {
            acc[l] += a[l] * b[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Rows of A up to which weights read along K take the streaming GEMV path.
const GEMV_MAX_M: usize = 8;

/// Rows of A from which a second operand that is not a cached weight is packed per call
/// for the packed GEMM (packing reads and writes B once, worth it over enough rows).
const PACK_PER_CALL_MIN_M: usize = 32;

/// Small-M product with B read along K (`linear` weights, token decode), parallel over
/// output columns: each weight row streams through dot products with the M rows of A
/// once. 16-bit rows are widened in L1-sized pieces right before use, so the weights
/// are read once as 16-bit and never materialised as f32.
fn gemv_rows(
    plan: &MatmulPlan,
    a: &[f32],
    b: CpuSlice<'_>,
    a_off: &[usize],
    b_off: &[usize],
    out: &mut [f32],
) {
    let (m, n, k) = (plan.m, plan.n, plan.k);
    const PIECE: usize = 1024;
    out.par_chunks_mut(m * n).enumerate().for_each(|(bi, c)| {
        // Parallel over columns: column j's m sums land in t[j·m..], then transpose.
        let mut t = vec![0f32; n * m];
        t.par_chunks_mut(m)
            .enumerate()
            .with_min_len(16)
            .for_each(|(j, acc)| {
                let mut buf = [0f32; PIECE];
                let row = b_off[bi] + j * plan.sbn;
                let mut k0 = 0;
                while k0 < k {
                    let len = PIECE.min(k - k0);
                    let w: &[f32] = match b {
                        // the inlined F16C / shift loops of math::widen: half's slice
                        // conversion calls out per 8 elements (5x slower here)
                        CpuSlice::F16(v) => {
                            super::math::widen(&v[row + k0..row + k0 + len], &mut buf[..len]);
                            &buf[..len]
                        }
                        CpuSlice::BF16(v) => {
                            super::math::widen(&v[row + k0..row + k0 + len], &mut buf[..len]);
                            &buf[..len]
                        }
                        // f32 rows are read in place
                        CpuSlice::F32(v) => &v[row + k0..row + k0 + len],
                        #[allow(unreachable_patterns)]
                        _ => unreachable!("matmul refuses non-float dtypes before dispatch"),
                    };
                    for (i, acc) in acc.iter_mut().enumerate() {
                        let ar = a_off[bi] + i * plan.sam + k0 * plan.sak;
                        *acc += if plan.sak == 1 {
                            dot(&a[ar..ar + len], w)
                        } else {
                            w.iter()
                                .enumerate()
                                .map(|(p, y)| a[ar + p * plan.sak] * y)
                                .sum::<f32>()
                        };
                    }
                    k0 += len;
                }
            });
        for (j, col) in t.chunks(m).enumerate() {
            for (i, v) in col.iter().enumerate() {
                c[i * n + j] = *v;
            }
        }
    });
}

/// FLOPs per matrix below which a batch is spread over threads one matrix each rather
/// than each matrix over all threads (many small heads parallelise better that way).
const SMALL_GEMM_FLOPS: usize = 1 << 21;

/// Offsets of every batch matrix of an operand, from its broadcast batch strides.
fn batch_offsets(shape: &[usize], strides: &[usize]) -> Vec<usize> {
    let count: usize = shape.iter().product();
    (0..count)
        .map(|mut i| {
            let mut off = 0;
            for d in (0..shape.len()).rev() {
                off += (i % shape[d]) * strides[d];
                i /= shape[d];
            }
            off
        })
        .collect()
}

/// One f32 GEMM `c = a · b` on strided operands.
///
/// Safety of the inner call: every (m, k) / (k, n) index the strides produce lies inside
/// the slices, which `MatmulPlan` guarantees (strides come from the operands' shapes);
/// `c` is a distinct, exclusively borrowed m×n row-major block.
#[allow(clippy::too_many_arguments)]
fn gemm_f32(plan: &MatmulPlan, a: &[f32], b: &[f32], c: &mut [f32], par: Parallelism) {
    let (m, n, k) = (plan.m, plan.n, plan.k);
    debug_assert_eq!(c.len(), m * n);
    if k == 0 {
        c.fill(0.0);
        return;
    }
    debug_assert!(a.len() > (m - 1) * plan.sam + (k - 1) * plan.sak);
    debug_assert!(b.len() > (k - 1) * plan.sbk + (n - 1) * plan.sbn);
    // SAFETY: see the function docs; the gemm crate reads lhs/rhs only within
    // [0, (rows-1)·rs + (cols-1)·cs] and writes dst within m×n with the strides given.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            plan.sak as isize,
            plan.sam as isize,
            b.as_ptr(),
            plan.sbn as isize,
            plan.sbk as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// `a · b` (+ bias, activation) for a checked plan, in `plan.out_dtype`.
pub(crate) fn matmul(
    plan: &MatmulPlan,
    a: CpuSlice<'_>,
    b: CpuSlice<'_>,
    b_weight: Option<(
        &std::sync::Arc<crate::tensor::Storage>,
        std::ops::Range<usize>,
    )>,
    bias: Option<CpuSlice<'_>>,
) -> CpuStorage {
    let (m, n) = (plan.m, plan.n);
    let batch = plan.batch();
    // every path below writes each element (gemm with read_dst off, the GEMV's
    // transpose, k = 0's fill), so a pooled buffer's stale values never show
    let mut out = super::take::<f32>(batch * m * n);
    let a_off = batch_offsets(&plan.batch_shape, &plan.a_batch_strides);
    let b_off = batch_offsets(&plan.batch_shape, &plan.b_batch_strides);
    // 16-bit decode shapes stream the weights; f32 ones stay on the gemm crate, which
    // measured faster (20 vs 13.5 GB/s at 1×4096×4096 here).
    let small = m <= GEMV_MAX_M && plan.sbk == 1 && plan.k > 0 && !matches!(b, CpuSlice::F32(_));
    // the packed GEMM: A read in place (rows contiguous along K), one B for the whole
    // batch, packed once and cached where it is a weight (else packed per call, which
    // pays off only over enough rows). A weight whose panels would take over a quarter
    // of the cache (8192×8192 f32 and up) is likely to be evicted by its neighbours
    // and packed again every call, so with few rows it stays on the gemm crate.
    let panel_bytes = n.div_ceil(super::packed::NR) * super::packed::NR * plan.k * 4;
    let cacheable = b_weight.is_some() && panel_bytes <= super::weights::MAX_BYTES / 4;
    let packed = super::packed::available()
        && batch > 0
        && plan.sak == 1
        && b_off.iter().all(|&o| o == b_off[0])
        && (cacheable || m >= PACK_PER_CALL_MIN_M);
    // decode shapes against weights read along K: our AVX2 dot products on the weights
    // as stored (nothing packed or cached; a decode step is bound by the weight read)
    let own_gemv = m <= GEMV_MAX_M && plan.sbk == 1 && plan.sak == 1 && super::gemv::available();
    if m * n > 0 && own_gemv {
        let a = widen(a);
        for (i, c) in out.chunks_mut(m * n).enumerate() {
            super::gemv::gemv(
                m,
                n,
                plan.k,
                &a[a_off[i]..],
                plan.sam,
                b.skip(b_off[i]),
                plan.sbn,
                c,
            );
        }
    } else if m * n > 0 && small {
        let a = widen(a);
        gemv_rows(plan, &a, b, &a_off, &b_off, &mut out);
    } else if m * n > 0 && packed {
        // a small 16-bit A goes in as it is: each thread widens its own copy (see
        // `packed::gemm`); a larger one is widened here once, on all threads
        let in_place = matches!(a, CpuSlice::F16(_) | CpuSlice::BF16(_))
            && a.len() <= super::CONVERT_SERIAL_MAX;
        let wide = if in_place {
            Cow::Borrowed(&[][..])
        } else {
            widen(a)
        };
        let a_at = |i: usize| {
            if in_place {
                a.skip(a_off[i])
            } else {
                CpuSlice::F32(&wide[a_off[i]..])
            }
        };
        let layout = (plan.k, n, plan.sbk, plan.sbn);
        let b = match b_weight {
            Some((storage, range)) => super::weights::packed(storage, range, layout, || {
                super::packed::pack(b.skip(b_off[0]), plan.k, n, plan.sbk, plan.sbn)
            }),
            None => std::sync::Arc::new(super::packed::pack(
                b.skip(b_off[0]),
                plan.k,
                n,
                plan.sbk,
                plan.sbn,
            )),
        };
        let bias = bias.map(|b| b.to_f32());
        // a 16-bit output is rounded by the tasks, tile by tile, as they finish
        let mut out16 = match plan.out_dtype {
            DType::F16 => Some(CpuStorage::F16(super::take(out.len()))),
            DType::BF16 => Some(CpuStorage::BF16(super::take(out.len()))),
            _ => None,
        };
        for (i, c) in out.chunks_mut(m * n).enumerate() {
            let c16 = match &mut out16 {
                Some(CpuStorage::F16(h)) => Some(HalfOut::F16(&mut h[i * m * n..])),
                Some(CpuStorage::BF16(h)) => Some(HalfOut::BF16(&mut h[i * m * n..])),
                _ => None,
            };
            super::packed::gemm(
                m,
                a_at(i),
                plan.sam,
                &b,
                c,
                c16,
                bias.as_deref(),
                plan.activation,
            );
        }
        return match out16 {
            Some(narrowed) => {
                super::give(&mut out);
                narrowed
            }
            None => CpuStorage::from_f32(plan.out_dtype, out),
        };
    } else if m * n > 0 {
        let a = widen(a);
        // a 16-bit weight is widened once and reused (see cpu/weights.rs)
        let cached = match (b_weight, b) {
            (Some(key), CpuSlice::F16(_) | CpuSlice::BF16(_)) => {
                Some(super::weights::widened(key.0, key.1, || {
                    widen(b).into_owned()
                }))
            }
            _ => None,
        };
        let b = match &cached {
            Some(c) => Cow::Borrowed(c.as_slice()),
            None => widen(b),
        };
        let threads = rayon::current_num_threads();
        let per_matrix = 2 * m * n * plan.k;
        let one = |(i, c): (usize, &mut [f32]), par| {
            gemm_f32(plan, &a[a_off[i]..], &b[b_off[i]..], c, par)
        };
        if batch > 1 && per_matrix < SMALL_GEMM_FLOPS {
            out.par_chunks_mut(m * n)
                .enumerate()
                .for_each(|x| one(x, Parallelism::None));
        } else {
            let par = if per_matrix < SMALL_GEMM_FLOPS / 8 || threads == 1 {
                Parallelism::None
            } else {
                Parallelism::Rayon(threads)
            };
            out.chunks_mut(m * n).enumerate().for_each(|x| one(x, par));
        }
    }
    if bias.is_some() || plan.activation.is_some() {
        let bias = bias.map(|b| b.to_f32());
        let act = plan.activation;
        out.par_chunks_mut(n.max(1))
            .with_min_len((super::PARALLEL_MIN / n.max(1)).max(1))
            .for_each(|row| epilogue(row, bias.as_deref(), act));
    }
    CpuStorage::from_f32(plan.out_dtype, out)
}
