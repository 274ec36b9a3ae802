//! CPU twin of the matmul kernels, through the `gemm` crate (AVX2/AVX-512/NEON
//! microkernels, multithreaded on rayon). 16-bit inputs are widened to f32 first, so
//! accumulation is f32 as on the GPU; bias and activation run on the f32 result.

use super::CpuStorage;
use crate::ops::matmul::{Activation, MatmulPlan};
use gemm::Parallelism;
use rayon::prelude::*;

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
    a: &CpuStorage,
    b: &CpuStorage,
    bias: Option<&CpuStorage>,
) -> CpuStorage {
    let (m, n) = (plan.m, plan.n);
    let a = a.to_f32();
    let b = b.to_f32();
    let batch = plan.batch();
    let mut out = vec![0f32; batch * m * n];
    if m * n > 0 {
        let a_off = batch_offsets(&plan.batch_shape, &plan.a_batch_strides);
        let b_off = batch_offsets(&plan.batch_shape, &plan.b_batch_strides);
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
    if bias.is_some() || plan.activation != Activation::None {
        let bias = bias.map(|b| b.to_f32());
        let act = plan.activation;
        out.par_chunks_mut(n.max(1))
            .with_min_len((super::PARALLEL_MIN / n.max(1)).max(1))
            .for_each(|row| {
                for (j, v) in row.iter_mut().enumerate() {
                    let x = *v + bias.as_ref().map_or(0.0, |b| b[j]);
                    *v = act.apply(x);
                }
            });
    }
    CpuStorage::from_f32(plan.out_dtype, out)
}
