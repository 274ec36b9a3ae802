//! The run as a file (`--json`, format `openkern-bench` version 1, documented in
//! `benches/README.md`), the shape list for the peers (`--list-shapes`), and the
//! comparison with an earlier run or a peer's (`--compare`).

use super::shapes::{self, Case, ShapeList, Tier};
use super::{BenchArgs, Bound, Limits, Row};
use openkern::gpu::probe::ProbeResult;
use openkern::Device;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Bumped when a field is removed or changes meaning (adding fields keeps the version).
pub const FORMAT_VERSION: u32 = 1;

/// Who produced the file.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Tool {
    /// `openkern`, or the peer's name (`torch`, `numpy`).
    pub name: String,
    /// The producer's version.
    pub version: String,
    /// openkern's git commit at build time (`unknown` outside a git checkout).
    #[serde(default)]
    pub git_commit: String,
}

/// The machine the run was on.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct DeviceFacts {
    /// Adapter name (or the CPU model for peers).
    pub name: String,
    /// `vulkan`, `metal`, `dx12`, `gl`, `cpu`, or the peer's (`cuda`, `torch-cpu`, `numpy`).
    pub backend: String,
    /// `discrete`, `integrated`, `software`, `cpu`, ...
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
    /// CPU threads (CPU device and CPU peers).
    #[serde(default)]
    pub threads: usize,
    /// Adapter features openkern uses.
    #[serde(default)]
    pub features: serde_json::Value,
    /// Adapter limits openkern respects.
    #[serde(default)]
    pub limits: serde_json::Value,
}

/// One limit probe.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Probe {
    /// Bytes/s (copy) or FLOP/s (fma).
    pub per_second: f64,
    /// `gpu-timestamps` or `wall-clock`.
    pub timing: String,
}

/// The two probes.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Probes {
    /// Copy bandwidth, bytes/s.
    pub copy: Option<Probe>,
    /// FMA throughput, FLOP/s.
    pub fma: Option<Probe>,
}

/// One row of the file.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct JsonRow {
    /// The case (family, op, model, phase, shape, dtype): the key rows match by.
    #[serde(flatten)]
    pub case: Case,
    /// The kernel that ran (the op's `describe`, or the peer's function).
    pub kernel: String,
    /// `compute` (rate is FLOP/s) or `memory` (rate is bytes/s).
    pub bound: String,
    /// Median seconds per run.
    pub median_s: f64,
    /// Fastest sample (NaN, written as `null`, for a row of one sample).
    #[serde(deserialize_with = "f64_or_nan")]
    pub min_s: f64,
    /// Slowest sample (as `min_s`).
    #[serde(deserialize_with = "f64_or_nan")]
    pub max_s: f64,
    /// Samples taken.
    pub samples: usize,
    /// `gpu-timestamps`, `wall-clock` or `cuda-events`.
    pub timing: String,
    /// FLOPs per run.
    pub flops: f64,
    /// Bytes moved per run.
    pub bytes: f64,
    /// FLOP/s (compute) or bytes/s (memory).
    pub rate: f64,
    /// rate / the matching probe; absent when the producer measured no probe.
    pub fraction_of_limit: Option<f64>,
    /// A peer timed right after this row in the same run (`burn`, `torch`,
    /// `torch-sdpa`, or `unfused`/`fused` for openkern's other path); absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The peer's median seconds per run on the same work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_median_s: Option<f64>,
    /// This row's rate / the peer's (> 1: openkern is faster), from `wall_median_s`
    /// where present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_ratio: Option<f64>,
    /// openkern's median seconds per run by wall clock around a sync, taken for peers
    /// that can only time that way (Burn), so both sides of `peer_ratio` are timed alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_median_s: Option<f64>,
    /// The probe (same unit as `rate`) that `fraction_of_limit` divides by when it was
    /// re-measured right before this row (the CPU's pointwise rows); absent: the run's
    /// probe in `probes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_per_s: Option<f64>,
}

/// A number that serde_json wrote as `null` (it has no NaN) reads back as NaN: without
/// this, a file with a one-sample row could not be read by `--compare`.
fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// A per-family summary line.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct FamilySummary {
    /// The family.
    pub family: String,
    /// Rows in it.
    pub rows: usize,
    /// Geometric mean of the rows' fractions of limit.
    pub geomean_fraction_of_limit: f64,
}

/// The whole file.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Run {
    /// Always `openkern-bench`.
    pub format: String,
    /// [`FORMAT_VERSION`] of the writer.
    pub version: u32,
    /// Who wrote it.
    pub tool: Tool,
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub date: String,
    /// The tier run.
    pub tier: Tier,
    /// The machine.
    pub device: DeviceFacts,
    /// The limit probes (absent for peers).
    pub probes: Probes,
    /// The model classes the rows mirror.
    #[serde(default)]
    pub models: Vec<shapes::Model>,
    /// Every row.
    pub rows: Vec<JsonRow>,
    /// Per-family geometric means.
    #[serde(default)]
    pub summary: Vec<FamilySummary>,
}

impl Run {
    /// The file for this run's rows.
    pub fn new(
        device: &Device,
        tier: Tier,
        copy: &ProbeResult,
        fma: &ProbeResult,
        rows: &[Row],
        limits: &Limits,
    ) -> Run {
        let info = device.info();
        let f = &info.features;
        let l = &info.limits;
        let features = serde_json::json!({
            "shader_f16": f.shader_f16,
            "subgroup": f.subgroup,
            "subgroup_min_size": f.subgroup_min_size,
            "subgroup_max_size": f.subgroup_max_size,
            "timestamp_query": f.timestamp_query,
            "cooperative_matrix": f.cooperative_matrix.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        });
        let limits_json = serde_json::json!({
            "max_storage_buffer_binding_size": l.max_storage_buffer_binding_size,
            "max_buffer_size": l.max_buffer_size,
            "max_compute_invocations_per_workgroup": l.max_compute_invocations_per_workgroup,
            "max_compute_workgroup_storage_size": l.max_compute_workgroup_storage_size,
            "max_compute_workgroups_per_dimension": l.max_compute_workgroups_per_dimension,
        });
        Run {
            format: "openkern-bench".into(),
            version: FORMAT_VERSION,
            tool: Tool {
                name: "openkern".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                git_commit: env!("OPENKERN_GIT_COMMIT").into(),
            },
            date: utc_now(),
            tier,
            device: DeviceFacts {
                name: info.name.clone(),
                backend: info.backend.clone(),
                device_type: info.device_type.to_string(),
                driver: info.driver.clone(),
                threads: info.threads,
                features,
                limits: limits_json,
            },
            probes: Probes {
                copy: Some(Probe {
                    per_second: copy.per_second,
                    timing: copy.source.to_string(),
                }),
                fma: Some(Probe {
                    per_second: fma.per_second,
                    timing: fma.source.to_string(),
                }),
            },
            models: shapes::models(),
            rows: rows
                .iter()
                .map(|r| {
                    let case = r.spec.clone().unwrap_or_else(|| Case {
                        family: r.family.into(),
                        op: r.case.clone(),
                        model: String::new(),
                        phase: String::new(),
                        shape: Vec::new(),
                        dtype: r.dtype.into(),
                    });
                    JsonRow {
                        case,
                        kernel: r.kernel.clone(),
                        bound: match r.bound {
                            Bound::Compute => "compute".into(),
                            Bound::Memory => "memory".into(),
                        },
                        median_s: r.seconds,
                        min_s: r.min_seconds,
                        max_s: r.max_seconds,
                        samples: r.samples,
                        timing: r.source.to_string(),
                        flops: r.flops,
                        bytes: r.bytes,
                        rate: r.rate(),
                        fraction_of_limit: Some(r.fraction(limits)),
                        peer: r.peer.map(|(name, _)| name.to_string()),
                        peer_median_s: r.peer.map(|(_, rate)| r.work / rate),
                        peer_ratio: r.peer_ratio(),
                        wall_median_s: r.wall_seconds,
                        limit_per_s: r.local_limit,
                    }
                })
                .collect(),
            summary: super::family_summary(rows, limits)
                .into_iter()
                .map(|(family, rows, g)| FamilySummary {
                    family,
                    rows,
                    geomean_fraction_of_limit: g,
                })
                .collect(),
        }
    }
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> openkern::Error {
    openkern::Error::Io(std::io::Error::other(format!("{}: {e}", path.display())))
}

/// Writes `run` as pretty JSON.
pub fn write_json(path: &Path, run: &Run) -> openkern::Result<()> {
    let text = serde_json::to_string_pretty(run).map_err(|e| io_err(path, e))?;
    std::fs::write(path, text + "\n").map_err(|e| io_err(path, e))
}

/// Reads a run written by `--json` or by a peer script.
pub fn read_json(path: &Path) -> openkern::Result<Run> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    let run: Run = serde_json::from_str(&text).map_err(|e| {
        io_err(
            path,
            format!("not an openkern-bench file ({e}); write one with `openkern bench --json`"),
        )
    })?;
    if run.format != "openkern-bench" || run.version > FORMAT_VERSION {
        return Err(io_err(
            path,
            format!(
                "format {:?} version {}; this openkern reads openkern-bench up to version {FORMAT_VERSION}",
                run.format, run.version
            ),
        ));
    }
    Ok(run)
}

/// Writes the tier's cases (after `--filter`) for the peers.
pub fn write_shapes(path: &Path, args: &BenchArgs) -> openkern::Result<()> {
    let list = ShapeList {
        format: "openkern-shapes".into(),
        version: FORMAT_VERSION,
        tier: args.tier(),
        models: shapes::models(),
        cases: shapes::cases(args.tier())
            .into_iter()
            .filter(|c| c.matches(args.filter.as_deref()))
            .collect(),
    };
    let text = serde_json::to_string_pretty(&list).map_err(|e| io_err(path, e))?;
    std::fs::write(path, text + "\n").map_err(|e| io_err(path, e))?;
    println!("wrote {} cases to {}", list.cases.len(), path.display());
    Ok(())
}

/// Prints each row of `new` beside the same row of the run in `old_path`: the ratio of
/// rates (> 1: `new` is faster), rows below `threshold` marked as regressions. Rows in
/// only one of the two are counted, not listed. Rates are shown in `new`'s unit.
pub fn compare(old_path: &Path, new: &Run, threshold: f64) -> openkern::Result<()> {
    let old = read_json(old_path)?;
    print_comparison(&old, new, threshold);
    Ok(())
}

/// [`compare`] on two runs already read (also `openkern compare A.json B.json`).
pub fn print_comparison(old: &Run, new: &Run, threshold: f64) {
    let label = |r: &Run| {
        if r.tool.name == "openkern" {
            format!("openkern {}", &r.tool.git_commit.get(..8).unwrap_or("?"))
        } else {
            r.tool.name.clone()
        }
    };
    let (a, b) = (label(old), label(new));
    println!(
        "\ncompare: {b} on {} ({}) / {a} on {} ({}); > 1 means {b} is faster; ! below {threshold}",
        new.device.name, new.date, old.device.name, old.date
    );
    let by_key: HashMap<String, &JsonRow> = old.rows.iter().map(|r| (r.case.key(), r)).collect();
    println!(
        "{:<11} {:<5} {:<7} {:<16} {:<20} {:<5} {:>12} {:>12} {:>7}",
        "family", "model", "phase", "op", "shape", "dtype", b, a, "ratio"
    );
    let (mut matched, mut regressions, mut log_sum) = (0usize, 0usize, 0.0f64);
    let mut per_family: Vec<(String, usize, f64)> = Vec::new();
    for r in &new.rows {
        let Some(o) = by_key.get(&r.case.key()) else {
            continue;
        };
        // same case, same work: the ratio of times, free of any FLOP or byte formula
        let ratio = o.median_s / r.median_s;
        if !ratio.is_finite() || ratio <= 0.0 {
            continue;
        }
        matched += 1;
        log_sum += ratio.ln();
        match per_family.iter_mut().find(|e| e.0 == r.case.family) {
            Some(e) => {
                e.1 += 1;
                e.2 += ratio.ln();
            }
            None => per_family.push((r.case.family.clone(), 1, ratio.ln())),
        }
        let unit = if r.bound == "compute" { "GF/s" } else { "GB/s" };
        let bad = ratio < threshold;
        regressions += bad as usize;
        let c = &r.case;
        println!(
            "{:<11} {:<5} {:<7} {:<16} {:<20} {:<5} {:>7.1} {unit} {:>7.1} {unit} {:>6.2}x{}",
            c.family,
            c.model,
            c.phase,
            c.op,
            format!("{:?}", c.shape).replace(' ', ""),
            c.dtype,
            r.rate / 1e9,
            o.rate / 1e9,
            ratio,
            if bad { " !" } else { "" }
        );
    }
    if matched == 0 {
        println!(
            "no rows in common (different tiers or filters? the peer must run the same shape list)"
        );
        return;
    }
    println!("\nper family: geometric mean of {b} / {a}");
    for (family, n, l) in per_family {
        println!("  {family:<12} {:>6.2}x  ({n} rows)", (l / n as f64).exp());
    }
    println!(
        "{matched} rows matched ({} only in {b}, {} only in {a}); geometric mean {:.2}x; {regressions} below {threshold}",
        new.rows.len() - matched,
        old.rows.len() - matched,
        (log_sum / matched as f64).exp()
    );
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`, from the system clock (days to civil
/// date by Howard Hinnant's algorithm; no date crate needed for one timestamp).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_sample_row_round_trips() {
        let row = JsonRow {
            case: Case {
                family: "gemm".into(),
                op: "matmul".into(),
                model: String::new(),
                phase: String::new(),
                shape: vec![2, 2, 2],
                dtype: "f32".into(),
            },
            kernel: "subgroup".into(),
            bound: "compute".into(),
            median_s: 1.0,
            min_s: f64::NAN,
            max_s: f64::NAN,
            samples: 1,
            timing: "gpu-timestamps".into(),
            flops: 16.0,
            bytes: 0.0,
            rate: 16.0,
            fraction_of_limit: None,
            peer: None,
            peer_median_s: None,
            peer_ratio: None,
            wall_median_s: None,
            limit_per_s: None,
        };
        let text = serde_json::to_string(&row).unwrap();
        assert!(text.contains("\"min_s\":null"), "{text}");
        let back: JsonRow = serde_json::from_str(&text).unwrap();
        assert!(back.min_s.is_nan() && back.max_s.is_nan());
        assert_eq!(back.median_s, 1.0);
    }

    #[test]
    fn utc_now_is_an_iso_date() {
        let s = utc_now();
        assert_eq!(s.len(), 20, "{s}");
        assert!(s.starts_with("20") && s.ends_with('Z'), "{s}");
    }
}
