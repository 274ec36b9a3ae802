//! A long run of random ops, shapes and dtypes through the public API, printing the
//! process's resident memory and the device's counters as it goes: memory must plateau
//! (pipelines come from options, dtypes and size buckets, never exact shapes, and the
//! pipeline cache is bounded).
//!
//! ```text
//! cargo run --release --example varied_calls -- 200000 10000   # calls, report every
//! ```
//!
//! Each report line: calls so far, RSS in MiB, executable mappings (JIT code on a
//! software adapter), pipelines built, live, evicted, idle pool bytes, seconds.

use openkern::{ops, DType, Device, Tensor};
use std::time::Instant;

/// Resident set in MiB and the count of executable anonymous mappings (Linux).
fn memory() -> (u64, usize) {
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let jit = std::fs::read_to_string("/proc/self/maps")
        .map(|m| {
            m.lines()
                .filter(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() == 5 && f[1].contains('x')
                })
                .count()
        })
        .unwrap_or(0);
    (rss / 1024, jit)
}

/// A small deterministic generator (xorshift), so runs repeat.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn main() -> openkern::Result<()> {
    let mut args = std::env::args().skip(1);
    let calls: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let every: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let device = Device::new()?;
    println!("device: {} ({})", device.info().name, device.info().backend);
    println!("calls rss_mib jit_maps built live evicted pool_idle_bytes seconds");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let start = Instant::now();
    let report = |done: usize| {
        let (rss, jit) = memory();
        let s = device.stats();
        println!(
            "{done} {rss} {jit} {} {} {} {} {:.1}",
            s.pipelines_built,
            s.live_pipelines,
            s.pipeline_evictions,
            s.pool_idle_bytes,
            start.elapsed().as_secs_f64()
        );
    };
    report(0);
    let dtypes = [DType::F32, DType::F16, DType::BF16];
    for call in 1..=calls {
        let dtype = dtypes[rng.below(3)];
        let rows = 1 + rng.below(8);
        let long = rng.below(10) == 0;
        let n = 1 + rng.below(if long { 5000 } else { 300 });
        let values: Vec<f32> = (0..rows * n)
            .map(|i| ((i * 7 % 23) as f32 - 11.0) / 8.0)
            .collect();
        let x = Tensor::from_f32(&device, &values, &[rows, n], dtype)?;
        let w = Tensor::from_f32(&device, &vec![1.0; n], &[n], dtype)?;
        let y = match rng.below(14) {
            0 => ops::softmax(&x)?,
            1 => ops::log_softmax(&x)?,
            2 => ops::softmax_with(
                &x,
                &ops::SoftmaxOptions {
                    causal: true,
                    ..Default::default()
                },
            )?,
            3 => ops::rms_norm(&x, &w, 1e-5)?,
            4 => ops::layer_norm(&x, &w, &w, 1e-5)?,
            5 => ops::add(&x, &w)?,
            6 => ops::mul(&x, &x)?,
            7 => ops::sum(&x)?,
            8 => ops::max(&x)?,
            9 => ops::gelu(&x)?,
            10 => ops::silu(&x)?,
            11 => ops::exp(&x)?,
            12 => ops::transpose(&x, 0, 1)?,
            _ => {
                let k = 1 + rng.below(64);
                let b = Tensor::from_f32(&device, &vec![0.5; n * k], &[n, k], dtype)?;
                ops::matmul(&x, &b)?
            }
        };
        if call % 64 == 0 {
            // a read now and then, as a program would
            y.cast(DType::F32)?.to_vec::<f32>()?;
        }
        if call % every == 0 {
            device.sync()?;
            report(call);
        }
    }
    Ok(())
}
