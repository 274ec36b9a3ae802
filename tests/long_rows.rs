//! Long reductions on every backend against an f64 reference: rows around and past 2^24
//! elements for every row op (softmax, log-softmax, the norms) and every reduction, a
//! matmul with K = 2^17 and attention over 2^14 keys.
//!
//! lavapipe ends all loops of a shader invocation once 65,535 iterations have run in
//! total (Mesa's LP_MAX_TGSI_LOOP_ITERATIONS), silently: a row walked one word per
//! iteration by 256 lanes stopped short at about 2^24 elements, leaving the row's end
//! unread and unwritten (see `gpu::driver_quirks`). The default run checks 2^24 + 1 in f32 (and 2^25 for the
//! reductions, whose single pass reached the count only there);
//! `OPENKERN_TEST_LARGE=1` adds 2^24 − 1, 2^24 and 2^25 and every dtype.
//!
//! The inputs are small integers (exact in every dtype and in f32 sums) with the row's
//! maximum in its very last element, so an unvisited tail changes every result.

mod common;
use common::*;
use openkern::{ops, DType, Device, Tensor};

const P24: usize = 1 << 24;

fn lengths() -> Vec<usize> {
    if large() {
        vec![P24 - 1, P24, P24 + 1, 1 << 25]
    } else {
        vec![P24 + 1]
    }
}

fn dtypes() -> Vec<DType> {
    if large() {
        vec![DType::F32, DType::F16, DType::BF16]
    } else {
        vec![DType::F32]
    }
}

/// Small integers in [-3, 3] with a 4 in the last element: the row's unique maximum.
fn row(n: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n).map(|j| ((j * 5) % 7) as f32 - 3.0).collect();
    v[n - 1] = 4.0;
    v
}

fn input(device: &Device, x: &[f32], dtype: DType) -> Tensor {
    Tensor::from_slice(device, x, &[1, x.len()])
        .and_then(|t| t.cast(dtype))
        .unwrap()
}

fn param(device: &Device, x: &[f32], dtype: DType) -> Tensor {
    Tensor::from_slice(device, x, &[x.len()])
        .and_then(|t| t.cast(dtype))
        .unwrap()
}

/// Checks every element; reports the first wrong index, which for a short walk is where
/// the kernel stopped.
fn check(what: &str, got: &[f32], want: impl Fn(usize) -> f64, atol: f64, rtol: f64) {
    for (j, &g) in got.iter().enumerate() {
        let w = want(j);
        let err = (g as f64 - w).abs();
        assert!(
            err <= atol + rtol * w.abs(),
            "{what}: element {j} of {} is {g}, want {w}",
            got.len()
        );
    }
}

fn reductions(device: &Device) {
    // one word per lane per iteration reached 65,535 iterations only past 2^25 elements
    let mut ns = lengths();
    if !ns.contains(&(1 << 25)) && !device.is_cpu() {
        ns.push(1 << 25);
    }
    for dtype in dtypes() {
        for &n in &ns {
            let x = row(n);
            let t = input(device, &x, dtype);
            let total: f64 = x.iter().map(|&v| v as f64).sum();
            let what = |op: &str| format!("{op} {dtype} n={n}");
            let sum = ops::sum(&t).unwrap().to_f32_vec().unwrap();
            check(&what("sum"), &sum, |_| total, 0.0, 0.0);
            let mean = ops::mean(&t).unwrap().to_f32_vec().unwrap();
            // 2^-25 is below f16's smallest subnormal: allow the output's rounding
            let (mean_atol, mean_rtol) = if dtype == DType::F32 {
                (1e-9, 1e-6)
            } else {
                (6e-8, 1e-2)
            };
            check(
                &what("mean"),
                &mean,
                |_| total / n as f64,
                mean_atol,
                mean_rtol,
            );
            let max = ops::max(&t).unwrap().to_f32_vec().unwrap();
            check(&what("max"), &max, |_| 4.0, 0.0, 0.0);
            let min = ops::min(&t).unwrap().to_f32_vec().unwrap();
            check(&what("min"), &min, |_| -3.0, 0.0, 0.0);
            let arg = ops::argmax(&t).unwrap().to_vec::<u32>().unwrap();
            assert_eq!(arg, vec![(n - 1) as u32], "{}", what("argmax"));
        }
    }
}
backend_tests!(reductions => reductions_cpu, reductions_gpu, reductions_gpu_nosubgroups);

fn softmaxes(device: &Device) {
    for dtype in dtypes() {
        // 16-bit outputs of ~1e-8 are subnormal or zero in f16; compare where representable
        let (atol, rtol) = match dtype {
            DType::F32 => (1e-12, 1e-4),
            _ => (1e-7, 1e-2),
        };
        for n in lengths() {
            let x = row(n);
            let t = input(device, &x, dtype);
            let m = 4.0f64;
            let z: f64 = x.iter().map(|&v| (v as f64 - m).exp()).sum();
            let y = ops::softmax(&t).unwrap().to_f32_vec().unwrap();
            check(
                &format!("softmax {dtype} n={n}"),
                &y,
                |j| (x[j] as f64 - m).exp() / z,
                atol,
                rtol,
            );
            let y = ops::log_softmax(&t).unwrap().to_f32_vec().unwrap();
            check(
                &format!("log_softmax {dtype} n={n}"),
                &y,
                |j| x[j] as f64 - m - z.ln(),
                1e-3,
                match dtype {
                    DType::F32 => 1e-5,
                    _ => 1e-2,
                },
            );
        }
    }
}
backend_tests!(softmaxes => softmaxes_cpu, softmaxes_gpu, softmaxes_gpu_nosubgroups);

fn norms(device: &Device) {
    for dtype in dtypes() {
        let rtol = match dtype {
            DType::F32 => 1e-4,
            _ => 1e-2,
        };
        for n in lengths() {
            let x = row(n);
            let t = input(device, &x, dtype);
            let ones = param(device, &vec![1.0; n], dtype);
            let zeros = param(device, &vec![0.0; n], dtype);
            let res = input(device, &vec![1.0; n], dtype);
            let ms: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n as f64;
            let rms = (ms + 1e-6).sqrt();
            let y = ops::rms_norm(&t, &ones, 1e-6)
                .unwrap()
                .to_f32_vec()
                .unwrap();
            check(
                &format!("rms_norm {dtype} n={n}"),
                &y,
                |j| x[j] as f64 / rms,
                1e-6,
                rtol,
            );
            let mean: f64 = x.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            let var: f64 = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
            let sd = (var + 1e-6).sqrt();
            let y = ops::layer_norm(&t, &ones, &zeros, 1e-6)
                .unwrap()
                .to_f32_vec()
                .unwrap();
            check(
                &format!("layer_norm {dtype} n={n}"),
                &y,
                |j| (x[j] as f64 - mean) / sd,
                1e-4,
                rtol,
            );
            // the fused residual form: h = x + 1 is written out too
            let out = ops::add_rms_norm(&t, &res, &ones, 1e-6).unwrap();
            let h = out.sum.to_f32_vec().unwrap();
            check(
                &format!("add_rms_norm sum {dtype} n={n}"),
                &h,
                |j| x[j] as f64 + 1.0,
                0.0,
                0.0,
            );
            let ms: f64 = x.iter().map(|&v| (v as f64 + 1.0).powi(2)).sum::<f64>() / n as f64;
            let rms = (ms + 1e-6).sqrt();
            let y = out.normed.to_f32_vec().unwrap();
            check(
                &format!("add_rms_norm {dtype} n={n}"),
                &y,
                |j| (x[j] as f64 + 1.0) / rms,
                1e-6,
                rtol,
            );
        }
    }
}
backend_tests!(norms => norms_cpu, norms_gpu, norms_gpu_nosubgroups);

/// A matmul whose K (131,072) kept each workgroup of the tiled kernel looping past
/// lavapipe's budget: wrong by 20× before K was split on that driver.
fn long_k_matmul(device: &Device) {
    let (m, k, n) = (33, 1 << 17, 17);
    let a = random(m * k, 1);
    let b = random(k * n, 2);
    let ta = Tensor::from_slice(device, &a, &[m, k]).unwrap();
    let tb = Tensor::from_slice(device, &b, &[k, n]).unwrap();
    let got = ops::matmul(&ta, &tb).unwrap().to_f32_vec().unwrap();
    let mut want = vec![0f64; m * n];
    for i in 0..m {
        for p in 0..k {
            let av = a[i * k + p] as f64;
            for j in 0..n {
                want[i * n + j] += av * b[p * n + j] as f64;
            }
        }
    }
    // sums of 2^17 products of values in ±0.5: |sum| ~ 50; f32 accumulation error ~1e-3
    assert_close(&format!("matmul {m}x{k}x{n}"), &got, &want, 5e-3, 1e-4);
}
backend_tests!(long_k_matmul => long_k_matmul_cpu, long_k_matmul_gpu);

/// Attention over 16,384 keys (head dim 128): each prefill workgroup walked every key
/// and ran out of lavapipe's loop budget (errors of 5e-3 on outputs of ~2e-3).
fn long_kv_attention(device: &Device) {
    let (q_len, kv, d) = (5, 1 << 14, 128);
    let q = random(q_len * d, 3);
    let k = random(kv * d, 4);
    let v = random(kv * d, 5);
    let t = |x: &[f32], len: usize| Tensor::from_slice(device, x, &[1, 1, len, d]).unwrap();
    let opts = ops::AttentionOptions::default();
    let got = ops::attention(&t(&q, q_len), &t(&k, kv), &t(&v, kv), &opts)
        .unwrap()
        .to_f32_vec()
        .unwrap();
    let scale = 1.0 / (d as f64).sqrt();
    let mut want = vec![0f64; q_len * d];
    for i in 0..q_len {
        let s: Vec<f64> = (0..kv)
            .map(|j| {
                (0..d)
                    .map(|e| q[i * d + e] as f64 * k[j * d + e] as f64)
                    .sum::<f64>()
                    * scale
            })
            .collect();
        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
        for (j, sj) in s.iter().enumerate() {
            let p = (sj - m).exp() / z;
            for e in 0..d {
                want[i * d + e] += p * v[j * d + e] as f64;
            }
        }
    }
    assert_close(
        &format!("attention q {q_len} kv {kv} d {d}"),
        &got,
        &want,
        1e-5,
        1e-3,
    );
}
backend_tests!(long_kv_attention => long_kv_attention_cpu, long_kv_attention_gpu);
