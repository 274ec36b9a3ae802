//! Criterion benchmarks of the memory-bound inference ops on the default device (set
//! `OPENKERN_DEVICE=cpu` for the CPU backend), in bytes moved per second: the minimal
//! read + write traffic of each op. The device is synced once after each timed batch,
//! not per iteration, so GPU figures include the stream's batching as an engine sees it.
//!
//! `cargo bench --bench ops -- softmax` runs one group.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use openkern::ops::{self, SoftmaxOptions};
use openkern::{DType, Device, Tensor};

fn device() -> Device {
    Device::new().expect("a device (the CPU backend at least)")
}

fn input(device: &Device, shape: &[usize], seed: usize) -> Tensor {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|i| ((i * 2_654_435_761 + seed * 97) % 4001) as f32 * 1e-3 - 2.0)
        .collect();
    Tensor::from_f32(device, &data, shape, DType::F32).expect("input tensor")
}

/// Runs `op` `iters` times, then syncs once.
fn timed(device: &Device, iters: u64, mut op: impl FnMut()) -> std::time::Duration {
    let start = std::time::Instant::now();
    for _ in 0..iters {
        op();
    }
    device.sync().expect("sync");
    start.elapsed()
}

fn memory_bound(c: &mut Criterion) {
    let device = device();
    let (m, n) = (1024, 4096);
    let bytes = (m * n * 4) as u64;
    let x = input(&device, &[m, n], 1);
    let r = input(&device, &[m, n], 2);
    let w = input(&device, &[n], 3);
    let b = input(&device, &[n], 4);

    let mut g = c.benchmark_group("softmax");
    g.throughput(Throughput::Bytes(2 * bytes));
    g.bench_function(BenchmarkId::new("softmax", format!("{m}x{n}")), |bn| {
        bn.iter_custom(|it| timed(&device, it, || drop(ops::softmax(&x).unwrap())))
    });
    let causal = SoftmaxOptions {
        scale: 0.125,
        causal: true,
        mask: None,
    };
    g.bench_function(BenchmarkId::new("causal", format!("{m}x{n}")), |bn| {
        bn.iter_custom(|it| {
            timed(&device, it, || {
                drop(ops::softmax_with(&x, &causal).unwrap())
            })
        })
    });
    let v = input(&device, &[64, 32000], 5);
    g.throughput(Throughput::Bytes(2 * 64 * 32000 * 4));
    g.bench_function(BenchmarkId::new("softmax", "64x32000"), |bn| {
        bn.iter_custom(|it| timed(&device, it, || drop(ops::softmax(&v).unwrap())))
    });
    g.finish();

    let mut g = c.benchmark_group("norm");
    g.throughput(Throughput::Bytes(2 * bytes));
    g.bench_function(BenchmarkId::new("rms_norm", format!("{m}x{n}")), |bn| {
        bn.iter_custom(|it| timed(&device, it, || drop(ops::rms_norm(&x, &w, 1e-6).unwrap())))
    });
    g.bench_function(BenchmarkId::new("layer_norm", format!("{m}x{n}")), |bn| {
        bn.iter_custom(|it| {
            timed(&device, it, || {
                drop(ops::layer_norm(&x, &w, &b, 1e-5).unwrap())
            })
        })
    });
    g.throughput(Throughput::Bytes(4 * bytes));
    g.bench_function(BenchmarkId::new("add_rms_norm", format!("{m}x{n}")), |bn| {
        bn.iter_custom(|it| {
            timed(&device, it, || {
                drop(ops::add_rms_norm(&x, &r, &w, 1e-6).unwrap())
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("activation");
    g.throughput(Throughput::Bytes(2 * bytes));
    g.bench_function(BenchmarkId::new("gelu", format!("{m}x{n}")), |bn| {
        bn.iter_custom(|it| timed(&device, it, || drop(ops::gelu(&x).unwrap())))
    });
    g.bench_function(BenchmarkId::new("silu", format!("{m}x{n}")), |bn| {
        bn.iter_custom(|it| timed(&device, it, || drop(ops::silu(&x).unwrap())))
    });
    g.throughput(Throughput::Bytes(3 * bytes));
    g.bench_function(BenchmarkId::new("swiglu", format!("{m}x{n}")), |bn| {
        bn.iter_custom(|it| timed(&device, it, || drop(ops::swiglu(&x, &r).unwrap())))
    });
    g.bench_function(BenchmarkId::new("add", format!("{m}x{n}")), |bn| {
        bn.iter_custom(|it| timed(&device, it, || drop(ops::add(&x, &r).unwrap())))
    });
    g.finish();

    let mut g = c.benchmark_group("rope");
    let q = input(&device, &[256, 32, 128], 6);
    g.throughput(Throughput::Bytes(2 * 256 * 32 * 128 * 4));
    g.bench_function(BenchmarkId::new("rope", "256x32x128"), |bn| {
        bn.iter_custom(|it| {
            timed(&device, it, || {
                drop(ops::rope(&q, &Default::default()).unwrap())
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("reduce");
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function(BenchmarkId::new("sum", format!("{m}x{n}")), |bn| {
        bn.iter_custom(|it| timed(&device, it, || drop(ops::sum(&x).unwrap())))
    });
    g.bench_function(BenchmarkId::new("argmax", format!("{m}x{n}")), |bn| {
        bn.iter_custom(|it| timed(&device, it, || drop(ops::argmax(&x).unwrap())))
    });
    g.finish();

    let mut g = c.benchmark_group("layout");
    g.throughput(Throughput::Bytes(2 * 256 * 32 * 128 * 4));
    g.bench_function(BenchmarkId::new("permute", "256x32x128 [1,0,2]"), |bn| {
        bn.iter_custom(|it| timed(&device, it, || drop(ops::permute(&q, &[1, 0, 2]).unwrap())))
    });
    g.finish();

    let mut g = c.benchmark_group("embedding");
    let table = input(&device, &[32000, 1024], 7);
    let ids: Vec<u32> = (0..512).map(|i| (i * 7919 % 32000) as u32).collect();
    let ids = Tensor::from_slice(&device, &ids, &[512]).unwrap();
    g.throughput(Throughput::Bytes(512 * 4 + 2 * 512 * 1024 * 4));
    g.bench_function(BenchmarkId::new("gather", "512 of 32000x1024"), |bn| {
        bn.iter_custom(|it| timed(&device, it, || drop(ops::embedding(&ids, &table).unwrap())))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(2));
    targets = memory_bound
}
criterion_main!(benches);
