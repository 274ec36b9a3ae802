//! Criterion benches of matmul on the default device (`OPENKERN_DEVICE=cpu` for the CPU
//! backend): square GEMMs and the M = 1 decode GEMV, throughput in FLOP
//! (`Throughput::Elements(flops)`). Timing is wall clock around a batch of recorded
//! matmuls with one device sync after the loop, so submission overhead is amortised.
//! `openkern bench --filter matmul` gives GPU-timestamp figures and the probe fractions.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use openkern::ops;
use openkern::{DType, Device, DeviceType, Tensor};
use std::time::Instant;

fn data(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919) % 2001) as f32 * 1e-3 - 1.0)
        .collect()
}

fn bench(c: &mut Criterion) {
    let device = Device::new().expect("a device");
    let software = device.info().device_type == DeviceType::SoftwareGpu;
    let sizes: &[usize] = if software {
        &[256, 512]
    } else {
        &[256, 512, 1024, 2048]
    };
    let mut group = c.benchmark_group(format!("matmul {}", device.info().name));
    group.sample_size(10);
    for &n in sizes {
        for dtype in [DType::F32, DType::F16] {
            let a = Tensor::from_f32(&device, &data(n * n), &[n, n], dtype).unwrap();
            let b = Tensor::from_f32(&device, &data(n * n), &[n, n], dtype).unwrap();
            group.throughput(Throughput::Elements(2 * (n * n * n) as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("square {dtype}"), n),
                &n,
                |bch, _| {
                    bch.iter_custom(|iters| {
                        device.sync().unwrap();
                        let t = Instant::now();
                        for _ in 0..iters {
                            ops::matmul(&a, &b).unwrap();
                        }
                        device.sync().unwrap();
                        t.elapsed()
                    })
                },
            );
        }
    }
    // Token decode: x [1, 4096] · W[4096, 4096]ᵀ.
    let (n, k) = (4096, 4096);
    let w = Tensor::from_f32(&device, &data(n * k), &[n, k], DType::F16).unwrap();
    let x = Tensor::from_f32(&device, &data(k), &[1, k], DType::F16).unwrap();
    group.throughput(Throughput::Elements(2 * (n * k) as u64));
    group.bench_function("gemv f16 1x4096x4096", |bch| {
        bch.iter_custom(|iters| {
            device.sync().unwrap();
            let t = Instant::now();
            for _ in 0..iters {
                ops::linear(&x, &w, None, None).unwrap();
            }
            device.sync().unwrap();
            t.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
