//! `openkern bench`: the limit probes, then each kernel family, printed as one table.
//! Every kernel figure is also given as a fraction of the probe it is bound by (copy
//! bandwidth for memory-bound kernels, FMA throughput for compute-bound ones), measured
//! on the same device in the same run.

mod activation;
mod attention;
mod elementwise;
mod embedding;
mod layout;
mod matmul;
mod memory;
mod norm;
mod reduce;
mod rope;
mod softmax;

use openkern::gpu::probe::{copy_bandwidth, fma_throughput};
use openkern::{Device, TimingSource};

#[derive(clap::Args, Clone)]
pub struct BenchArgs {
    /// Only run families whose name contains this (e.g. `matmul`, `softmax`).
    #[arg(long)]
    pub filter: Option<String>,
    /// Small shapes and few iterations (seconds, for slow software adapters).
    #[arg(long)]
    pub quick: bool,
}

/// What bounds a kernel: the probe its figure is compared with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// Bytes per second, against the copy probe.
    Memory,
    /// FLOP per second, against the FMA probe.
    Compute,
}

/// One line of the table.
pub struct Row {
    pub family: &'static str,
    pub case: String,
    pub dtype: &'static str,
    pub seconds: f64,
    /// Bytes moved or FLOPs done per run.
    pub work: f64,
    pub bound: Bound,
    pub source: TimingSource,
    /// A peer measured in the same run, as (name, same unit per second).
    pub peer: Option<(&'static str, f64)>,
}

/// The limits measured at the start of the run.
pub struct Limits {
    pub copy_bytes_per_s: f64,
    pub fma_flops_per_s: f64,
}

fn print_row(r: &Row, limits: &Limits) {
    let rate = r.work / r.seconds;
    let (value, unit, frac) = match r.bound {
        Bound::Memory => (rate / 1e9, "GB/s", rate / limits.copy_bytes_per_s),
        Bound::Compute => (rate / 1e9, "GFLOP/s", rate / limits.fma_flops_per_s),
    };
    let peer = r
        .peer
        .map(|(name, p)| format!("{:.2}x {name}", rate / p))
        .unwrap_or_default();
    println!(
        "{:<12} {:<34} {:<5} {:>10.3} ms{} {:>10.1} {:<8} {:>6.1}% of {:<5} {}",
        r.family,
        r.case,
        r.dtype,
        r.seconds * 1e3,
        if r.source == TimingSource::WallClock {
            "*"
        } else {
            " "
        },
        value,
        unit,
        frac * 100.0,
        if r.bound == Bound::Memory {
            "copy"
        } else {
            "fma"
        },
        peer
    );
}

pub fn run(device: &Device, args: &BenchArgs) -> openkern::Result<()> {
    let info = device.info();
    println!(
        "openkern bench on {} ({}, {}, {})",
        info.name, info.backend, info.device_type, info.driver
    );
    let copy = copy_bandwidth(device)?;
    let fma = fma_throughput(device)?;
    println!(
        "probe copy bandwidth  {:>10.1} GB/s      ({})",
        copy.per_second / 1e9,
        copy.source
    );
    println!(
        "probe fma throughput  {:>10.1} GFLOP/s   ({})\n",
        fma.per_second / 1e9,
        fma.source
    );
    let limits = Limits {
        copy_bytes_per_s: copy.per_second,
        fma_flops_per_s: fma.per_second,
    };
    println!("times are GPU timestamps summed over a kernel's passes; * marks wall clock\n");
    println!(
        "{:<12} {:<34} {:<5} {:>14} {:>19} {:>15} peer",
        "family", "case", "dtype", "time", "rate", "of limit"
    );
    type Family = fn(&Device, &BenchArgs) -> openkern::Result<Vec<Row>>;
    let families: [(&str, Family); 10] = [
        ("elementwise", elementwise::rows),
        ("softmax", softmax::rows),
        ("norm", norm::rows),
        ("activation", activation::rows),
        ("rope", rope::rows),
        ("embedding", embedding::rows),
        ("reduce", reduce::rows),
        ("layout", layout::rows),
        ("matmul", matmul::rows),
        ("attention", attention::rows),
    ];
    for (name, family) in families {
        if args.filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        for row in family(device, args)? {
            print_row(&row, &limits);
        }
    }
    Ok(())
}
