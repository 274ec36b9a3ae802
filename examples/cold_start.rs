//! Time to the first result in a fresh process: open the default device, upload two
//! matrices, run a matmul and a softmax, read the result back. Run it twice: the second
//! run finds the driver's compiled pipelines in the on-disk pipeline cache (Vulkan; see
//! `openkern::gpu::PIPELINE_DISK_CACHE_ENV` to turn it off).
//!
//! ```text
//! cargo run --release --example cold_start            # default device (GPU, else CPU)
//! OPENKERN_DEVICE=cpu cargo run --release --example cold_start
//! OPENKERN_PIPELINE_CACHE=0 cargo run --release --example cold_start
//! ```
//!
//! Prints one line: milliseconds to open the device, to the first result, and in total
//! since `main` began, plus the pipelines the run built.

use openkern::{ops, Device, Tensor};
use std::time::Instant;

fn main() -> openkern::Result<()> {
    let start = Instant::now();
    let device = Device::new()?;
    let opened = start.elapsed();
    let (m, k, n) = (64, 256, 128);
    let a: Vec<f32> = (0..m * k).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect();
    let b: Vec<f32> = (0..k * n).map(|i| ((i % 13) as f32 - 6.0) / 16.0).collect();
    let a = Tensor::from_slice(&device, &a, &[m, k])?;
    let b = Tensor::from_slice(&device, &b, &[k, n])?;
    let t = Instant::now();
    let probs = ops::softmax(&ops::matmul(&a, &b)?)?.to_vec::<f32>()?;
    let first = t.elapsed();
    let row_sum: f32 = probs[..n].iter().sum();
    assert!(
        (row_sum - 1.0).abs() < 1e-3,
        "softmax row sums to {row_sum}"
    );
    let stats = device.stats();
    println!(
        "{} ({}): open {:.1} ms, first result {:.1} ms, total {:.1} ms, pipelines built {}",
        device.info().name,
        device.info().backend,
        opened.as_secs_f64() * 1e3,
        first.as_secs_f64() * 1e3,
        start.elapsed().as_secs_f64() * 1e3,
        stats.pipelines_built
    );
    Ok(())
}
