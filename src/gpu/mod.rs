//! The wgpu backend: device context, stream, buffer pool, pipeline cache, timing, and one
//! launcher per op family.

pub(crate) mod activation;
pub(crate) mod attention;
pub(crate) mod buffer_pool;
pub(crate) mod cast;
pub(crate) mod driver_quirks;
pub(crate) mod elementwise;
pub(crate) mod embedding;
pub(crate) mod kv_cache;
pub(crate) mod layout;
pub(crate) mod matmul;
pub(crate) mod norm;
pub(crate) mod pipeline_cache;
pub use pipeline_cache::{
    pipeline_variants, DEFAULT_PIPELINE_CAPACITY, PIPELINE_CAPACITY_ENV, PIPELINE_DISK_CACHE_ENV,
};
pub mod probe;
pub(crate) mod reduce;
pub(crate) mod rope;
pub(crate) mod rows;
pub mod shader;
pub(crate) mod softmax;
pub(crate) mod stream;
pub mod timing;
pub(crate) mod unary;

use crate::device::{
    CoopMatrixConfig, DeviceFeatures, DeviceInfo, DeviceLimits, DeviceStats, DeviceType,
};
use crate::error::{Error, Result};
use buffer_pool::{bucket_size, BufferPool, PooledBuffer};
use pipeline_cache::{KernelKey, Pipeline, PipelineCache, UniformBinding};
use shader::{KernelSource, ShaderHeader};
use std::sync::{Arc, Mutex};
use stream::{Stream, BATCH_LIMIT};
use timing::{KernelTiming, PassTimer, TimingSource};

/// Every kernel the launchers use: each op family's ([`crate::ops::FAMILIES`]) and the
/// limit probes, for the portability test and tooling.
pub fn kernels() -> Vec<&'static shader::KernelSource> {
    let mut v: Vec<&'static shader::KernelSource> = vec![&probe::PROBE];
    for family in crate::ops::FAMILIES {
        v.extend(family.kernels);
    }
    v
}

/// Workgroups per dimension guaranteed by every adapter; larger grids fold into y.
pub(crate) const MAX_GROUPS_PER_DIM: u32 = 65535;

/// Spreads `groups` workgroups over x and y so neither exceeds the per-dimension limit.
/// Kernels recover the linear index as `wid.y * num_workgroups.x + wid.x` and return
/// early past the end.
pub(crate) fn fold_groups(groups: u32) -> [u32; 3] {
    if groups <= MAX_GROUPS_PER_DIM {
        [groups.max(1), 1, 1]
    } else {
        let y = groups.div_ceil(MAX_GROUPS_PER_DIM);
        [groups.div_ceil(y), y, 1]
    }
}

pub(crate) struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) features: wgpu::Features,
    pub(crate) limits: wgpu::Limits,
    stream: Mutex<Stream>,
    pool: Arc<Mutex<BufferPool>>,
    pipelines: Mutex<PipelineCache>,
    /// Mesa lavapipe: some kernels bind their params as storage here (a driver
    /// workaround, see `pipeline_cache`).
    lavapipe: bool,
    errors: Arc<Mutex<Vec<String>>>,
    /// Set (with wgpu's reason) once the device is lost: destroyed, reset by the driver,
    /// or gone. Every later call on it is [`Error::DeviceLost`].
    lost: Arc<Mutex<Option<String>>>,
    /// Set by wgpu's error callback: an error may mean a loss wgpu has not reported yet
    /// (it does at the next poll), so the next [`check_alive`](Self::check_alive) polls.
    suspect: Arc<std::sync::atomic::AtomicBool>,
    /// Held for a whole timing window: two windows on one device would share one timer.
    timing: Mutex<()>,
    /// Set once the cooperative-matrix matmul failed to build on this device: `Auto`
    /// stops choosing it here (other devices keep it).
    pub(crate) coop_broken: std::sync::atomic::AtomicBool,
    /// What was noted while the device ran (see [`crate::Device::notes`]).
    notes: Mutex<Vec<String>>,
    /// Device copies of recent RoPE angle tables, by the host table's identity (see
    /// `rope::device_table`).
    pub(crate) rope_tables: Mutex<Vec<rope::DeviceTable>>,
    name: String,
}

/// A fault word that belongs to one op's output: kernels that find bad input they cannot
/// refuse before running (an out-of-range token id produced on the GPU) record the first
/// case in it as `[code, value, position, bound]` (`FAULT_*` codes). Every read of
/// the tensor it belongs to reads it too and fails while it is set; reads of other tensors,
/// from any thread, never see it.
pub(crate) struct FaultSlot {
    buffer: PooledBuffer,
    /// The word once read back set (it never clears after that).
    seen: std::sync::OnceLock<[u32; 4]>,
}

impl std::fmt::Debug for FaultSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultSlot({:?})", self.seen.get())
    }
}

/// The fault words a tensor computed from `inputs` inherits (each once): reading it
/// reports a fault recorded while its inputs were made.
pub(crate) fn inherited_faults<'t>(
    inputs: impl IntoIterator<Item = &'t crate::tensor::Tensor>,
) -> Vec<Arc<FaultSlot>> {
    let mut all: Vec<Arc<FaultSlot>> = Vec::new();
    for t in inputs {
        for f in &t.faults {
            if !all.iter().any(|a| Arc::ptr_eq(a, f)) {
                all.push(f.clone());
            }
        }
    }
    all
}

/// Size of the fault word: `[code, value, position, bound]`, u32 each.
const FAULT_BYTES: u64 = 16;

/// The fault word's first word says which op recorded it and what went wrong (the
/// first writer wins, through `atomicMax` from 0); the other three words carry the
/// numbers its error reports.
/// `embedding`: an id past the table, `[1, id, position, vocab]`.
pub(crate) const FAULT_INDEX_OUT_OF_RANGE: u32 = 1;
/// `KvCache::append`: an append past the cache, `[2, end row, batch entry, max_len]`.
pub(crate) const FAULT_CACHE_OVERFLOW: u32 = 2;
/// `attention`: a valid length past the keys, `[3, length, batch entry, kv_len]`.
pub(crate) const FAULT_KV_LENGTH: u32 = 3;

/// Features openkern asks for when the adapter has them.
fn wanted_features() -> wgpu::Features {
    wgpu::Features::SHADER_F16
        | wgpu::Features::SUBGROUP
        | wgpu::Features::TIMESTAMP_QUERY
        | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX
        | wgpu::Features::PIPELINE_CACHE
}

fn scalar_name(t: wgpu::wgt::CooperativeScalarType) -> &'static str {
    match t {
        wgpu::wgt::CooperativeScalarType::F16 => "f16",
        wgpu::wgt::CooperativeScalarType::F32 => "f32",
        wgpu::wgt::CooperativeScalarType::I32 => "i32",
        wgpu::wgt::CooperativeScalarType::U32 => "u32",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

impl GpuContext {
    /// Opens a device on `adapter` with its real limits and the features openkern uses:
    /// the context and what the adapter reported.
    pub(crate) fn open(adapter: wgpu::Adapter) -> Result<(GpuContext, DeviceInfo)> {
        let info = adapter.get_info();
        let features = adapter.features() & wanted_features();
        let coop = if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            adapter
                .cooperative_matrix_properties()
                .into_iter()
                .map(|p| CoopMatrixConfig {
                    m: p.m_size,
                    n: p.n_size,
                    k: p.k_size,
                    ab: scalar_name(p.ab_type),
                    cr: scalar_name(p.cr_type),
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut notes = Vec::new();
        let request = |features: wgpu::Features, limits: wgpu::Limits| {
            pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
                label: Some("openkern"),
                required_features: features,
                required_limits: limits,
                // SAFETY: cooperative matrices are wgpu-experimental; openkern uses them only
                // through the validated WGSL in shaders/ and tests that path against a
                // reference on every adapter that offers it.
                experimental_features:
                    if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
                        unsafe { wgpu::ExperimentalFeatures::enabled() }
                    } else {
                        wgpu::ExperimentalFeatures::disabled()
                    },
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            }))
        };
        let (device, queue) = match request(features, adapter.limits()) {
            Ok(pair) => pair,
            Err(first) => {
                // Some drivers refuse their own best limits or an experimental feature;
                // retry with the defaults plus the adapter's storage limits, and say so.
                let base = wgpu::Limits::default();
                let mut limits = base.clone().using_resolution(adapter.limits());
                limits.max_storage_buffer_binding_size =
                    adapter.limits().max_storage_buffer_binding_size;
                limits.max_buffer_size = adapter.limits().max_buffer_size;
                let retry = features - wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
                notes.push(format!("device request with the adapter's best limits failed ({first}); opened with default limits"));
                request(retry, limits).map_err(|source| Error::RequestDevice {
                    adapter: info.name.clone(),
                    source,
                })?
            }
        };
        let mut ctx_notes = notes;
        if device
            .features()
            .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
            && coop.is_empty()
        {
            ctx_notes.push("cooperative matrices enabled but no configuration reported".into());
        }
        Ok(Self::wrap_with_info(
            device,
            queue,
            coop,
            ctx_notes,
            Some(&adapter),
        ))
    }

    pub(crate) fn wrap(
        device: wgpu::Device,
        queue: wgpu::Queue,
        coop: Vec<CoopMatrixConfig>,
        notes: Vec<String>,
    ) -> (GpuContext, DeviceInfo) {
        Self::wrap_with_info(device, queue, coop, notes, None)
    }

    fn wrap_with_info(
        device: wgpu::Device,
        queue: wgpu::Queue,
        coop: Vec<CoopMatrixConfig>,
        notes: Vec<String>,
        adapter: Option<&wgpu::Adapter>,
    ) -> (GpuContext, DeviceInfo) {
        let info = adapter
            .map(|a| a.get_info())
            .unwrap_or_else(|| device.adapter_info());
        let features = device.features();
        let limits = device.limits();
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        let suspect = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let suspect_sink = suspect.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            suspect_sink.store(true, std::sync::atomic::Ordering::Release);
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        // Replaces a callback an engine set on a device it hands over (`from_wgpu`); the
        // loss is then visible through every openkern call instead.
        let lost = Arc::new(Mutex::new(None));
        let lost_sink = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut l) = lost_sink.lock() {
                let why = match reason {
                    wgpu::DeviceLostReason::Destroyed => "the device was destroyed",
                    _ => "the driver lost the device",
                };
                l.get_or_insert_with(|| {
                    if message.is_empty() {
                        why.to_string()
                    } else {
                        format!("{why}: {message}")
                    }
                });
            }
        });
        let device_info = DeviceInfo {
            name: info.name.clone(),
            backend: info.backend.to_str().to_string(),
            device_type: DeviceType::from_wgpu(info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            limits: DeviceLimits {
                max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
                max_buffer_size: limits.max_buffer_size,
                max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
                max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
                max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            },
            features: DeviceFeatures {
                shader_f16: features.contains(wgpu::Features::SHADER_F16),
                subgroup: features.contains(wgpu::Features::SUBGROUP),
                subgroup_min_size: info.subgroup_min_size,
                subgroup_max_size: info.subgroup_max_size,
                timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
                cooperative_matrix: if features
                    .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
                {
                    coop
                } else {
                    Vec::new()
                },
            },
            threads: 0,
            notes,
        };
        // Keep at most a quarter of the largest buffer size (and 1 GiB) idle in the pool.
        let pool_cap = (limits.max_buffer_size / 4).min(1 << 30);
        let disk = pipeline_cache::DiskCache::open(&device, &info, &device_info);
        let ctx = GpuContext {
            device,
            queue,
            features,
            limits,
            stream: Mutex::new(Stream::default()),
            pool: Arc::new(Mutex::new(BufferPool::new(pool_cap))),
            pipelines: Mutex::new(PipelineCache::new(
                pipeline_cache::capacity_from_env(),
                disk,
            )),
            lavapipe: pipeline_cache::is_lavapipe(&info),
            errors,
            lost,
            suspect,
            timing: Mutex::new(()),
            coop_broken: Default::default(),
            notes: Mutex::new(Vec::new()),
            rope_tables: Mutex::new(Vec::new()),
            name: info.name.clone(),
        };
        (ctx, device_info)
    }

    /// Records something a user should know about this device's behaviour (a fallback
    /// taken), for [`crate::Device::notes`], and logs it; the library prints nothing itself.
    pub(crate) fn note(&self, note: String) {
        log::warn!("openkern on {}: {note}", self.name);
        let mut notes = self.notes.lock().unwrap_or_else(|p| p.into_inner());
        if !notes.contains(&note) {
            notes.push(note);
        }
    }

    /// The notes recorded since the device opened.
    pub(crate) fn runtime_notes(&self) -> Vec<String> {
        self.notes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn lock_stream(&self) -> std::sync::MutexGuard<'_, Stream> {
        self.stream.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// [`Error::DeviceLost`] once the device is lost; every entry point checks it first,
    /// so a lost device fails each call with that error instead of a wgpu panic or a wait
    /// that never ends.
    pub(crate) fn check_alive(&self) -> Result<()> {
        if self
            .suspect
            .swap(false, std::sync::atomic::Ordering::AcqRel)
        {
            // wgpu reports a destroyed device's loss from its next poll
            let _ = self.device.poll(wgpu::PollType::Poll);
        }
        match &*self.lost.lock().unwrap_or_else(|p| p.into_inner()) {
            None => Ok(()),
            Some(reason) => Err(Error::DeviceLost {
                device: self.name.clone(),
                reason: reason.clone(),
            }),
        }
    }

    /// The error for a wgpu failure `message`: [`Error::DeviceLost`] where the device is
    /// lost (polled first, so a loss wgpu has not reported yet shows), else [`Error::Gpu`].
    fn lost_or_gpu(&self, message: String) -> Error {
        self.suspect
            .store(true, std::sync::atomic::Ordering::Release);
        self.check_alive().err().unwrap_or(Error::Gpu {
            device: self.name.clone(),
            message,
        })
    }

    /// Errors wgpu reported since the last check.
    fn check_errors(&self) -> Result<()> {
        self.check_alive()?;
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if errors.is_empty() {
            return Ok(());
        }
        let message = errors.join("; ");
        errors.clear();
        Err(Error::Gpu {
            device: self.name.clone(),
            message,
        })
    }

    /// Offset alignment for a dispatch's params in the stream's arena: they bind as a
    /// uniform, or on lavapipe maybe as a storage buffer (the workaround).
    fn params_alignment(&self) -> u64 {
        let uniform = self.limits.min_uniform_buffer_offset_alignment;
        if self.lavapipe {
            uniform.max(self.limits.min_storage_buffer_offset_alignment) as u64
        } else {
            uniform as u64
        }
    }

    /// The most bytes one storage binding (and so one tensor) can hold on this device.
    pub(crate) fn binding_limit(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// Checks a byte size against the storage binding limit.
    pub(crate) fn check_binding(&self, what: impl FnOnce() -> String, bytes: u64) -> Result<()> {
        self.check_alive()?;
        let limit = self.binding_limit();
        if bytes > limit {
            return Err(Error::TooLarge {
                what: what(),
                bytes,
                limit,
                device: self.name.clone(),
            });
        }
        Ok(())
    }

    /// A storage buffer of at least `bytes` (rounded to a pool bucket). Contents undefined.
    /// [`Error::OutOfMemory`] when the device cannot hold it even after freeing the idle
    /// pooled buffers.
    pub(crate) fn alloc(&self, bytes: u64) -> Result<PooledBuffer> {
        self.check_alive()?;
        let size = bucket_size(bytes, self.binding_limit());
        let reused = self
            .pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(size);
        let buffer = match reused {
            Some(b) => b,
            None => self.create_buffer(
                "a tensor's storage buffer",
                &wgpu::BufferDescriptor {
                    label: Some("openkern tensor"),
                    size,
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                },
            )?,
        };
        Ok(PooledBuffer::new(buffer, self.pool.clone()))
    }

    /// Creates a buffer, turning the driver's out-of-memory into [`Error::OutOfMemory`]
    /// (after one retry with the pool's idle buffers freed) instead of an invalid buffer
    /// that fails later.
    fn create_buffer(&self, what: &str, desc: &wgpu::BufferDescriptor<'_>) -> Result<wgpu::Buffer> {
        let attempt = || {
            let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
            let buffer = self.device.create_buffer(desc);
            match pollster::block_on(scope.pop()) {
                None => Ok(buffer),
                Some(e) => Err(e.to_string()),
            }
        };
        attempt()
            .or_else(|_| {
                self.trim_pool();
                attempt()
            })
            .map_err(|message| {
                self.suspect
                    .store(true, std::sync::atomic::Ordering::Release);
                self.check_alive().err().unwrap_or(Error::OutOfMemory {
                    what: format!("{what} ({message})"),
                    bytes: desc.size,
                    device: self.name.clone(),
                })
            })
            .and_then(|buffer| {
                // a lost device fails creation as a validation error, not out-of-memory
                self.check_alive()?;
                Ok(buffer)
            })
    }

    /// A buffer holding `bytes`, written through a staging copy recorded in the stream so
    /// it lands after every kernel already recorded (never `queue.write_buffer`, which would
    /// run before them and could overwrite a pooled buffer a pending kernel still reads).
    pub(crate) fn upload(&self, bytes: &[u8]) -> Result<PooledBuffer> {
        let padded = (bytes.len() as u64).next_multiple_of(4).max(4);
        let dst = self.alloc(padded)?;
        let staging = self.create_buffer(
            "an upload's staging buffer",
            &wgpu::BufferDescriptor {
                label: Some("openkern upload"),
                size: padded,
                usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::MAP_WRITE,
                mapped_at_creation: true,
            },
        )?;
        {
            let mut range = staging
                .get_mapped_range_mut(..)
                .map_err(|e| self.lost_or_gpu(e.to_string()))?;
            let mut padded_bytes = bytes.to_vec();
            padded_bytes.resize(padded as usize, 0);
            range.copy_from_slice(&padded_bytes);
        }
        staging.unmap();
        let mut stream = self.lock_stream();
        stream
            .encoder(&self.device)
            .copy_buffer_to_buffer(&staging, 0, dst.buffer(), 0, padded);
        self.after_record(&mut stream);
        drop(stream);
        self.check_alive()?;
        Ok(dst)
    }

    /// A zero-filled buffer of at least `bytes`, cleared in stream order.
    pub(crate) fn zeros(&self, bytes: u64) -> Result<PooledBuffer> {
        let dst = self.alloc(bytes.next_multiple_of(4).max(4))?;
        let mut stream = self.lock_stream();
        stream
            .encoder(&self.device)
            .clear_buffer(dst.buffer(), 0, None);
        drop(stream);
        self.check_alive()?;
        Ok(dst)
    }

    /// A fresh fault word for one op's output, cleared in stream order.
    pub(crate) fn fault_slot(&self) -> Result<std::sync::Arc<FaultSlot>> {
        Ok(std::sync::Arc::new(FaultSlot {
            buffer: self.zeros(FAULT_BYTES)?,
            seen: std::sync::OnceLock::new(),
        }))
    }

    /// Reads `bytes` of `src` from byte `offset` (a multiple of 4) back: submits the
    /// stream and waits. With the fault word of the tensor being read, reads it in the
    /// same copy and fails (now and on every later read) when the op that wrote the
    /// tensor recorded a fault.
    pub(crate) fn read(
        &self,
        src: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
        faults: &[Arc<FaultSlot>],
    ) -> Result<Vec<u8>> {
        self.check_alive()?;
        for word in faults.iter().filter_map(|f| f.seen.get()) {
            self.report_fault(*word)?;
        }
        let padded = bytes.next_multiple_of(4).max(4);
        let staging = self.create_buffer(
            "a readback staging buffer",
            &wgpu::BufferDescriptor {
                label: Some("openkern readback"),
                size: padded + FAULT_BYTES * faults.len() as u64,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            },
        )?;
        {
            let mut stream = self.lock_stream();
            let encoder = stream.encoder(&self.device);
            encoder.copy_buffer_to_buffer(src, offset, &staging, 0, padded);
            for (i, f) in faults.iter().enumerate() {
                let at = padded + FAULT_BYTES * i as u64;
                encoder.copy_buffer_to_buffer(f.buffer.buffer(), 0, &staging, at, FAULT_BYTES);
            }
            self.flush_locked(&mut stream)?;
        }
        staging.slice(..).map_async(wgpu::MapMode::Read, |_| {});
        self.wait()?;
        let (out, words) = {
            let view = staging
                .get_mapped_range(..)
                .map_err(|e| self.lost_or_gpu(e.to_string()))?;
            let words: Vec<[u32; 4]> = (0..faults.len())
                .map(|i| {
                    let at = padded as usize + FAULT_BYTES as usize * i;
                    bytemuck::pod_read_unaligned(&view[at..at + FAULT_BYTES as usize])
                })
                .collect();
            (view[..bytes as usize].to_vec(), words)
        };
        staging.unmap();
        self.check_errors()?;
        for (f, word) in faults.iter().zip(words) {
            // a set word never clears (the first writer wins), so keep it; a clear one
            // may still be set by later work that shares the word (a KV cache's appends)
            if word[0] != 0 {
                self.report_fault(*f.seen.get_or_init(|| word))?;
            }
        }
        Ok(out)
    }

    /// Turns a fault word read back into the typed error it stands for.
    fn report_fault(&self, [kind, value, position, bound]: [u32; 4]) -> Result<()> {
        if kind == 0 {
            return Ok(());
        }
        match kind {
            FAULT_INDEX_OUT_OF_RANGE => Err(Error::IndexOutOfRange {
                op: "embedding",
                index: u64::from(value),
                position: position as usize,
                bound: bound as usize,
            }),
            FAULT_CACHE_OVERFLOW => Err(Error::CacheOverflow {
                batch: position as usize,
                end: u64::from(value),
                capacity: bound as usize,
            }),
            FAULT_KV_LENGTH => Err(Error::KvLength {
                batch: position as usize,
                length: u64::from(value),
                kv_len: bound as usize,
            }),
            other => Err(Error::Internal {
                message: format!(
                    "a kernel reported unknown fault code {other} on {}",
                    self.name
                ),
            }),
        }
    }

    fn wait(&self) -> Result<()> {
        self.check_alive()?;
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| self.lost_or_gpu(e.to_string()))?;
        self.check_alive()
    }

    /// Submits the stream; resolves timestamps first while a timing window is open.
    fn flush_locked(&self, stream: &mut Stream) -> Result<()> {
        if let Err(lost) = self.check_alive() {
            // nothing recorded can run any more: drop it rather than submit to a lost queue
            stream.discard();
            return Err(lost);
        }
        if let Some(timer) = stream.timer.take() {
            timer.record_resolve(stream.encoder(&self.device));
            stream.submit(&self.queue);
            let mut timer = timer;
            self.wait()?;
            let r = timer.collect(&self.device);
            stream.timer = Some(timer);
            r.map_err(|message| Error::Gpu {
                device: self.name.clone(),
                message,
            })?;
        } else {
            stream.submit(&self.queue);
        }
        self.check_errors()
    }

    pub(crate) fn flush(&self) -> Result<()> {
        let mut stream = self.lock_stream();
        self.flush_locked(&mut stream)
    }

    pub(crate) fn sync(&self) -> Result<()> {
        self.flush()?;
        self.wait()?;
        self.check_errors()
    }

    fn after_record(&self, stream: &mut Stream) {
        stream.batch_passes += 1;
        let timer_full = stream
            .timer
            .as_ref()
            .is_some_and(|t| t.used + 2 > timing::TIMER_QUERIES);
        if stream.batch_passes >= BATCH_LIMIT || timer_full {
            // Errors surface at the next read or sync.
            let _ = self.flush_locked(stream);
        }
    }

    pub(crate) fn stats(&self) -> DeviceStats {
        let stream = self.lock_stream();
        let pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        let pipelines = self.lock_pipelines();
        DeviceStats {
            submissions: stream.submissions,
            passes: stream.passes,
            pool_hits: pool.hits,
            pool_misses: pool.misses,
            pool_idle_bytes: pool.idle_bytes(),
            pipelines_built: pipelines.built,
            shader_modules_created: pipelines.modules,
            pipeline_cache_hits: pipelines.hits,
            pipeline_evictions: pipelines.evictions,
            live_pipelines: pipelines.live() as u64,
            pipeline_capacity: pipelines.capacity() as u64,
        }
    }

    fn lock_pipelines(&self) -> std::sync::MutexGuard<'_, PipelineCache> {
        self.pipelines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bounds the pipeline cache (see [`crate::Device::set_pipeline_cache_capacity`]).
    pub(crate) fn set_pipeline_capacity(&self, capacity: usize) {
        self.lock_pipelines().set_capacity(capacity);
    }

    /// Frees idle pooled buffers.
    pub(crate) fn trim_pool(&self) {
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The pipeline for a kernel variant, built on first use.
    pub(crate) fn pipeline(
        &self,
        kernel: &KernelSource,
        entry: &'static str,
        header: ShaderHeader,
        constants: &[(&'static str, f64)],
    ) -> Result<Arc<Pipeline>> {
        self.check_alive()?;
        let key = KernelKey::new(kernel, entry, header, constants);
        debug_assert!(
            pipeline_cache::key_in_domain(&key),
            "{key:?} is outside the variants gpu::pipeline_variants counts: add its axis to gpu::pipeline_cache::axes (options and buckets only, never a shape)"
        );
        let mut cache = self.lock_pipelines();
        if let Some(p) = cache.get(&key) {
            return Ok(p);
        }
        let source = kernel.specialise(&key.header);
        let build_error = |message: String| Error::ShaderBuild {
            kernel: format!(
                "{}::{entry} {:?} {:?}",
                kernel.name, key.header.dtypes, constants
            ),
            device: self.name.clone(),
            message,
        };
        let module = UniformBinding::for_kernel(self.lavapipe, kernel.name)
            .module(&source)
            .map_err(build_error)?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        // Every loop in openkern's kernels is bounded by a constant or a uniform, so
        // naga's forced loop bounding (a hidden counter and break in every loop) buys
        // nothing and blocks the unrolling of register-tile loops: without unrolling,
        // private arrays are indexed dynamically and spill. Measured on lavapipe at
        // 1024³ f32: tiled matmul 3.9 → 5.4 GFLOP/s, subgroup matmul 3.5 → 7.5.
        // Buffer bounds checks and integer-division guards stay on.
        let mut checks = wgpu::ShaderRuntimeChecks::checked();
        checks.force_loop_bounding = false;
        // SAFETY: the only check relaxed is loop bounding, and no kernel in shaders/
        // has a loop whose trip count is not bounded by a constant or a uniform.
        let module = unsafe {
            self.device.create_shader_module_trusted(
                wgpu::ShaderModuleDescriptor {
                    label: Some(kernel.name),
                    source: wgpu::ShaderSource::Naga(std::borrow::Cow::Owned(module)),
                },
                checks,
            )
        };
        cache.modules += 1;
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.name),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: cache.disk.as_ref().map(|d| &d.cache),
            });
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(build_error(err.to_string()));
        }
        let pipeline = Arc::new(Pipeline {
            layout: pipeline.get_bind_group_layout(0),
            pipeline,
        });
        cache.insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Records one compute pass: `buffers` bind in order to 0..n (each from its offset,
    /// so a view binds at its start), then `params` (if any) as a uniform at binding n.
    pub(crate) fn dispatch(
        &self,
        pipeline: &Pipeline,
        label: &'static str,
        buffers: &[wgpu::BufferBinding<'_>],
        params: Option<&[u8]>,
        workgroups: [u32; 3],
    ) -> Result<()> {
        self.check_alive()?;
        self.record_dispatch(pipeline, label, buffers, params, workgroups, None)?;
        self.check_alive()
    }

    /// [`dispatch`](Self::dispatch) for a kernel that reports bad input through the fault
    /// word of its output, bound after the params as `array<atomic<u32>, 4>`.
    pub(crate) fn dispatch_reporting_faults(
        &self,
        pipeline: &Pipeline,
        label: &'static str,
        buffers: &[wgpu::BufferBinding<'_>],
        params: &[u8],
        workgroups: [u32; 3],
        fault: &FaultSlot,
    ) -> Result<()> {
        self.check_alive()?;
        self.record_dispatch(
            pipeline,
            label,
            buffers,
            Some(params),
            workgroups,
            Some(fault),
        )?;
        self.check_alive()
    }

    fn record_dispatch(
        &self,
        pipeline: &Pipeline,
        label: &'static str,
        buffers: &[wgpu::BufferBinding<'_>],
        params: Option<&[u8]>,
        workgroups: [u32; 3],
        fault: Option<&FaultSlot>,
    ) -> Result<()> {
        let mut stream = self.lock_stream();
        let align = self.params_alignment();
        let uniform = params
            .map(|bytes| {
                let arena = stream.params(&self.device, bytes, align);
                arena.map(|at| (at, bytes.len() as u64))
            })
            .transpose()
            .map_err(|message| self.lost_or_gpu(message))?;
        let mut entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: wgpu::BindingResource::Buffer(b.clone()),
            })
            .collect();
        if let Some(((buffer, offset), len)) = &uniform {
            entries.push(wgpu::BindGroupEntry {
                binding: buffers.len() as u32,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer,
                    offset: *offset,
                    size: std::num::NonZeroU64::new(len.next_multiple_of(16)),
                }),
            });
        }
        if let Some(f) = fault {
            entries.push(wgpu::BindGroupEntry {
                binding: entries.len() as u32,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: f.buffer.buffer(),
                    offset: 0,
                    size: std::num::NonZeroU64::new(FAULT_BYTES),
                }),
            });
        }
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.layout,
            entries: &entries,
        });
        let timestamps = stream.timer.as_mut().and_then(|t| t.next_pair());
        let query_set = stream.timer.as_ref().map(|t| t.queries.clone());
        let encoder = stream.encoder(&self.device);
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(label),
                timestamp_writes: match (timestamps, &query_set) {
                    (Some((b, e)), Some(qs)) => Some(wgpu::ComputePassTimestampWrites {
                        query_set: qs,
                        beginning_of_pass_write_index: Some(b),
                        end_of_pass_write_index: Some(e),
                    }),
                    _ => None,
                },
            });
            pass.set_pipeline(&pipeline.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
        }
        stream.passes += 1;
        self.after_record(&mut stream);
        Ok(())
    }

    /// Times `iterations` runs of `record` (which records passes into this stream).
    pub(crate) fn time(
        &self,
        iterations: usize,
        mut record: impl FnMut() -> Result<()>,
    ) -> Result<KernelTiming> {
        let _window = self.timing.lock().unwrap_or_else(|p| p.into_inner());
        self.sync()?;
        let iterations = iterations.max(1);
        if !self.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            let start = std::time::Instant::now();
            for _ in 0..iterations {
                record()?;
            }
            self.sync()?;
            return Ok(KernelTiming {
                seconds: start.elapsed().as_secs_f64() / iterations as f64,
                passes_per_iter: 0.0,
                source: TimingSource::WallClock,
            });
        }
        self.lock_stream().timer = Some(PassTimer::new(&self.device));
        let run = (|| {
            for _ in 0..iterations {
                record()?;
            }
            self.sync()
        })();
        let timer = self.lock_stream().timer.take();
        run?;
        let timer = timer.ok_or_else(|| Error::Internal {
            message: format!("the timing window on {} lost its timer", self.name),
        })?;
        let period = self.queue.get_timestamp_period() as f64;
        Ok(KernelTiming {
            seconds: timer.ticks as f64 * period * 1e-9 / iterations as f64,
            passes_per_iter: timer.passes as f64 / iterations as f64,
            source: TimingSource::GpuTimestamps,
        })
    }
}

/// The adapter's subgroup size where it has SUBGROUP and the size cannot vary (the
/// subgroup matmul, GEMV and attention kernels are built for one size).
pub(crate) fn fixed_subgroup_size(g: &GpuContext, info: &crate::DeviceInfo) -> Option<u32> {
    let f = &info.features;
    (g.features.contains(wgpu::Features::SUBGROUP)
        && f.subgroup_min_size == f.subgroup_max_size
        && (4..=128).contains(&f.subgroup_max_size))
    .then_some(f.subgroup_max_size)
}
