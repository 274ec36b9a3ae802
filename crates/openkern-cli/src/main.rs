//! `openkern`: adapter info, the benchmark suite, and a self-check.

mod bench;
mod check;
mod info;

use clap::{Parser, Subcommand};
use openkern::{Device, DeviceSelector};

#[derive(Parser)]
#[command(
    name = "openkern",
    version,
    about = "Portable GPU tensor kernels: info, benchmarks, self-check"
)]
struct Cli {
    /// Device to use: `default`, `cpu`, or an adapter index from `openkern info`.
    #[arg(long, short, global = true, default_value = "default")]
    device: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every adapter and the CPU device with their features and limits.
    Info,
    /// Run the benchmark suite on one device: limit probes, then kernels, each as a
    /// fraction of the limit measured in the same run.
    Bench(bench::BenchArgs),
    /// Run every op family once against the CPU reference on small odd shapes, on every
    /// adapter (or the `--device` given); exits non-zero when any op fails.
    Check,
    /// Print the ratio of each row of NEW.json to the same row of OLD.json (files from
    /// `bench --json` or a peer script in benches/peers/).
    Compare {
        /// The earlier run, or the peer.
        old: std::path::PathBuf,
        /// The run to judge.
        new: std::path::PathBuf,
        /// Ratio below which a row is marked as a regression.
        #[arg(long, default_value_t = 0.9)]
        threshold: f64,
    },
}

fn open(selector: &str) -> openkern::Result<Device> {
    match selector {
        "default" => Device::new(),
        "cpu" => Ok(Device::cpu()),
        n => match n.parse::<usize>() {
            Ok(i) => Device::open(DeviceSelector::Adapter(i)),
            Err(_) => Err(openkern::Error::NoAdapter {
                reason: format!("--device {n:?} is not `default`, `cpu` or an adapter index"),
            }),
        },
    }
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info::run(),
        Command::Bench(args) => open(&cli.device).and_then(|d| bench::run(&d, &args)),
        Command::Check => check::run_all(&cli.device),
        Command::Compare {
            old,
            new,
            threshold,
        } => bench::report::read_json(&old).and_then(|o| {
            let n = bench::report::read_json(&new)?;
            bench::report::print_comparison(&o, &n, threshold);
            Ok(())
        }),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
