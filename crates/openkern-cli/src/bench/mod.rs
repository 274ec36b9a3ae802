//! `openkern bench`: the limit probes, then each kernel family on the shapes of a 1B, 8B
//! and 70B-class model (prefill and decode) and a square GEMM sweep. Every figure is also
//! given as a fraction of the probe it is bound by (copy bandwidth for memory-bound
//! kernels, FMA throughput for compute-bound ones), measured on the same device in the
//! same run, and summarised per family as a geometric mean.
//!
//! `--json` writes the run in the format of `benches/README.md`, `--compare` sets it
//! beside an earlier run or a peer's, `--plot` draws the roofline.

mod activation;
mod attention;
mod burn;
mod elementwise;
mod embedding;
mod encoder;
mod llama;
mod matmul;
mod memory;
mod norm;
mod peer;
mod plot;
mod pointwise;
mod reduce;
pub mod report;
mod rope;
pub mod shapes;
mod softmax;

use indicatif::{ProgressBar, ProgressStyle};
use openkern::gpu::probe::{copy_bandwidth, fma_throughput};
use openkern::{Device, TimingSource};
use shapes::{Case, Tier};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The flags of `openkern bench`.
#[derive(clap::Args, Clone)]
pub struct BenchArgs {
    /// Only run cases whose family, op, model (`1b`, `8b`, `70b`) or phase (`prefill`,
    /// `decode`) matches; several separated by commas (e.g. `gemv,softmax`).
    #[arg(long)]
    pub filter: Option<String>,
    /// The short tier: 1B and 8B, 16-token prefill (under a minute on a software adapter).
    #[arg(long, conflicts_with = "full")]
    pub quick: bool,
    /// The full sweep: 512-token prefill, f32 and f16 everywhere, GEMMs up to 8192³.
    #[arg(long)]
    pub full: bool,
    /// Write every row, the device facts and the probes to FILE (format: benches/README.md).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Print each row's ratio to the same row in OLD.json (an earlier run or a peer's).
    #[arg(long, value_name = "OLD.json")]
    pub compare: Option<PathBuf>,
    /// Ratio below which `--compare` marks a row as a regression.
    #[arg(long, default_value_t = 0.9)]
    pub threshold: f64,
    /// Draw the roofline (throughput against arithmetic intensity) to FILE.svg.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Write the tier's cases (after --filter) to FILE for the peers, and run nothing.
    #[arg(long, value_name = "FILE")]
    pub list_shapes: Option<PathBuf>,
}

impl BenchArgs {
    /// The tier the flags select.
    pub fn tier(&self) -> Tier {
        if self.quick {
            Tier::Quick
        } else if self.full {
            Tier::Full
        } else {
            Tier::Default
        }
    }

    /// Whether `--filter` names `what` (outside the quick tier): families that keep their
    /// default rows short run their large shapes then.
    pub fn names(&self, what: &str) -> bool {
        !self.quick
            && self
                .filter
                .as_deref()
                .is_some_and(|f| f.split(',').any(|f| f.contains(what)))
    }

    /// The tier's cases of `family` that `--filter` selects.
    pub fn cases(&self, family: &str) -> Vec<Case> {
        shapes::cases(self.tier())
            .into_iter()
            .filter(|c| c.family == family && c.matches(self.filter.as_deref()))
            .collect()
    }

    /// [`cases`](Self::cases) plus the Burn peer's cases of `family` this run adds
    /// (`--filter burn` or `--full`; see [`burn::extra_cases`]), each key once.
    pub fn cases_with_peers(&self, family: &str) -> Vec<Case> {
        let mut out = self.cases(family);
        for c in burn::extra_cases(self, family) {
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }
}

/// What bounds a kernel: the probe its figure is compared with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Bound {
    /// Bytes per second, against the copy probe.
    Memory,
    /// FLOP per second, against the FMA probe.
    Compute,
}

/// One line of the table.
pub struct Row {
    /// The family the row belongs to (the summary groups by it).
    pub family: &'static str,
    /// Label in the table (op and shape).
    pub case: String,
    /// Element type of the inputs.
    pub dtype: &'static str,
    /// Median seconds per run.
    pub seconds: f64,
    /// Bytes moved or FLOPs done per run (the unit of `bound`).
    pub work: f64,
    /// Which probe the row is compared with.
    pub bound: Bound,
    /// GPU timestamps or wall clock.
    pub source: TimingSource,
    /// A peer measured in the same run, as (name, same unit per second).
    pub peer: Option<(&'static str, f64)>,
    /// The shape-list case this row times; `None` for rows outside the list.
    pub spec: Option<Case>,
    /// The kernel that ran (the op's `describe` where it has one).
    pub kernel: String,
    /// Fastest sample, seconds per run.
    pub min_seconds: f64,
    /// Slowest sample, seconds per run.
    pub max_seconds: f64,
    /// Samples the median is taken over.
    pub samples: usize,
    /// FLOPs per run, for the roofline (`work` when compute-bound).
    pub flops: f64,
    /// Bytes moved per run, for the roofline (`work` when memory-bound).
    pub bytes: f64,
    /// Median seconds per run timed by wall clock around a sync, where a peer that can
    /// only time that way (Burn) is compared with this row; `None` otherwise.
    pub wall_seconds: Option<f64>,
    /// The probe re-measured right before this row (bytes/s or FLOP/s, as `bound`), where
    /// the family does that: on a shared host the bandwidth moves within a run, and the
    /// row is then compared with the machine of its own minute. `None`: the run's probe.
    pub local_limit: Option<f64>,
}

impl Default for Row {
    fn default() -> Self {
        Row {
            family: "",
            case: String::new(),
            dtype: "f32",
            seconds: f64::NAN,
            work: 0.0,
            bound: Bound::Memory,
            source: TimingSource::WallClock,
            peer: None,
            spec: None,
            kernel: String::new(),
            min_seconds: f64::NAN,
            max_seconds: f64::NAN,
            samples: 1,
            flops: 0.0,
            bytes: 0.0,
            wall_seconds: None,
            local_limit: None,
        }
    }
}

impl Row {
    /// A row for `case` timed by `t`; `flops` and `bytes` per run, `bound` picks the unit.
    pub fn new(
        case: &Case,
        family: &'static str,
        kernel: String,
        t: &Sampled,
        flops: f64,
        bytes: f64,
        bound: Bound,
    ) -> Row {
        Row {
            family,
            case: format!("{} {:?}", case.op, case.shape),
            dtype: dtype_name(&case.dtype),
            seconds: t.median,
            min_seconds: t.min,
            max_seconds: t.max,
            samples: t.samples,
            work: if bound == Bound::Memory { bytes } else { flops },
            bound,
            source: t.source,
            peer: None,
            spec: Some(case.clone()),
            kernel,
            flops,
            bytes,
            wall_seconds: None,
            local_limit: None,
        }
    }

    /// This row's rate / the peer's (> 1: openkern is faster), from the wall-clock time
    /// where the row has one (the peer was timed that way), else from `seconds`.
    pub fn peer_ratio(&self) -> Option<f64> {
        let (_, peer_rate) = self.peer?;
        let own = self.wall_seconds.unwrap_or(self.seconds);
        Some(self.work / own / peer_rate)
    }

    /// Work per second in the row's unit.
    pub fn rate(&self) -> f64 {
        self.work / self.seconds
    }

    /// The rate as a fraction of the probe the row is bound by (its own re-measured
    /// probe where it has one).
    pub fn fraction(&self, limits: &Limits) -> f64 {
        self.rate()
            / self.local_limit.unwrap_or(match self.bound {
                Bound::Memory => limits.copy_bytes_per_s,
                Bound::Compute => limits.fma_flops_per_s,
            })
    }
}

/// `f32` → the static name, for [`Row::dtype`].
pub fn dtype_name(s: &str) -> &'static str {
    parse_dtype(s).name()
}

/// The dtype of a shape-list entry (`f32`, `f16`, `bf16`).
pub fn parse_dtype(s: &str) -> openkern::DType {
    match s {
        "f16" => openkern::DType::F16,
        "bf16" => openkern::DType::BF16,
        _ => openkern::DType::F32,
    }
}

/// The limits measured at the start of the run.
pub struct Limits {
    /// The copy probe, bytes per second.
    pub copy_bytes_per_s: f64,
    /// The FMA probe, FLOPs per second.
    pub fma_flops_per_s: f64,
}

/// A time taken as several samples.
pub struct Sampled {
    /// Median seconds per run.
    pub median: f64,
    /// Fastest sample.
    pub min: f64,
    /// Slowest sample.
    pub max: f64,
    /// How many samples.
    pub samples: usize,
    /// How they were timed.
    pub source: TimingSource,
}

impl Sampled {
    /// The median and range of `samples` (at least one), timed by `source`.
    pub fn of(mut samples: Vec<f64>, source: TimingSource) -> Sampled {
        samples.sort_by(f64::total_cmp);
        Sampled {
            median: samples[samples.len() / 2],
            min: samples[0],
            max: samples[samples.len() - 1],
            samples: samples.len(),
            source,
        }
    }
}

static TIER: OnceLock<Tier> = OnceLock::new();

/// The tier of this run (the default tier where none was set, as in unit tests).
fn tier() -> Tier {
    *TIER.get().unwrap_or(&Tier::Default)
}

/// Samples a row takes in `tier`: 3 quick, 5 default, 7 full.
fn tier_samples(tier: Tier) -> usize {
    match tier {
        Tier::Quick => 3,
        Tier::Default => 5,
        Tier::Full => 7,
    }
}

/// Times `f` (which records one run of an op): one untimed warm-up (pipeline build,
/// autotune), then 3 to 5 samples, each a window of enough runs for a few tens of
/// milliseconds; returns their median and range. Slow rows (over a quarter second a
/// run) take 3 single-run samples (2 in the quick tier), so large rows stay affordable on
/// software adapters.
pub fn measure(
    device: &Device,
    mut f: impl FnMut() -> openkern::Result<()>,
) -> openkern::Result<Sampled> {
    let tier = tier();
    f()?;
    device.sync()?;
    let first = device.time(1, &mut f)?;
    let want = tier_samples(tier);
    let window = match tier {
        Tier::Quick => 0.01,
        Tier::Default => 0.03,
        Tier::Full => 0.1,
    };
    let slow = first.seconds > 0.25;
    let want = match (slow, tier) {
        (true, Tier::Quick) => 2,
        (true, _) => 3,
        _ => want,
    };
    let iters = (window / first.seconds.max(1e-7)).clamp(1.0, 500.0) as usize;
    // a single-run first timing is already a sample
    let mut s = if iters == 1 {
        vec![first.seconds]
    } else {
        Vec::new()
    };
    while s.len() < want {
        s.push(device.time(iters, &mut f)?.seconds);
    }
    Ok(Sampled::of(s, first.source))
}

static BAR: OnceLock<ProgressBar> = OnceLock::new();

fn bar() -> &'static ProgressBar {
    BAR.get_or_init(ProgressBar::hidden)
}

/// Runs `case_rows` for each selected case of `family` (the peers' extra cases
/// included: [`BenchArgs::cases_with_peers`]), advancing the progress bar and turning a
/// case too large for this device's bindings into a printed skip.
pub fn run_cases(
    args: &BenchArgs,
    family: &str,
    case_rows: impl FnMut(&Case) -> openkern::Result<Vec<Row>>,
) -> openkern::Result<Vec<Row>> {
    run_list(args.cases_with_peers(family), case_rows)
}

/// [`run_cases`] over a list of cases.
pub fn run_list(
    cases: Vec<Case>,
    mut case_rows: impl FnMut(&Case) -> openkern::Result<Vec<Row>>,
) -> openkern::Result<Vec<Row>> {
    let mut out = Vec::new();
    for case in cases {
        bar().set_message(format!(
            "{} {} {} {:?} {}",
            case.model, case.phase, case.op, case.shape, case.dtype
        ));
        let t0 = std::time::Instant::now();
        let result = case_rows(&case);
        if std::env::var_os("OPENKERN_BENCH_TRACE").is_some() {
            bar().suspend(|| {
                eprintln!(
                    "trace: {} {:?} {} took {:.2} s (setup + warm-up + samples)",
                    case.op,
                    case.shape,
                    case.dtype,
                    t0.elapsed().as_secs_f64()
                )
            });
        }
        match result {
            Err(openkern::Error::TooLarge { bytes, limit, .. }) => skip(&format!(
                "{} {:?} {}: needs a {bytes}-byte binding, this device allows {limit}",
                case.op, case.shape, case.dtype
            )),
            r => out.extend(r?),
        }
        bar().inc(1);
    }
    Ok(out)
}

/// Prints a skipped case without tearing the progress bar.
pub fn skip(what: &str) {
    bar().suspend(|| println!("(skipped {what})"));
}

/// A kernel label for ops without a `describe`: the backend and the op.
pub fn kernel_label(device: &Device, op: &str) -> String {
    if device.is_cpu() {
        format!("cpu {op}")
    } else {
        format!("wgsl {op}")
    }
}

fn print_header(models: &[shapes::Model]) {
    println!("models (one layer of each; prefill rows process the prompt, decode rows one token):");
    for m in models {
        println!(
            "  {:<4} like {:<14} hidden {:>5}  heads {:>2}  kv heads {}  head_dim {:>3}  ffn {:>5}  vocab {}",
            m.name, m.like, m.hidden, m.heads, m.kv_heads, m.head_dim, m.ffn, m.vocab
        );
    }
    println!();
    println!(
        "{:<5} {:<7} {:<16} {:<20} {:<5} {:<30} {:>11} {:>6} {:>9} {:<7} {:>7}",
        "model", "phase", "op", "shape", "dtype", "kernel", "median", "spread", "rate", "", "limit"
    );
}

fn print_row(r: &Row, limits: &Limits) {
    let (model, phase, op, shape) = match &r.spec {
        Some(c) => (
            c.model.clone(),
            c.phase.clone(),
            c.op.clone(),
            format!("{:?}", c.shape).replace(' ', ""),
        ),
        None => (String::new(), String::new(), r.case.clone(), String::new()),
    };
    let spread = if r.samples > 1 {
        format!(
            "±{:.0}%",
            50.0 * (r.max_seconds - r.min_seconds) / r.seconds
        )
    } else {
        "-".into()
    };
    let peer = r
        .peer
        .zip(r.peer_ratio())
        .map(|((name, _), ratio)| {
            let wall = if r.wall_seconds.is_some() {
                " (wall clock)"
            } else {
                ""
            };
            format!(" {ratio:.2}x {name}{wall}")
        })
        .unwrap_or_default();
    println!(
        "{:<5} {:<7} {:<16} {:<20} {:<5} {:<30} {:>9.3}ms{} {:>6} {:>9.1} {:<7} {:>6.1}% {}{}",
        model,
        phase,
        op,
        shape,
        r.dtype,
        r.kernel,
        r.seconds * 1e3,
        if r.source == TimingSource::WallClock {
            "*"
        } else {
            " "
        },
        spread,
        r.rate() / 1e9,
        if r.bound == Bound::Memory {
            "GB/s"
        } else {
            "GFLOP/s"
        },
        r.fraction(limits) * 100.0,
        if r.bound == Bound::Memory {
            "copy"
        } else {
            "fma"
        },
        peer
    );
}

/// Geometric mean of the fractions of limit of each family's rows, in run order.
pub fn family_summary(rows: &[Row], limits: &Limits) -> Vec<(String, usize, f64)> {
    let mut out: Vec<(String, usize, f64)> = Vec::new();
    for r in rows {
        let f = r.fraction(limits);
        if !(f.is_finite() && f > 0.0) {
            continue;
        }
        match out.iter_mut().find(|(n, _, _)| n == r.family) {
            Some(e) => {
                e.1 += 1;
                e.2 += f.ln();
            }
            None => out.push((r.family.to_string(), 1, f.ln())),
        }
    }
    for e in &mut out {
        e.2 = (e.2 / e.1 as f64).exp();
    }
    out
}

type Family = fn(&Device, &BenchArgs) -> openkern::Result<Vec<Row>>;

/// The families in run order: (name, families of the shape list it runs, rows).
/// A family outside the shape list (empty second field) runs unless `--filter` names
/// something else.
const FAMILIES: &[(&str, &[&str], Family)] = &[
    ("norm", &["norm"], norm::rows),
    ("elementwise", &["elementwise"], elementwise::rows),
    ("activation", &["activation"], activation::rows),
    ("rope", &["rope"], rope::rows),
    ("pointwise", &["pointwise"], pointwise::rows),
    ("embedding", &["embedding"], embedding::rows),
    ("softmax", &["softmax"], softmax::rows),
    ("reduce", &["reduce"], reduce::rows),
    ("matmul", &["gemv", "linear", "gemm"], matmul::rows),
    ("linear_epilogue", &[], matmul::epilogue_rows),
    ("linear-torch", &[], matmul::torch_rows),
    ("attention", &["attention"], attention::rows),
    ("encoder", &[], encoder::rows),
    ("llama", &[], llama::rows),
];

/// `openkern bench`: probes, families, summary, then the file, the plot, the comparison.
pub fn run(device: &Device, args: &BenchArgs) -> openkern::Result<()> {
    let tier = args.tier();
    let _ = TIER.set(tier);
    if let Some(path) = &args.list_shapes {
        return report::write_shapes(path, args);
    }
    let info = device.info();
    println!(
        "openkern bench ({tier}) on {} ({}, {}, {})",
        info.name, info.backend, info.device_type, info.driver
    );
    let total: usize = FAMILIES
        .iter()
        .flat_map(|(_, fams, _)| fams.iter())
        .map(|f| args.cases_with_peers(f).len())
        .sum();
    let pb = BAR.get_or_init(|| {
        let pb = ProgressBar::new(total as u64 + 2);
        pb.set_style(
            ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {wide_msg}")
                .expect("static template")
                .progress_chars("=> "),
        );
        pb
    });
    pb.set_message("probe: copy bandwidth");
    let copy = copy_bandwidth(device)?;
    pb.inc(1);
    pb.set_message("probe: fma throughput");
    let fma = fma_throughput(device)?;
    pb.inc(1);
    pb.suspend(|| {
        println!(
            "probe copy bandwidth  {:>10.1} GB/s      ({})",
            copy.per_second / 1e9,
            copy.source
        );
        println!(
            "probe fma throughput  {:>10.1} GFLOP/s   ({})",
            fma.per_second / 1e9,
            fma.source
        );
        println!(
            "times: median of the samples, spread = half their range; * marks wall clock \
             (no timestamp queries)\n"
        );
        let all = shapes::cases(tier);
        let used: Vec<shapes::Model> = shapes::models()
            .into_iter()
            .filter(|m| all.iter().any(|c| c.model == m.name))
            .collect();
        print_header(&used);
    });
    let limits = Limits {
        copy_bytes_per_s: copy.per_second,
        fma_flops_per_s: fma.per_second,
    };
    let started = std::time::Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    for (name, fams, family) in FAMILIES {
        let selected = if fams.is_empty() {
            args.filter
                .as_deref()
                .is_none_or(|f| f.split(',').any(|f| name.contains(f)))
        } else {
            fams.iter().any(|f| !args.cases_with_peers(f).is_empty())
        };
        if !selected {
            continue;
        }
        let got = family(device, args)?;
        pb.suspend(|| {
            for r in &got {
                print_row(r, &limits);
            }
        });
        rows.extend(got);
        device.trim_pool();
    }
    pb.finish_and_clear();
    println!("\nper family: geometric mean of the fraction of limit");
    for (family, n, g) in family_summary(&rows, &limits) {
        println!("  {family:<12} {:>6.1}%  ({n} rows)", g * 100.0);
    }
    eprintln!(
        "{} rows in {:.1} s",
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    let run = report::Run::new(device, tier, &copy, &fma, &rows, &limits);
    if let Some(path) = &args.json {
        report::write_json(path, &run)?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &args.plot {
        plot::roofline(path, &run)?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &args.compare {
        report::compare(path, &run, args.threshold)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::FAMILIES;

    /// A row with a probe re-measured beside it is compared with that probe, in the
    /// table and the JSON alike; other rows with the run's.
    #[test]
    fn a_local_probe_replaces_the_runs_probe() {
        let limits = super::Limits {
            copy_bytes_per_s: 10.0,
            fma_flops_per_s: 100.0,
        };
        let mut row = super::Row {
            seconds: 1.0,
            work: 5.0,
            ..Default::default()
        };
        assert_eq!(row.fraction(&limits), 0.5);
        row.local_limit = Some(20.0);
        assert_eq!(row.fraction(&limits), 0.25);
        let probe = openkern::gpu::probe::ProbeResult {
            per_second: 10.0,
            work: 10.0,
            seconds: 1.0,
            source: openkern::gpu::timing::TimingSource::WallClock,
        };
        let device = openkern::Device::cpu();
        let run =
            super::report::Run::new(&device, super::Tier::Quick, &probe, &probe, &[row], &limits);
        assert_eq!(run.rows[0].fraction_of_limit, Some(0.25));
        assert_eq!(run.rows[0].limit_per_s, Some(20.0));
    }

    /// Library op families (`openkern::ops::FAMILIES`) with no bench rows yet: rows owed.
    /// A family added to the library and missing from both lists fails the test below.
    const NOT_YET_BENCHED: &[&str] = &["layout"];

    /// Every op family the library registers has bench rows (or is listed as owed), so a
    /// new family cannot be left out of `openkern bench` unnoticed.
    #[test]
    fn every_library_op_family_is_benched() {
        for family in openkern::ops::FAMILIES {
            assert!(
                FAMILIES.iter().any(|(name, _, _)| *name == family.name)
                    || super::pointwise::LIBRARY_FAMILIES.contains(&family.name)
                    || NOT_YET_BENCHED.contains(&family.name),
                "op family {} has no bench rows: add a family to bench/mod.rs",
                family.name
            );
        }
    }
}
