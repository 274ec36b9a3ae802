//! Matmul kernel and tile configurations, chosen per adapter by measurement.
//!
//! [`tune_matmul`] times every candidate — each tiled-kernel configuration that fits the
//! adapter's limits, and the subgroup kernel where the adapter has fixed-size subgroups —
//! on one representative shape per [`ShapeClass`] and dtype (GPU timestamps where the
//! adapter has them), and writes the winners to a small text file keyed by
//! [`DeviceInfo::cache_key`](crate::DeviceInfo::cache_key) (adapter + driver):
//! `$OPENKERN_CACHE_DIR`, else `$XDG_CACHE_HOME/openkern`, else `~/.cache/openkern`.
//! Matmuls read that file once per process; where it has no entry they use a heuristic
//! default. Nothing tunes implicitly (a first matmul never stalls to measure); `openkern
//! bench` tunes when the cache lacks entries.
//!
//! `OPENKERN_AUTOTUNE=0` ignores the cache and never tunes: the heuristic defaults only,
//! identical on every run and machine with the same adapter limits.

use crate::device::{Device, DeviceInfo, DeviceType};
use crate::dtype::DType;
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::ops::matmul::{matmul_with, MatmulKernel, MatmulOptions, MatmulPlan};
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// Environment switch: `0` disables the tuning cache and tuning (deterministic defaults).
pub const AUTOTUNE_ENV: &str = "OPENKERN_AUTOTUNE";
/// Environment override of the cache directory.
pub const CACHE_DIR_ENV: &str = "OPENKERN_CACHE_DIR";

/// One tile configuration of `shaders/matmul_tiled.wgsl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TileConfig {
    /// Rows of C per workgroup.
    pub bm: u32,
    /// Columns of C per workgroup.
    pub bn: u32,
    /// K per shared-memory step.
    pub bk: u32,
    /// Rows per invocation (4 or 8).
    pub tm: u32,
    /// Columns per invocation (4 or 8).
    pub tn: u32,
}

impl std::fmt::Display for TileConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}x{}x{}/{}x{}",
            self.bm, self.bn, self.bk, self.tm, self.tn
        )
    }
}

const fn tc(bm: u32, bn: u32, bk: u32, tm: u32, tn: u32) -> TileConfig {
    TileConfig { bm, bn, bk, tm, tn }
}

/// Every configuration the tuner tries (those that fit the adapter).
pub const CANDIDATES: [TileConfig; 9] = [
    tc(32, 32, 16, 4, 4),
    tc(32, 64, 16, 4, 4),
    tc(64, 64, 8, 4, 4),
    tc(64, 64, 16, 4, 4),
    tc(64, 64, 16, 8, 8),
    tc(128, 64, 16, 8, 4),
    tc(64, 128, 16, 4, 8),
    tc(128, 128, 8, 8, 8),
    tc(128, 128, 16, 8, 8),
];

impl TileConfig {
    /// Invocations per workgroup.
    pub fn workgroup_size(&self) -> u32 {
        (self.bm / self.tm) * (self.bn / self.tn)
    }

    /// Shared memory the kernel declares, in bytes (two buffers, one vec4 pad per row).
    pub fn shared_bytes(&self) -> u32 {
        2 * self.bk * (self.bm / 4 + 1) * 16 + 2 * self.bk * (self.bn / 4 + 1) * 16
    }

    /// Whether the kernel's index arithmetic takes this configuration and the adapter's
    /// limits allow it.
    pub(crate) fn fits(&self, g: &GpuContext) -> bool {
        let wg = self.workgroup_size();
        let pairs_ok = |rows: u32| {
            let pairs = rows * self.bk;
            pairs.is_multiple_of(2 * wg) && (1..=8).contains(&(pairs / (2 * wg)))
        };
        matches!(self.tm, 4 | 8)
            && matches!(self.tn, 4 | 8)
            && self.bm.is_multiple_of(4 * self.tm)
            && self.bn.is_multiple_of(4 * self.tn)
            && self.bk.is_multiple_of(2)
            && pairs_ok(self.bm)
            && pairs_ok(self.bn)
            && wg <= g.limits.max_compute_invocations_per_workgroup
            && wg <= g.limits.max_compute_workgroup_size_x
            && self.shared_bytes() <= g.limits.max_compute_workgroup_storage_size
    }
}

/// What runs a general (M > 8) matmul of one shape class, when no cooperative-matrix
/// kernel applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Choice {
    /// The tiled kernel with this configuration.
    Tiled(TileConfig),
    /// The barrier-free subgroup kernel.
    Subgroup,
}

impl std::fmt::Display for Choice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Choice::Tiled(t) => write!(f, "tiled {t}"),
            Choice::Subgroup => f.write_str("subgroup"),
        }
    }
}

/// Matmul shapes grouped by what tile suits them: the smaller of M and N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShapeClass {
    /// min(M, N) ≤ 64: batched decode, narrow outputs.
    Small,
    /// min(M, N) ≤ 512.
    Medium,
    /// Larger.
    Large,
}

impl ShapeClass {
    pub(crate) fn of(plan: &MatmulPlan) -> Self {
        Self::for_shape(plan.m, plan.n)
    }

    /// The class of an M×N output.
    pub fn for_shape(m: usize, n: usize) -> Self {
        match m.min(n) {
            0..=64 => ShapeClass::Small,
            65..=512 => ShapeClass::Medium,
            _ => ShapeClass::Large,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ShapeClass::Small => "small",
            ShapeClass::Medium => "medium",
            ShapeClass::Large => "large",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "small" => Some(ShapeClass::Small),
            "medium" => Some(ShapeClass::Medium),
            "large" => Some(ShapeClass::Large),
            _ => None,
        }
    }

    /// Every class.
    pub const ALL: [ShapeClass; 3] = [ShapeClass::Small, ShapeClass::Medium, ShapeClass::Large];

    /// The (M, N, K) the tuner measures this class on.
    fn representative(self, software: bool) -> (usize, usize, usize) {
        match (self, software) {
            (ShapeClass::Small, false) => (64, 4096, 4096),
            (ShapeClass::Medium, false) => (512, 4096, 4096),
            (ShapeClass::Large, false) => (2048, 2048, 2048),
            (ShapeClass::Small, true) => (32, 512, 512),
            (ShapeClass::Medium, true) => (256, 256, 512),
            (ShapeClass::Large, true) => (576, 576, 576),
        }
    }
}

/// Tuning is keyed by the tile code's dtype: bf16 loads like f16 (a packed word).
fn dtype_key(d: DType) -> &'static str {
    #[allow(unreachable_patterns)]
    match d {
        DType::F32 => "f32",
        DType::F16 | DType::BF16 => "f16",
        _ => "f32",
    }
}

type Table = HashMap<(String, ShapeClass), Choice>;

/// Tables loaded from disk, per cache key.
static TABLES: Mutex<Option<HashMap<String, Table>>> = Mutex::new(None);

fn enabled() -> bool {
    std::env::var(AUTOTUNE_ENV).map_or(true, |v| v != "0")
}

/// Where the tuning cache of `info`'s adapter lives.
pub fn cache_path(info: &DeviceInfo) -> Option<PathBuf> {
    let dir = std::env::var_os(CACHE_DIR_ENV)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("openkern")))
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/openkern")))?;
    Some(dir.join(format!("matmul-{}.txt", info.cache_key())))
}

fn parse_table(text: &str) -> Table {
    let mut t = Table::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 || f[0].starts_with('#') {
            continue;
        }
        let Some(class) = ShapeClass::parse(f[1]) else {
            continue;
        };
        let n: Vec<u32> = f[3..].iter().filter_map(|x| x.parse().ok()).collect();
        let choice = match (f[2], n.len()) {
            ("subgroup", 0) => Choice::Subgroup,
            ("tiled", 5) => Choice::Tiled(tc(n[0], n[1], n[2], n[3], n[4])),
            _ => continue,
        };
        t.insert((f[0].to_string(), class), choice);
    }
    t
}

fn render_table(t: &Table, info: &DeviceInfo) -> String {
    let mut lines: Vec<String> = t
        .iter()
        .map(|((d, c), x)| match x {
            Choice::Tiled(x) => format!(
                "{d} {} tiled {} {} {} {} {}",
                c.name(),
                x.bm,
                x.bn,
                x.bk,
                x.tm,
                x.tn
            ),
            Choice::Subgroup => format!("{d} {} subgroup", c.name()),
        })
        .collect();
    lines.sort();
    format!(
        "# openkern matmul tuning for {} ({}, {})\n# dtype class (tiled bm bn bk tm tn | subgroup)\n{}\n",
        info.name,
        info.backend,
        info.driver,
        lines.join("\n")
    )
}

fn with_table<R>(info: &DeviceInfo, f: impl FnOnce(&mut Table) -> R) -> R {
    let mut guard = TABLES.lock().unwrap_or_else(|p| p.into_inner());
    let tables = guard.get_or_insert_with(HashMap::new);
    // With tuning off the table starts empty: only explicit pins (set_choice) count.
    let table = tables.entry(info.cache_key()).or_insert_with(|| {
        enabled()
            .then(|| cache_path(info))
            .flatten()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|s| parse_table(&s))
            .unwrap_or_default()
    });
    f(table)
}

/// The heuristic configuration: the largest candidate of the class that fits.
pub(crate) fn default_tile(g: &GpuContext, info: &DeviceInfo, class: ShapeClass) -> TileConfig {
    let software = matches!(info.device_type, DeviceType::SoftwareGpu | DeviceType::Cpu);
    let prefs: &[TileConfig] = match (class, software) {
        (ShapeClass::Small, _) => &[tc(32, 64, 16, 4, 4), tc(32, 32, 16, 4, 4)],
        (ShapeClass::Medium, _) => &[tc(64, 64, 16, 4, 4), tc(64, 64, 8, 4, 4)],
        (ShapeClass::Large, false) => &[
            tc(128, 128, 16, 8, 8),
            tc(128, 128, 8, 8, 8),
            tc(64, 64, 16, 4, 4),
            tc(64, 64, 8, 4, 4),
        ],
        (ShapeClass::Large, true) => &[tc(64, 64, 16, 8, 8), tc(64, 64, 8, 4, 4)],
    };
    prefs
        .iter()
        .chain(&[tc(32, 32, 16, 4, 4)])
        .copied()
        .find(|t| t.fits(g))
        .unwrap_or(tc(32, 32, 16, 4, 4))
}

/// The heuristic choice: the subgroup kernel on software adapters with fixed-size
/// subgroups (where barriers are costly), the default tile elsewhere.
pub(crate) fn default_choice(g: &GpuContext, info: &DeviceInfo, class: ShapeClass) -> Choice {
    let software = matches!(info.device_type, DeviceType::SoftwareGpu | DeviceType::Cpu);
    if software && crate::gpu::matmul::fixed_subgroup_size(g, info).is_some() {
        Choice::Subgroup
    } else {
        Choice::Tiled(default_tile(g, info, class))
    }
}

/// What a matmul of `class` runs with on this adapter: the cached measurement where
/// there is one (and it is still valid here), else the heuristic.
pub(crate) fn choice_for(
    g: &GpuContext,
    info: &DeviceInfo,
    dtype: DType,
    class: ShapeClass,
) -> Choice {
    let key = (dtype_key(dtype).to_string(), class);
    match with_table(info, |t| t.get(&key).copied()) {
        Some(Choice::Tiled(t)) if t.fits(g) => Choice::Tiled(t),
        Some(Choice::Subgroup) if crate::gpu::matmul::fixed_subgroup_size(g, info).is_some() => {
            Choice::Subgroup
        }
        _ => default_choice(g, info, class),
    }
}

/// The tile configuration the tiled kernel uses for `class` on this adapter.
pub(crate) fn tile_for(
    g: &GpuContext,
    info: &DeviceInfo,
    dtype: DType,
    class: ShapeClass,
) -> TileConfig {
    let key = (dtype_key(dtype).to_string(), class);
    match with_table(info, |t| t.get(&key).copied()) {
        Some(Choice::Tiled(t)) if t.fits(g) => t,
        _ => default_tile(g, info, class),
    }
}

/// The outcome of tuning one (dtype, class).
#[derive(Debug, Clone)]
pub struct TuneResult {
    /// "f32" or "f16" (bf16 uses the f16 entry).
    pub dtype: &'static str,
    /// The shape class.
    pub class: ShapeClass,
    /// The (M, N, K) measured.
    pub shape: (usize, usize, usize),
    /// Every candidate tried, with its GFLOP/s.
    pub tried: Vec<(Choice, f64)>,
    /// The winner.
    pub best: Choice,
}

/// Pins what matmuls of `dtype` and `class` run on `device` for the rest of the process
/// (in memory; the disk cache is untouched). For tests, benchmarks and engines that
/// want a fixed configuration. A tiled configuration the adapter cannot run, or the
/// subgroup kernel without fixed-size subgroups, is ignored (the heuristic applies).
/// Has no effect on the CPU device; honoured with `OPENKERN_AUTOTUNE=0` too (that switch
/// only turns off the disk cache and tuning).
pub fn set_choice(device: &Device, dtype: DType, class: ShapeClass, choice: Choice) {
    if device.is_cpu() {
        return;
    }
    with_table(device.info(), |t| {
        t.insert((dtype_key(dtype).to_string(), class), choice)
    });
}

/// Whether `choice` can run on `device` (the tile fits its limits; fixed-size subgroups
/// for the subgroup kernel).
pub fn supports(device: &Device, choice: Choice) -> bool {
    let Some(g) = device.gpu_ctx() else {
        return false;
    };
    match choice {
        Choice::Tiled(t) => t.fits(g),
        Choice::Subgroup => crate::gpu::matmul::fixed_subgroup_size(g, device.info()).is_some(),
    }
}

/// Whether the tuning cache of `device` lacks any (dtype, class) entry.
pub fn needs_tuning(device: &Device) -> bool {
    if !enabled() || device.is_cpu() {
        return false;
    }
    let info = device.info();
    with_table(info, |t| {
        ["f32", "f16"].iter().any(|d| {
            ShapeClass::ALL
                .iter()
                .any(|&c| !t.contains_key(&(d.to_string(), c)))
        })
    })
}

/// Times every fitting candidate on one shape per class and dtype and caches the
/// winners on disk. Returns what was measured. Does nothing (empty result) on the CPU
/// device or with `OPENKERN_AUTOTUNE=0`.
pub fn tune_matmul(device: &Device) -> Result<Vec<TuneResult>> {
    let Some(g) = device.gpu_ctx() else {
        return Ok(Vec::new());
    };
    if !enabled() {
        return Ok(Vec::new());
    }
    let info = device.info();
    let software = matches!(info.device_type, DeviceType::SoftwareGpu | DeviceType::Cpu);
    let iters = if software { 2 } else { 10 };
    let mut results = Vec::new();
    for (dtype, key) in [(DType::F32, "f32"), (DType::F16, "f16")] {
        for class in ShapeClass::ALL {
            let (m, n, k) = class.representative(software);
            let data: Vec<f32> = (0..m.max(n) * k)
                .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
                .collect();
            let a = Tensor::from_f32(device, &data[..m * k], &[m, k], dtype)?;
            let b = Tensor::from_f32(device, &data[..k * n], &[k, n], dtype)?;
            let mut candidates: Vec<Choice> = CANDIDATES
                .iter()
                .filter(|c| c.fits(g))
                .map(|&c| Choice::Tiled(c))
                .collect();
            if crate::gpu::matmul::fixed_subgroup_size(g, info).is_some() {
                candidates.push(Choice::Subgroup);
            }
            let mut tried = Vec::new();
            for cand in candidates {
                with_table(info, |t| t.insert((key.to_string(), class), cand));
                let opts = MatmulOptions {
                    kernel: match cand {
                        Choice::Tiled(_) => MatmulKernel::Tiled,
                        Choice::Subgroup => MatmulKernel::Subgroup,
                    },
                    ..Default::default()
                };
                matmul_with(&a, &b, &opts)?; // build the pipeline, warm up
                let t = device.time(iters, || matmul_with(&a, &b, &opts).map(drop))?;
                tried.push((cand, 2.0 * (m * n * k) as f64 / t.seconds / 1e9));
            }
            let best = tried
                .iter()
                .max_by(|x, y| x.1.total_cmp(&y.1))
                .map(|x| x.0)
                .unwrap_or_else(|| default_choice(g, info, class));
            with_table(info, |t| t.insert((key.to_string(), class), best));
            results.push(TuneResult {
                dtype: key,
                class,
                shape: (m, n, k),
                tried,
                best,
            });
        }
    }
    if let Some(path) = cache_path(info) {
        let text = with_table(info, |t| render_table(t, info));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, text)?;
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_text_round_trips() {
        let mut t = Table::new();
        t.insert(
            ("f32".into(), ShapeClass::Large),
            Choice::Tiled(tc(128, 128, 16, 8, 8)),
        );
        t.insert(("f16".into(), ShapeClass::Small), Choice::Subgroup);
        let info = Device::cpu().info().clone();
        let text = render_table(&t, &info);
        assert_eq!(parse_table(&text), t);
        // Garbage lines are skipped, not fatal.
        assert!(parse_table("f32 huge 1 2 3\nnonsense").is_empty());
    }
}
