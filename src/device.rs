//! Devices: adapter discovery and selection, capabilities and limits, and the CPU device.
//!
//! A [`Device`] is cheap to clone; clones share one stream, one buffer pool and one
//! pipeline cache.

use crate::cpu::CpuContext;
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use std::fmt;
use std::sync::Arc;

/// Environment switch for openkern's own backend choice: `cpu` forces the CPU device,
/// `gpu` makes [`Device::new`] fail instead of falling back to the CPU.
/// Adapter choice within wgpu follows wgpu's own `WGPU_BACKEND`, `WGPU_ADAPTER_NAME`
/// and `WGPU_POWER_PREF`.
pub const DEVICE_ENV: &str = "OPENKERN_DEVICE";

/// Which device to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSelector {
    /// The best adapter (discrete > integrated > virtual > software), honouring
    /// `OPENKERN_DEVICE`, `WGPU_BACKEND`, `WGPU_ADAPTER_NAME` and `WGPU_POWER_PREF`;
    /// the CPU device when no adapter exists.
    Default,
    /// The i-th discrete GPU.
    DiscreteGpu(usize),
    /// The i-th integrated GPU.
    IntegratedGpu(usize),
    /// The i-th virtual GPU.
    VirtualGpu(usize),
    /// The i-th software rasteriser exposed as an adapter (Mesa lavapipe, WARP, llvmpipe).
    SoftwareGpu(usize),
    /// The i-th adapter in [`Device::adapters`] order.
    Adapter(usize),
    /// The native CPU backend.
    Cpu,
}

/// What kind of processor a device runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceType {
    /// A GPU with its own memory.
    DiscreteGpu,
    /// A GPU sharing memory with the host.
    IntegratedGpu,
    /// A GPU in a virtual machine.
    VirtualGpu,
    /// A software implementation of a GPU API running on the CPU.
    SoftwareGpu,
    /// openkern's native CPU backend.
    Cpu,
    /// An adapter that does not say.
    Other,
}

impl DeviceType {
    pub(crate) fn from_wgpu(t: wgpu::DeviceType) -> Self {
        match t {
            wgpu::DeviceType::DiscreteGpu => DeviceType::DiscreteGpu,
            wgpu::DeviceType::IntegratedGpu => DeviceType::IntegratedGpu,
            wgpu::DeviceType::VirtualGpu => DeviceType::VirtualGpu,
            wgpu::DeviceType::Cpu => DeviceType::SoftwareGpu,
            wgpu::DeviceType::Other => DeviceType::Other,
        }
    }

    /// Preference rank for default selection: lower is better.
    pub(crate) fn rank(self, low_power: bool) -> u32 {
        match (self, low_power) {
            (DeviceType::DiscreteGpu, false) | (DeviceType::IntegratedGpu, true) => 0,
            (DeviceType::IntegratedGpu, false) | (DeviceType::DiscreteGpu, true) => 1,
            (DeviceType::VirtualGpu, _) => 2,
            (DeviceType::Other, _) => 3,
            (DeviceType::SoftwareGpu, _) => 4,
            (DeviceType::Cpu, _) => 5,
        }
    }
}

impl fmt::Display for DeviceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceType::DiscreteGpu => "discrete",
            DeviceType::IntegratedGpu => "integrated",
            DeviceType::VirtualGpu => "virtual",
            DeviceType::SoftwareGpu => "software",
            DeviceType::Cpu => "cpu",
            DeviceType::Other => "other",
        })
    }
}

/// One cooperative-matrix configuration an adapter offers (M×N×K tile, input and
/// accumulator types), as reported by VK_KHR_cooperative_matrix or Metal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoopMatrixConfig {
    /// Rows of A and C.
    pub m: u32,
    /// Columns of B and C.
    pub n: u32,
    /// Columns of A, rows of B.
    pub k: u32,
    /// Input element type, e.g. "f16".
    pub ab: &'static str,
    /// Accumulator element type, e.g. "f32".
    pub cr: &'static str,
}

impl fmt::Display for CoopMatrixConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}x{}x{} {}->{}",
            self.m, self.n, self.k, self.ab, self.cr
        )
    }
}

/// The adapter features openkern uses, as this device offers them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFeatures {
    /// Native f16 arithmetic in shaders (SHADER_F16).
    pub shader_f16: bool,
    /// Subgroup operations (SUBGROUP), with the subgroup size range.
    pub subgroup: bool,
    /// Smallest subgroup size the adapter may use.
    pub subgroup_min_size: u32,
    /// Largest subgroup size the adapter may use.
    pub subgroup_max_size: u32,
    /// GPU timestamps on compute passes (TIMESTAMP_QUERY).
    pub timestamp_query: bool,
    /// Cooperative matrices (EXPERIMENTAL_COOPERATIVE_MATRIX): the configurations offered.
    pub cooperative_matrix: Vec<CoopMatrixConfig>,
}

/// The limits openkern checks against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceLimits {
    /// Largest storage buffer one binding may cover, in bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer, in bytes.
    pub max_buffer_size: u64,
    /// Most invocations in one workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Workgroup (shared) memory per workgroup, in bytes.
    pub max_compute_workgroup_storage_size: u32,
    /// Most workgroups per dispatch dimension.
    pub max_compute_workgroups_per_dimension: u32,
}

/// Everything a device says about itself: what `openkern info` prints.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    /// Adapter or CPU model name.
    pub name: String,
    /// "vulkan", "metal", "dx12", "gl", or "cpu".
    pub backend: String,
    /// What kind of device it is.
    pub device_type: DeviceType,
    /// Driver name and version ("" where unknown).
    pub driver: String,
    /// Limits the device was opened with (the adapter's real limits, not wgpu's defaults).
    pub limits: DeviceLimits,
    /// Features openkern uses.
    pub features: DeviceFeatures,
    /// Worker threads (CPU device) or 0.
    pub threads: usize,
    /// Anything worth knowing about how the device was opened (fallbacks taken); see
    /// [`Device::notes`] for these plus what was noted while it ran.
    pub notes: Vec<String>,
}

impl DeviceInfo {
    /// A stable identifier of the adapter and driver, used to key on-disk tuning caches.
    pub fn cache_key(&self) -> String {
        let raw = format!("{}-{}-{}", self.name, self.backend, self.driver);
        raw.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect()
    }
}

/// A description of one adapter wgpu can see, before it is opened.
#[derive(Debug, Clone)]
pub struct AdapterDescription {
    /// Position in [`Device::adapters`] order, for [`DeviceSelector::Adapter`].
    pub index: usize,
    /// Adapter name.
    pub name: String,
    /// Backend name.
    pub backend: String,
    /// Device type.
    pub device_type: DeviceType,
    /// Driver name and version.
    pub driver: String,
}

// One per device, behind an Arc: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Backend {
    Gpu(GpuContext),
    Cpu,
}

pub(crate) struct DeviceInner {
    pub(crate) backend: Backend,
    pub(crate) info: DeviceInfo,
}

/// A compute device: a wgpu adapter's device and queue, or the native CPU backend.
#[derive(Clone)]
pub struct Device {
    pub(crate) inner: Arc<DeviceInner>,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Device({} on {})",
            self.inner.info.name, self.inner.info.backend
        )
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

fn backend_rank(b: wgpu::Backend) -> u32 {
    match b {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    }
}

/// All adapters wgpu sees, in selection order (best first).
fn ranked_adapters() -> Vec<wgpu::Adapter> {
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    let mut adapters = pollster::block_on(instance().enumerate_adapters(backends));
    let low_power = matches!(
        wgpu::PowerPreference::from_env(),
        Some(wgpu::PowerPreference::LowPower)
    );
    adapters.sort_by_key(|a| {
        let info = a.get_info();
        (
            DeviceType::from_wgpu(info.device_type).rank(low_power),
            backend_rank(info.backend),
        )
    });
    adapters
}

impl Device {
    /// The default device: see [`DeviceSelector::Default`].
    pub fn new() -> Result<Self> {
        Self::open(DeviceSelector::Default)
    }

    /// The native CPU device.
    pub fn cpu() -> Self {
        Device {
            inner: Arc::new(DeviceInner {
                backend: Backend::Cpu,
                info: CpuContext::new().info(),
            }),
        }
    }

    /// The best GPU adapter, or an error saying why there is none (no CPU fallback).
    pub fn gpu() -> Result<Self> {
        let adapter = Self::default_adapter()?;
        Self::open_adapter(adapter)
    }

    /// Opens a device on `adapter` through the GPU backend, which returns its context and
    /// what it found out about the adapter.
    fn open_adapter(adapter: wgpu::Adapter) -> Result<Self> {
        let (ctx, info) = GpuContext::open(adapter)?;
        Ok(Self::from_gpu(ctx, info))
    }

    fn from_gpu(ctx: GpuContext, info: DeviceInfo) -> Self {
        Device {
            inner: Arc::new(DeviceInner {
                backend: Backend::Gpu(ctx),
                info,
            }),
        }
    }

    /// Lists every adapter wgpu can see (honouring `WGPU_BACKEND`), best first.
    pub fn adapters() -> Vec<AdapterDescription> {
        ranked_adapters()
            .iter()
            .enumerate()
            .map(|(index, a)| {
                let info = a.get_info();
                AdapterDescription {
                    index,
                    name: info.name.clone(),
                    backend: info.backend.to_str().to_string(),
                    device_type: DeviceType::from_wgpu(info.device_type),
                    driver: format!("{} {}", info.driver, info.driver_info)
                        .trim()
                        .to_string(),
                }
            })
            .collect()
    }

    fn default_adapter() -> Result<wgpu::Adapter> {
        let adapters = ranked_adapters();
        if let Ok(wanted) = std::env::var("WGPU_ADAPTER_NAME") {
            let wanted = wanted.to_lowercase();
            let seen: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
            return adapters
                .into_iter()
                .find(|a| a.get_info().name.to_lowercase().contains(&wanted))
                .ok_or(Error::NoAdapter {
                    reason: format!(
                        "WGPU_ADAPTER_NAME={wanted:?} matches none of {seen:?}; unset it or pick one of those names"
                    ),
                });
        }
        adapters.into_iter().next().ok_or(Error::NoAdapter {
            reason: "wgpu found no Vulkan, Metal, DX12 or GL adapter (on Linux without a GPU, install Mesa's lavapipe: apt-get install mesa-vulkan-drivers)".into(),
        })
    }

    /// Opens the device a selector names.
    pub fn open(selector: DeviceSelector) -> Result<Self> {
        let pick = |t: DeviceType, i: usize| -> Result<Self> {
            ranked_adapters()
                .into_iter()
                .filter(|a| DeviceType::from_wgpu(a.get_info().device_type) == t)
                .nth(i)
                .ok_or(Error::NoAdapter {
                    reason: format!(
                        "there is no {t} adapter number {i}; `openkern info` lists them"
                    ),
                })
                .and_then(Self::open_adapter)
        };
        match selector {
            DeviceSelector::Default => match std::env::var(DEVICE_ENV).as_deref() {
                Ok("cpu") => Ok(Self::cpu()),
                Ok("gpu") => Self::gpu(),
                _ => match Self::default_adapter() {
                    Ok(adapter) => Self::open_adapter(adapter),
                    Err(Error::NoAdapter { .. }) if std::env::var("WGPU_ADAPTER_NAME").is_err() => {
                        Ok(Self::cpu())
                    }
                    Err(e) => Err(e),
                },
            },
            DeviceSelector::Cpu => Ok(Self::cpu()),
            DeviceSelector::DiscreteGpu(i) => pick(DeviceType::DiscreteGpu, i),
            DeviceSelector::IntegratedGpu(i) => pick(DeviceType::IntegratedGpu, i),
            DeviceSelector::VirtualGpu(i) => pick(DeviceType::VirtualGpu, i),
            DeviceSelector::SoftwareGpu(i) => pick(DeviceType::SoftwareGpu, i),
            DeviceSelector::Adapter(i) => ranked_adapters()
                .into_iter()
                .nth(i)
                .ok_or(Error::NoAdapter {
                    reason: format!("there is no adapter number {i}; `openkern info` lists them"),
                })
                .and_then(Self::open_adapter),
        }
    }

    /// Wraps a wgpu device and queue an engine already holds (a renderer, a game engine),
    /// so openkern records into the same device instead of opening a second one.
    /// Features the device was created without are simply not used. openkern sets the
    /// device's uncaptured-error handler and device-lost callback (replacing any set
    /// before): after a loss every openkern call on it is [`Error::DeviceLost`].
    pub fn from_wgpu(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        let (ctx, info) = GpuContext::wrap(
            device,
            queue,
            Vec::new(),
            vec!["wrapped an existing wgpu device".into()],
        );
        Self::from_gpu(ctx, info)
    }

    /// What the device is and what it offers.
    pub fn info(&self) -> &DeviceInfo {
        &self.inner.info
    }

    /// [`DeviceInfo::notes`] (how the device was opened) followed by what the backend
    /// noted since, such as a fallback taken because a kernel failed to build. Each
    /// runtime note is also logged through the `log` crate at warn level; the library
    /// itself prints nothing.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = self.inner.info.notes.clone();
        if let Backend::Gpu(g) = &self.inner.backend {
            notes.extend(g.runtime_notes());
        }
        notes
    }

    /// True for the native CPU backend.
    pub fn is_cpu(&self) -> bool {
        matches!(self.inner.backend, Backend::Cpu)
    }

    /// The wgpu device and queue, for engines that record their own work beside ours.
    /// `None` on the CPU device. Call [`Device::flush`] before submitting your own work
    /// that reads tensors openkern wrote: the queue then runs it after ours.
    pub fn wgpu(&self) -> Option<(&wgpu::Device, &wgpu::Queue)> {
        match &self.inner.backend {
            Backend::Gpu(g) => Some((&g.device, &g.queue)),
            Backend::Cpu => None,
        }
    }

    /// Submits all recorded work without waiting for it: work an engine submits to the
    /// same queue afterwards sees its results. A no-op on the CPU device.
    pub fn flush(&self) -> Result<()> {
        match &self.inner.backend {
            Backend::Gpu(g) => g.flush(),
            Backend::Cpu => Ok(()),
        }
    }

    /// Submits all recorded work and waits for it to finish.
    pub fn sync(&self) -> Result<()> {
        match &self.inner.backend {
            Backend::Gpu(g) => g.sync(),
            Backend::Cpu => Ok(()),
        }
    }

    /// Counters of the stream, buffer pool and pipeline cache (zero on the CPU device):
    /// see [`DeviceStats`].
    pub fn stats(&self) -> DeviceStats {
        match &self.inner.backend {
            Backend::Gpu(g) => g.stats(),
            Backend::Cpu => DeviceStats::default(),
        }
    }

    /// Bounds this device's pipeline cache to `capacity` compiled pipelines (at least 1),
    /// dropping the least recently used at once if it holds more. The default comes from
    /// [`PIPELINE_CAPACITY_ENV`](crate::gpu::PIPELINE_CAPACITY_ENV), else
    /// [`DEFAULT_PIPELINE_CAPACITY`](crate::gpu::DEFAULT_PIPELINE_CAPACITY). A no-op on
    /// the CPU device.
    pub fn set_pipeline_cache_capacity(&self, capacity: usize) {
        if let Backend::Gpu(g) = &self.inner.backend {
            g.set_pipeline_capacity(capacity);
        }
    }

    pub(crate) fn gpu_ctx(&self) -> Option<&GpuContext> {
        match &self.inner.backend {
            Backend::Gpu(g) => Some(g),
            Backend::Cpu => None,
        }
    }

    pub(crate) fn same(&self, op: &'static str, other: &Device) -> Result<()> {
        if self == other {
            Ok(())
        } else {
            Err(Error::DeviceMismatch {
                op,
                lhs: self.info().name.clone(),
                rhs: other.info().name.clone(),
            })
        }
    }
}

/// Counters that show how work reached the GPU and what the device holds, from
/// [`Device::stats`]. All zero on the CPU device. Counts are since the device opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceStats {
    /// Queue submissions made so far.
    pub submissions: u64,
    /// Compute passes recorded so far.
    pub passes: u64,
    /// Buffer requests the pool served from a returned buffer.
    pub pool_hits: u64,
    /// Buffer requests that allocated a new buffer.
    pub pool_misses: u64,
    /// Bytes of storage buffers held idle in the pool now, waiting for reuse
    /// ([`Device::trim_pool`] frees them).
    pub pool_idle_bytes: u64,
    /// Pipelines compiled so far (cache misses, including rebuilds after an eviction).
    pub pipelines_built: u64,
    /// Shader modules created so far (one per pipeline built).
    pub shader_modules_created: u64,
    /// Pipeline requests served from the cache.
    pub pipeline_cache_hits: u64,
    /// Pipelines dropped because the cache was over its capacity.
    pub pipeline_evictions: u64,
    /// Pipelines held in the cache now.
    pub live_pipelines: u64,
    /// The most pipelines the cache keeps (see [`Device::set_pipeline_cache_capacity`]).
    pub pipeline_capacity: u64,
}

/// The earlier name of [`DeviceStats`].
pub type StreamStats = DeviceStats;
