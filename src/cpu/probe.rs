//! The CPU device's limits: multithreaded copy bandwidth and FMA throughput.

use crate::gpu::probe::ProbeResult;
use crate::gpu::timing::TimingSource;
use rayon::prelude::*;
use std::time::Instant;

/// Parallel memcpy of 256 MiB, counting bytes read plus written; best of five.
pub fn copy_bandwidth() -> ProbeResult {
    let n = 64usize << 20; // f32 elements = 256 MiB
    let src = vec![1.0f32; n];
    let mut dst = vec![0.0f32; n];
    let chunk = n / rayon::current_num_threads().max(1) / 4 + 1;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        dst.par_chunks_mut(chunk)
            .zip(src.par_chunks(chunk))
            .for_each(|(d, s)| d.copy_from_slice(s));
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&dst);
    let work = 2.0 * (n * 4) as f64;
    ProbeResult {
        per_second: work / best,
        work,
        seconds: best,
        source: TimingSource::WallClock,
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop_avx2(iters: usize) -> f32 {
    use std::arch::x86_64::*;
    let m = _mm256_set1_ps(0.9999);
    let c = _mm256_set1_ps(1e-4);
    let mut acc = [_mm256_set1_ps(0.5); 10];
    for (k, a) in acc.iter_mut().enumerate() {
        *a = _mm256_set1_ps(0.5 + k as f32 * 0.01);
    }
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, m, c);
        }
    }
    let mut out = [0f32; 8];
    let mut s = _mm256_setzero_ps();
    for a in acc {
        s = _mm256_add_ps(s, a);
    }
    _mm256_storeu_ps(out.as_mut_ptr(), s);
    out.iter().sum()
}

fn fma_loop_scalar(iters: usize) -> f32 {
    let mut acc = [0.5f32; 8];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = a.mul_add(0.9999, 1e-4);
        }
    }
    acc.iter().sum()
}

/// f32 FMA throughput over all threads (FLOP/s, FMA = 2), AVX2+FMA where present.
pub fn fma_throughput() -> ProbeResult {
    let threads = rayon::current_num_threads().max(1);
    let iters = 20_000_000usize;
    #[cfg(target_arch = "x86_64")]
    let (lanes, simd) = if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        (80.0, true)
    } else {
        (8.0, false)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let (lanes, simd) = (8.0, false);
    let run = || {
        (0..threads)
            .into_par_iter()
            .map(|_| {
                #[cfg(target_arch = "x86_64")]
                if simd {
                    // SAFETY: guarded by the runtime feature check above.
                    return unsafe { fma_loop_avx2(iters) };
                }
                let _ = simd;
                fma_loop_scalar(iters / 8)
            })
            .sum::<f32>()
    };
    std::hint::black_box(run());
    let t = Instant::now();
    std::hint::black_box(run());
    let seconds = t.elapsed().as_secs_f64();
    let per_thread_iters = if simd { iters } else { iters / 8 };
    let work = threads as f64 * per_thread_iters as f64 * lanes * 2.0;
    ProbeResult {
        per_second: work / seconds,
        work,
        seconds,
        source: TimingSource::WallClock,
    }
}
