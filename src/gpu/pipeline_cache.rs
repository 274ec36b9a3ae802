//! Compiled pipelines, built once per (kernel, entry point, dtypes, constants), kept in a
//! bounded least-recently-used cache.
//!
//! A key holds only what changes the compiled code: the kernel, its entry point, the
//! dtypes of its header and its override constants (options such as `LOG`, bucketed
//! sizes such as `WORKGROUP`). Never an exact shape: shapes travel in the uniform params,
//! so the number of variants the library can build is finite (see
//! [`crate::gpu::pipeline_variants`]) and a long varied run stops building once it has
//! seen them. The cache still has a bound, [`PIPELINE_CAPACITY_ENV`] (default
//! [`DEFAULT_PIPELINE_CAPACITY`]), past which the least recently used pipeline is dropped
//! and rebuilt when asked for again.
//!
//! ## Compiled pipelines on disk
//!
//! On Vulkan the driver's compiled pipelines also persist across runs through wgpu's
//! `PipelineCache`, in one file per adapter and driver beside the matmul tuning results
//! (see [`crate::autotune`] for the directory): a second process skips the driver's
//! compilation of every pipeline the first one built, where the driver puts compiled
//! code in its pipeline cache (Mesa lavapipe 22.3 writes only a 96-byte header: no gain
//! there). `OPENKERN_PIPELINE_CACHE=0`
//! ([`PIPELINE_DISK_CACHE_ENV`]) turns it off. The file is written when the device is
//! dropped and, while it runs, at most every few seconds after new pipelines were built.
//!
//! ## Driver workaround: Mesa lavapipe compiles on every bind
//!
//! Mesa's lavapipe inlines uniform-buffer values that a shader tests in a branch or loop
//! bound into a fresh copy of the shader and compiles that copy with LLVM. In Mesa 22.x
//! it does so on *every* `vkCmdBindPipeline` of such a pipeline and never frees the
//! result (`update_inline_shader_state` in `lvp_execute.c`); later versions keep one
//! variant per distinct set of values, which is one per shape. For most kernels the
//! driver gives up after the first try (the inlined copy is not smaller enough), but
//! softmax's params (`has_mask`, `causal`, the `-inf` and NaN it stores) keep it
//! inlining: f32 and bf16 softmax leaked about 300 KiB of JIT code per call and ran 15×
//! slower. On lavapipe the kernels in [`LAVAPIPE_RESPECIALISED`] therefore bind `params`
//! as a read-only storage buffer, which the driver never inlines
//! ([`UniformBinding::Storage`], applied to the naga module, so the kernel files stay as
//! written). Only those: llvmpipe reads a uniform faster than a storage buffer (matmul
//! 512³ ran 2.5× slower with storage params). `tests/pipeline_cache.rs` runs every op
//! family repeatedly on lavapipe and fails if any kernel compiles per call, so the list
//! stays complete.

use super::shader::{KernelSource, ShaderHeader};
use std::collections::HashMap;
use std::sync::Arc;

/// Environment variable that bounds the number of compiled pipelines a device keeps:
/// past it the least recently used one is dropped. A positive integer; unset, empty or
/// invalid means [`DEFAULT_PIPELINE_CAPACITY`].
pub const PIPELINE_CAPACITY_ENV: &str = "OPENKERN_PIPELINE_CAPACITY";

/// Environment switch: `0` keeps compiled pipelines off the disk (no file is read or
/// written); anything else, or unset, persists them on Vulkan (see the module docs).
pub const PIPELINE_DISK_CACHE_ENV: &str = "OPENKERN_PIPELINE_CACHE";

/// Compiled pipelines a device keeps by default: more than the variants one adapter
/// uses in practice (a model touches a few dozen), fewer than the library can build.
pub const DEFAULT_PIPELINE_CAPACITY: usize = 256;

/// The capacity [`PIPELINE_CAPACITY_ENV`] asks for, or the default.
pub(crate) fn capacity_from_env() -> usize {
    parse_capacity(std::env::var(PIPELINE_CAPACITY_ENV).ok().as_deref())
}

fn parse_capacity(value: Option<&str>) -> usize {
    value
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_PIPELINE_CAPACITY)
}

/// Seconds between two writes of the disk cache while a device runs.
const SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// wgpu's driver-level pipeline cache, loaded from and saved to one file.
pub(crate) struct DiskCache {
    pub(crate) cache: wgpu::PipelineCache,
    path: std::path::PathBuf,
    /// Pipelines built since the file was last written.
    unsaved: u64,
    last_save: std::time::Instant,
}

impl DiskCache {
    /// The cache for `device`, filled from its file where one exists; `None` where the
    /// backend has no pipeline cache (everything but Vulkan), the device was opened
    /// without PIPELINE_CACHE, there is no cache directory, or the switch is off.
    pub(crate) fn open(
        device: &wgpu::Device,
        adapter: &wgpu::AdapterInfo,
        info: &crate::device::DeviceInfo,
    ) -> Option<Self> {
        if std::env::var(PIPELINE_DISK_CACHE_ENV).is_ok_and(|v| v.trim() == "0")
            || !device.features().contains(wgpu::Features::PIPELINE_CACHE)
        {
            return None;
        }
        let key = wgpu::util::pipeline_cache_key(adapter)?;
        // beside the tuning results, keyed by adapter (wgpu's key) and driver (ours)
        let dir = crate::autotune::cache_path(info)?.parent()?.to_path_buf();
        let path = dir.join(format!("{key}-{}.bin", info.cache_key()));
        let data = std::fs::read(&path).ok();
        // SAFETY: the data is what `PipelineCache::get_data` wrote for this adapter and
        // driver (the file name says which); wgpu checks its header against the adapter
        // and, with `fallback`, starts empty when it does not match or is corrupt.
        let cache = unsafe {
            device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                label: Some("openkern pipelines"),
                data: data.as_deref(),
                fallback: true,
            })
        };
        Some(DiskCache {
            cache,
            path,
            unsaved: 0,
            last_save: std::time::Instant::now(),
        })
    }

    /// Notes a pipeline built through the cache; writes the file when it is due.
    fn built(&mut self) {
        self.unsaved += 1;
        if self.last_save.elapsed() >= SAVE_INTERVAL {
            self.save();
        }
    }

    /// Writes the cache's data (a temporary file renamed over the old one, so readers
    /// never see half a file). Failures are logged, never errors: the cache only saves
    /// time.
    pub(crate) fn save(&mut self) {
        if self.unsaved == 0 {
            return;
        }
        self.unsaved = 0;
        self.last_save = std::time::Instant::now();
        let Some(data) = self.cache.get_data() else {
            return;
        };
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        let written = self
            .path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&tmp, &data))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            log::warn!(
                "openkern: could not write the pipeline cache {}: {e}",
                self.path.display()
            );
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// Everything that changes the compiled code of a kernel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct KernelKey {
    pub kernel: &'static str,
    pub entry: &'static str,
    pub header: ShaderHeader,
    /// Override constants as (name, f64 bits), sorted by name.
    pub constants: Vec<(&'static str, u64)>,
}

impl KernelKey {
    pub(crate) fn new(
        kernel: &KernelSource,
        entry: &'static str,
        header: ShaderHeader,
        constants: &[(&'static str, f64)],
    ) -> Self {
        let mut constants: Vec<_> = constants.iter().map(|&(n, v)| (n, v.to_bits())).collect();
        constants.sort_unstable();
        KernelKey {
            kernel: kernel.name,
            entry,
            header,
            constants,
        }
    }
}

/// How a kernel's uniform `params` are bound on this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UniformBinding {
    /// As written: `var<uniform>`.
    Uniform,
    /// As `var<storage, read>`, where the driver would specialise the shader on uniform
    /// values (Mesa lavapipe; see the module docs).
    Storage,
}

/// Kernels whose uniform params make Mesa lavapipe compile a new copy per dispatch
/// (see the module docs); on lavapipe their params bind as storage.
pub(crate) const LAVAPIPE_RESPECIALISED: &[&str] = &["softmax", "softmax_subgroup"];

/// Whether the adapter is Mesa lavapipe (llvmpipe behind Vulkan).
pub(crate) fn is_lavapipe(info: &wgpu::AdapterInfo) -> bool {
    info.backend == wgpu::Backend::Vulkan
        && info.device_type == wgpu::DeviceType::Cpu
        && (info.name.contains("llvmpipe") || info.driver.contains("llvmpipe"))
}

impl UniformBinding {
    /// The binding `kernel` needs on a device that is (or is not) lavapipe.
    pub(crate) fn for_kernel(lavapipe: bool, kernel: &str) -> Self {
        if lavapipe && LAVAPIPE_RESPECIALISED.contains(&kernel) {
            UniformBinding::Storage
        } else {
            UniformBinding::Uniform
        }
    }

    /// Parses a specialised kernel and applies the binding to its naga module.
    pub(crate) fn module(self, source: &str) -> Result<naga::Module, String> {
        let mut module =
            naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
        if self == UniformBinding::Storage {
            for (_, var) in module.global_variables.iter_mut() {
                if var.space == naga::AddressSpace::Uniform {
                    var.space = naga::AddressSpace::Storage {
                        access: naga::StorageAccess::LOAD,
                    };
                }
            }
        }
        Ok(module)
    }
}

/// A built pipeline with its bind group layout, fetched once: wgpu registers a new layout
/// handle on every `get_bind_group_layout` call, which is work on each dispatch otherwise.
pub(crate) struct Pipeline {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
}

/// The cache and its counters (see [`crate::DeviceStats`]).
pub(crate) struct PipelineCache {
    /// Each pipeline with the tick of its last use.
    pipelines: HashMap<KernelKey, (Arc<Pipeline>, u64)>,
    tick: u64,
    capacity: usize,
    pub(crate) built: u64,
    pub(crate) modules: u64,
    pub(crate) hits: u64,
    pub(crate) evictions: u64,
    /// The driver's cache persisted on disk, where there is one.
    pub(crate) disk: Option<DiskCache>,
}

impl Drop for PipelineCache {
    fn drop(&mut self) {
        if let Some(d) = &mut self.disk {
            d.save();
        }
    }
}

impl PipelineCache {
    pub(crate) fn new(capacity: usize, disk: Option<DiskCache>) -> Self {
        PipelineCache {
            disk,
            pipelines: HashMap::new(),
            tick: 0,
            capacity: capacity.max(1),
            built: 0,
            modules: 0,
            hits: 0,
            evictions: 0,
        }
    }

    /// The cached pipeline for `key`, marked as just used.
    pub(crate) fn get(&mut self, key: &KernelKey) -> Option<Arc<Pipeline>> {
        self.tick += 1;
        let tick = self.tick;
        let (p, used) = self.pipelines.get_mut(key)?;
        *used = tick;
        self.hits += 1;
        Some(p.clone())
    }

    /// Adds a freshly built pipeline, dropping the least recently used past the capacity.
    pub(crate) fn insert(&mut self, key: KernelKey, pipeline: Arc<Pipeline>) {
        self.tick += 1;
        self.built += 1;
        if let Some(d) = &mut self.disk {
            d.built();
        }
        self.pipelines.insert(key, (pipeline, self.tick));
        self.shrink();
    }

    fn shrink(&mut self) {
        while self.pipelines.len() > self.capacity {
            let oldest = self
                .pipelines
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    self.pipelines.remove(&k);
                    self.evictions += 1;
                }
                None => break,
            }
        }
    }

    /// Pipelines held now.
    pub(crate) fn live(&self) -> usize {
        self.pipelines.len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sets the bound, evicting at once down to it.
    pub(crate) fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        self.shrink();
    }
}

/// One axis of a kernel's variants: override constants that vary together, the value
/// tuples launchers may give them, and how many of those one adapter can use.
struct Axis {
    names: &'static [&'static str],
    values: Vec<Vec<f64>>,
    per_adapter: usize,
}

fn axis(names: &'static [&'static str], values: Vec<Vec<f64>>) -> Axis {
    let per_adapter = values.len();
    Axis {
        names,
        values,
        per_adapter,
    }
}

/// `name` taking each of `values`.
fn one(name: &'static [&'static str], values: impl IntoIterator<Item = u32>) -> Axis {
    axis(
        name,
        values.into_iter().map(|v| vec![f64::from(v)]).collect(),
    )
}

/// The values an adapter's fixed subgroup size can take (one per adapter).
const SUBGROUP_SIZES: [u32; 6] = [4, 8, 16, 32, 64, 128];

/// Every override-constant axis a launcher varies, per kernel (subgroup twins share their
/// file's). Launchers choose each value from options (an activation, a flag), dtypes,
/// or a bucket of a size (a workgroup of 64/128/256 lanes, an attention register tile
/// rounded to a multiple of 4): never an exact shape. Debug builds check every key
/// against this table ([`key_in_domain`]), so a launcher that starts keying on a shape
/// fails the test suite; [`pipeline_variants`] counts from it.
fn axes(kernel: &str) -> Vec<Axis> {
    let flag = |name| one(name, 0..=1);
    let epilogue = || vec![flag(&["HAS_BIAS"]), one(&["ACT"], 0..=5)];
    let row_workgroup = || one(&["WORKGROUP"], [64, 128, 256]);
    match kernel.trim_end_matches("_subgroup") {
        "activation" => vec![one(&["OP"], 1..=5)],
        // attention_subgroup (not a twin: its own constants)
        "attention" if kernel.ends_with("_subgroup") => vec![
            Axis {
                names: &["SG"],
                values: SUBGROUP_SIZES.iter().map(|&s| vec![f64::from(s)]).collect(),
                per_adapter: 1,
            },
            one(&["TM"], 1..=8),
            one(&["TN"], [8]),
            one(
                &["VC"],
                [
                    1, 2, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64,
                ],
            ),
            Axis {
                names: &["WGS"],
                values: [1, 2, 4, 8, 16].map(|w| vec![f64::from(w)]).to_vec(),
                // one subgroup, or 64 / SG of them
                per_adapter: 2,
            },
            flag(&["OCTETS_V"]),
        ],
        "attention" => vec![
            one(&["TPR"], [1, 2, 4, 8]),
            one(&["PER"], [1, 2, 4, 8, 12, 16, 20, 24, 28, 32]),
            one(&["BK"], (1..=8).map(|k| 4 * k)),
        ],
        "elementwise" => vec![one(&["OP"], 0..=3)],
        "kv_cache" => vec![one(&["WORKGROUP"], [256])],
        "matmul_coop" => {
            let mut wg_step = vec![vec![128.0, 1.0]];
            for q in [4u32, 8] {
                for s in SUBGROUP_SIZES {
                    wg_step.push(vec![f64::from(q * s), f64::from(q)]);
                }
            }
            let mut v = vec![
                axis(&["SGM", "SGN"], vec![vec![2.0, 2.0], vec![4.0, 2.0]]),
                Axis {
                    names: &["WG", "STEP"],
                    values: wg_step,
                    // the 128-lane fallback or one fixed subgroup size
                    per_adapter: 2,
                },
            ];
            v.extend(epilogue());
            v
        }
        "matmul_gemv" => {
            let mut v = vec![
                one(&["MR"], 1..=8),
                flag(&["VEC2_A"]),
                flag(&["VEC2_B"]),
                one(&["WG"], [128]),
                one(&["TEAM"], [32]),
                Axis {
                    names: &["COLS"],
                    values: vec![vec![4.0], vec![8.0]],
                    // gpu::matmul::gemv::gemv_subgroup_columns: by adapter type
                    per_adapter: 1,
                },
                // A in octets only with B in octets
                axis(
                    &["OCTETS_A", "OCTETS_B"],
                    vec![vec![0.0, 0.0], vec![0.0, 1.0], vec![1.0, 1.0]],
                ),
                Axis {
                    names: &["SG"],
                    values: SUBGROUP_SIZES.iter().map(|&s| vec![f64::from(s)]).collect(),
                    per_adapter: 1,
                },
            ];
            v.extend(epilogue());
            v
        }
        "matmul_naive" | "matmul_reduce" => epilogue(),
        "matmul" => {
            // matmul_subgroup (its twin suffix trimmed)
            let mut v = vec![
                Axis {
                    names: &["SG"],
                    values: SUBGROUP_SIZES.iter().map(|&s| vec![f64::from(s)]).collect(),
                    per_adapter: 1,
                },
                // gpu::matmul::subgroup::subgroup_rows: TM 8..32 by M (24 at most with
                // B pairs along K), two subgroups per workgroup from M = 256
                axis(
                    &["TM", "TN", "WGS"],
                    vec![
                        vec![8.0, 4.0, 1.0],
                        vec![16.0, 4.0, 1.0],
                        vec![24.0, 4.0, 1.0],
                        vec![24.0, 4.0, 2.0],
                        vec![32.0, 4.0, 1.0],
                        vec![32.0, 4.0, 2.0],
                    ],
                ),
                flag(&["A_SHUFFLE"]),
                flag(&["A_PAIRS"]),
                flag(&["B_PAIRS_K"]),
                flag(&["B_PAIRS_N"]),
            ];
            v.extend(epilogue());
            v
        }
        "matmul_tiled" => {
            let tiles = crate::autotune::CANDIDATES
                .iter()
                .map(|t| [t.bm, t.bn, t.bk, t.tm, t.tn].map(f64::from).to_vec())
                .collect();
            let mut v = vec![
                axis(&["BM", "BN", "BK", "TM", "TN"], tiles),
                flag(&["A_KCONTIG"]),
                flag(&["B_NCONTIG"]),
                flag(&["VEC2_A"]),
                flag(&["VEC2_B"]),
            ];
            v.extend(epilogue());
            v
        }
        "norm" => vec![
            flag(&["LAYER"]),
            flag(&["RESIDUAL"]),
            flag(&["WRITE_SUM"]),
            flag(&["L2"]),
            row_workgroup(),
        ],
        "probe" => vec![one(&["FMA_LOOP"], [512])],
        "reduce" => vec![one(&["OP"], 0..=3), row_workgroup()],
        "softmax" => vec![flag(&["LOG"]), row_workgroup()],
        "unary" => vec![one(&["OP"], 0..=9)],
        _ => Vec::new(),
    }
}

/// Whether a launcher can ask `kernel` for these tensor dtypes: where the kernel takes
/// mixed dtypes, the matmuls bind A and B in one dtype and the bias in it or f32
/// ([`KernelSource::headers`] lists every combination, an upper bound).
fn header_used(kernel: &str, dtypes: &[crate::dtype::DType]) -> bool {
    use crate::dtype::DType::{F16, F32};
    match kernel.trim_end_matches("_subgroup") {
        "matmul_tiled" | "matmul" | "matmul_naive" | "matmul_gemv" => {
            dtypes[0] == dtypes[1] && (dtypes[2] == dtypes[0] || dtypes[2] == F32)
        }
        "matmul_reduce" => dtypes[0] == F32,
        "matmul_coop" => matches!(dtypes[0], F16 | F32),
        _ => true,
    }
}

/// Whether every constant of `key` lies on one of its kernel's axes, with a value
/// tuple that axis allows (a constant a launcher leaves out keeps its WGSL default).
/// Tile configurations other than the tuner's candidates (set through
/// [`crate::autotune::set_choice`]) pass when each size is one the candidates use.
pub(crate) fn key_in_domain(key: &KernelKey) -> bool {
    if !header_used(key.kernel, &key.header.dtypes) {
        return false;
    }
    let axes = axes(key.kernel);
    let value = |name: &str| {
        key.constants
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, bits)| f64::from_bits(bits))
    };
    let known = key
        .constants
        .iter()
        .all(|(n, _)| axes.iter().any(|a| a.names.contains(n)));
    known
        && axes.iter().all(|a| {
            let got: Vec<Option<f64>> = a.names.iter().map(|n| value(n)).collect();
            if got.iter().all(Option::is_none) {
                return true;
            }
            let matches = |tuple: &Vec<f64>| {
                got.iter()
                    .zip(tuple)
                    .all(|(g, v)| g.is_none_or(|g| g == *v))
            };
            a.values.iter().any(matches)
                || (a.names[0] == "BM"
                    && got
                        .iter()
                        .enumerate()
                        .all(|(i, g)| g.is_none_or(|g| a.values.iter().any(|t| t[i] == g))))
        })
}

/// How many distinct pipelines the library can build on one adapter, at most: for each
/// registered kernel ([`crate::gpu::kernels`]), its entry points × the dtype headers its
/// launchers can ask for (A and B of a matmul share a dtype, its bias is that or f32) ×
/// the values of each override axis one adapter uses. Shapes
/// never enter a key, so this bound holds however many shapes a program runs; the
/// default pipeline cache capacity is below it only because no program uses every
/// combination of options and dtypes.
pub fn pipeline_variants() -> usize {
    super::kernels()
        .iter()
        .map(|k| {
            let constants: usize = axes(k.name).iter().map(|a| a.per_adapter).product();
            let headers = k
                .headers()
                .iter()
                // a 16-byte binding (ShaderHeader::quads) goes with its OCTETS flag,
                // already counted on the constants' axes
                .filter(|h| h.quads == 0 && header_used(k.name, &h.dtypes))
                .count();
            k.entry_points.len() * headers * constants
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::{parse_capacity, DEFAULT_PIPELINE_CAPACITY};

    #[test]
    fn capacity_parses_positive_integers_only() {
        assert_eq!(parse_capacity(None), DEFAULT_PIPELINE_CAPACITY);
        assert_eq!(parse_capacity(Some(" 12 ")), 12);
        for bad in ["0", "-3", "many", ""] {
            assert_eq!(
                parse_capacity(Some(bad)),
                DEFAULT_PIPELINE_CAPACITY,
                "{bad}"
            );
        }
    }
}
