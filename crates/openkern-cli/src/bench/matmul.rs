//! Benchmarks of the matmul family: square GEMMs (GFLOP/s against the FMA probe), the
//! naive kernel for the tiled kernel's speed-up, the LLM shapes in the linear layout
//! (M ∈ {1, 16, 512}), and the M = 1 GEMVs as bytes/s against the copy probe. On the CPU
//! device numpy's `a @ b` (OpenBLAS) is timed in the same run as the peer.

use super::{BenchArgs, Bound, Row};
use openkern::ops::{self, MatmulKernel, MatmulOptions};
use openkern::{DType, Device, DeviceType, Error, Tensor};

fn data(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i + seed) * 7919) % 2001) as f32 * 1e-3 - 1.0)
        .collect()
}

/// Seconds per run of `f`, timed by the device over enough iterations for ~0.3 s
/// (at least 2; `quick`: 2).
fn time(
    device: &Device,
    quick: bool,
    mut f: impl FnMut() -> openkern::Result<()>,
) -> openkern::Result<(f64, openkern::TimingSource)> {
    f()?; // pipeline build, warm-up
    let probe = device.time(1, &mut f)?;
    let iters = if quick {
        2
    } else {
        (0.3 / probe.seconds.max(1e-6)).clamp(2.0, 50.0) as usize
    };
    let t = device.time(iters, f)?;
    Ok((t.seconds, t.source))
}

/// numpy's `a @ b` in f32 (OpenBLAS on this machine), GFLOP/s; None without numpy.
/// Timed like openkern's rows: one warm-up, then the mean over a loop sized to ~0.3 s.
fn numpy_flops(m: usize, n: usize, k: usize, trans_b: bool) -> Option<f64> {
    let b_expr = if trans_b {
        format!("np.random.rand({n}, {k}).astype(np.float32).T")
    } else {
        format!("np.random.rand({k}, {n}).astype(np.float32)")
    };
    let script = format!(
        "import numpy as np, time\n\
         a = np.random.rand({m}, {k}).astype(np.float32)\n\
         b = {b_expr}\n\
         a @ b\n\
         t = time.perf_counter(); a @ b; once = time.perf_counter() - t\n\
         iters = max(2, min(50, int(0.3 / max(once, 1e-6))))\n\
         t = time.perf_counter()\n\
         for _ in range(iters): a @ b\n\
         print((time.perf_counter() - t) / iters)\n"
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .ok()?;
    let secs: f64 = String::from_utf8(out.stdout).ok()?.trim().parse().ok()?;
    Some(2.0 * (m * n * k) as f64 / secs)
}

pub fn rows(device: &Device, args: &BenchArgs) -> openkern::Result<Vec<Row>> {
    if openkern::autotune::needs_tuning(device) {
        eprintln!("tuning matmul tile configurations for this adapter (once; cached) ...");
        for r in openkern::autotune::tune_matmul(device)? {
            let tried: Vec<String> = r
                .tried
                .iter()
                .map(|(t, gf)| format!("{t} {gf:.1}"))
                .collect();
            eprintln!(
                "  {} {:?} {:?}: best {}  [{}]",
                r.dtype,
                r.class,
                r.shape,
                r.best,
                tried.join(", ")
            );
        }
    }
    let kind = device.info().device_type;
    let software = kind == DeviceType::SoftwareGpu;
    let cpu = device.is_cpu();
    let squares: Vec<usize> = match (args.quick, software) {
        (true, _) => vec![256],
        (false, true) => vec![256, 512, 1024],
        (false, false) => vec![256, 512, 1024, 2048, 4096],
    };
    let mut rows = Vec::new();
    let mut push = |case: String, dtype: DType, seconds: f64, work: f64, bound, source, peer| {
        rows.push(Row {
            family: "matmul",
            case,
            dtype: dtype.name(),
            seconds,
            work,
            bound,
            source,
            peer,
        })
    };

    // The naive kernel at 1024³ (256³ quick), the baseline of the tiled kernel's ratio.
    let naive_n = if args.quick { 256 } else { 1024 };
    let mut naive_rate = None;
    if !cpu {
        let a = Tensor::from_f32(
            device,
            &data(naive_n * naive_n, 1),
            &[naive_n, naive_n],
            DType::F32,
        )?;
        let opts = MatmulOptions {
            kernel: MatmulKernel::Naive,
            ..Default::default()
        };
        let (s, src) = time(device, true, || ops::matmul_with(&a, &a, &opts).map(drop))?;
        let flops = 2.0 * (naive_n as f64).powi(3);
        naive_rate = Some(flops / s);
        push(
            format!("{naive_n}³ naive"),
            DType::F32,
            s,
            flops,
            Bound::Compute,
            src,
            None,
        );
        // The tiled kernel forced, so its ratio is on the table whatever Auto picks.
        let opts = MatmulOptions {
            kernel: MatmulKernel::Tiled,
            ..Default::default()
        };
        let what = ops::matmul::describe(&a, &a, &opts)?;
        let (s, src) = time(device, args.quick, || {
            ops::matmul_with(&a, &a, &opts).map(drop)
        })?;
        push(
            format!("{naive_n}³ {what} (forced)"),
            DType::F32,
            s,
            flops,
            Bound::Compute,
            src,
            naive_rate.map(|p| ("naive", p)),
        );
    }

    for &n in &squares {
        for dtype in [DType::F32, DType::F16] {
            let a = Tensor::from_f32(device, &data(n * n, 1), &[n, n], dtype)?;
            let b = Tensor::from_f32(device, &data(n * n, 2), &[n, n], dtype)?;
            let opts = MatmulOptions::default();
            let what = ops::matmul::describe(&a, &b, &opts)?;
            let (s, src) = time(device, args.quick, || ops::matmul(&a, &b).map(drop))?;
            let flops = 2.0 * (n as f64).powi(3);
            let peer = if cpu && dtype == DType::F32 {
                numpy_flops(n, n, n, false).map(|p| ("numpy", p))
            } else if n == naive_n && dtype == DType::F32 {
                naive_rate.map(|p| ("naive", p))
            } else {
                None
            };
            push(
                format!("{n}³ {what}"),
                dtype,
                s,
                flops,
                Bound::Compute,
                src,
                peer,
            );
        }
    }

    // LLM shapes, linear layout: x [M, K] · W[N, K]ᵀ.
    let ms: &[usize] = match (args.quick, software) {
        (true, _) => &[1],
        (false, true) => &[1, 16],
        (false, false) => &[1, 16, 512],
    };
    let nks: &[(usize, usize)] = if args.quick {
        &[(4096, 4096)]
    } else {
        &[(4096, 4096), (11008, 4096), (4096, 11008)]
    };
    for &(n, k) in nks {
        for dtype in [DType::F32, DType::F16] {
            let w = match Tensor::from_f32(device, &data(n * k, 3), &[n, k], dtype) {
                Ok(w) => w,
                Err(e @ Error::TooLarge { .. }) => {
                    eprintln!("skipping {n}x{k} {dtype}: {e}");
                    continue;
                }
                Err(e) => return Err(e),
            };
            for &m in ms {
                let x = Tensor::from_f32(device, &data(m * k, 4), &[m, k], dtype)?;
                let opts = MatmulOptions {
                    trans_b: true,
                    ..Default::default()
                };
                let what = ops::matmul::describe(&x, &w, &opts)?;
                let (s, src) = time(device, args.quick, || {
                    ops::linear(&x, &w, None, None).map(drop)
                })?;
                let flops = 2.0 * (m * n * k) as f64;
                let peer = if cpu && dtype == DType::F32 && !args.quick {
                    numpy_flops(m, n, k, true).map(|p| ("numpy", p))
                } else {
                    None
                };
                push(
                    format!("linear {m}x{n}x{k} {what}"),
                    dtype,
                    s,
                    flops,
                    Bound::Compute,
                    src,
                    peer,
                );
                if m == 1 {
                    // The GEMV reads W once: bytes against the copy probe.
                    let bytes = ((n * k + k + n) * dtype.size_in_bytes()) as f64;
                    push(
                        format!("gemv {n}x{k} {what}"),
                        dtype,
                        s,
                        bytes,
                        Bound::Memory,
                        src,
                        None,
                    );
                }
            }
        }
    }
    Ok(rows)
}
