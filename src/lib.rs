//! # openkern
//!
//! Portable tensor kernels: WGSL compute shaders dispatched through wgpu on Vulkan, Metal,
//! DX12 or GL, with a native multithreaded CPU backend where no adapter exists.
//!
//! ```
//! use openkern::{ops, Device, Tensor};
//!
//! # fn main() -> openkern::Result<()> {
//! let device = Device::new()?; // best GPU, or the CPU when there is none
//! let a = Tensor::from_slice(&device, &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
//! let b = Tensor::from_slice(&device, &[10.0f32, 20.0, 30.0], &[3])?;
//! let c = ops::add(&a, &b)?; // broadcasts b over the rows of a
//! assert_eq!(c.to_vec::<f32>()?, vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
//! # Ok(())
//! # }
//! ```
//!
//! Ops record into the device's stream and return at once; work is submitted when data is
//! read back, on [`Device::sync`], or when a batch grows large.
//!
//! ## Dtypes
//!
//! Activations (the tensors an op transforms: `x`, matmul operands, residuals, the two
//! halves of SwiGLU) must share one dtype; the result has it too, and arithmetic is f32
//! whatever the storage. **Parameters** — norm weights and biases, the linear / matmul
//! bias, the softmax mask — may be **f32 or the activation dtype**, for every op that
//! takes them (an f16 model may keep f32 LayerNorm weights). Any other combination is a
//! typed error naming the cast to make: [`Error::ParamDType`] for a parameter,
//! [`Error::DTypeMismatch`] for activations, each with the `.cast(DType::F32)`-style call
//! in its message. The CPU backend reads an f32 parameter at full precision; the GPU
//! backend rounds it to the activation dtype first (a cast of its few elements).
//!
//! ## Errors found on the device: faults belong to their tensors
//!
//! Most mistakes are refused by the call itself. A few can only be seen by a GPU kernel
//! as it runs, because the data exists only there: a token id out of range in
//! [`ops::embedding`] (ids made by `argmax` on the GPU), a `kv_lengths` entry past the
//! keys in [`ops::attention`], a [`ops::kv_cache::KvCache`] append past its capacity. The kernel
//! then never reads or writes out of bounds, and records the first case in a fault word
//! owned by **its output**. The rule:
//!
//! - every read of that output ([`Tensor::to_vec`] and friends) is the op's typed error,
//!   never the undefined data, however often it is read;
//! - every tensor computed from it, by any op, carries the fault on and reads back as the
//!   same error;
//! - reads of unrelated tensors, from any thread, never see it, and the device keeps
//!   working.
//!
//! On the CPU device the same mistakes are errors from the call itself.
//!
//! ## Limits
//!
//! Element counts are checked wherever a shape is formed ([`Error::ShapeOverflow`]); a
//! tensor past the adapter's storage-binding limit is [`Error::TooLarge`]; a host
//! allocation that fails is [`Error::OutOfMemory`] rather than an abort.
//!
//! ## Pipelines, memory and device loss
//!
//! A GPU device compiles each kernel variant once, on first use, and keeps it in a
//! bounded least-recently-used cache. A variant is a kernel, an entry point, the dtypes
//! of its tensors and its override constants, which come from options (an activation, a
//! flag) and from size *buckets* (a workgroup of 64, 128 or 256 lanes), never from an
//! exact shape: however many shapes a program runs, one adapter can build at most
//! [`gpu::pipeline_variants`] pipelines (99,197 in all; a test keeps this number
//! current). The cache keeps [`gpu::DEFAULT_PIPELINE_CAPACITY`] (256) of them;
//! `OPENKERN_PIPELINE_CAPACITY=n` or [`Device::set_pipeline_cache_capacity`] changes that,
//! and [`Device::stats`] counts pipelines built, shader modules created, cache hits,
//! evictions and idle pooled memory.
//!
//! On Vulkan the driver's compiled pipelines also persist across processes (wgpu's
//! `PipelineCache`, one file per adapter and driver in the directory of the matmul
//! tuning results, see [`autotune`]), so a second run skips the driver's compilation
//! where the driver keeps compiled code in that cache (Mesa lavapipe 22 keeps only a
//! 96-byte header, so on it both runs compile); `OPENKERN_PIPELINE_CACHE=0` turns that
//! off.
//!
//! A device that is lost — `wgpu::Device::destroy` on a device handed over with
//! [`Device::from_wgpu`], a driver reset, a removed GPU — fails every later call on it,
//! from any thread, with [`Error::DeviceLost`]: never a panic or a hang. Its tensors are
//! gone; open a new [`Device`] and upload again. A buffer the device cannot allocate
//! (after openkern frees its idle pooled buffers) is [`Error::OutOfMemory`].
#![warn(missing_docs)]

pub mod autotune;
pub mod cpu;
pub mod device;
pub mod dtype;
pub mod error;
pub mod gpu;
pub mod ops;
pub mod shape;
pub mod tensor;

pub use device::{
    AdapterDescription, CoopMatrixConfig, Device, DeviceFeatures, DeviceInfo, DeviceLimits,
    DeviceSelector, DeviceStats, DeviceType, StreamStats,
};
pub use dtype::{DType, Element};
pub use error::{Error, Result};
pub use gpu::timing::{KernelTiming, TimingSource};
pub use half::{bf16, f16};
pub use tensor::Tensor;

impl Device {
    /// Times `iterations` runs of `record`, which records ops on this device: GPU
    /// timestamps summed over passes where the adapter has TIMESTAMP_QUERY, wall clock
    /// otherwise (and always on the CPU device). Windows on one device run one at a time;
    /// passes other threads record during a window are counted in it.
    pub fn time(
        &self,
        iterations: usize,
        mut record: impl FnMut() -> Result<()>,
    ) -> Result<KernelTiming> {
        match self.gpu_ctx() {
            Some(g) => g.time(iterations, record),
            None => {
                let iterations = iterations.max(1);
                let start = std::time::Instant::now();
                for _ in 0..iterations {
                    record()?;
                }
                Ok(KernelTiming {
                    seconds: start.elapsed().as_secs_f64() / iterations as f64,
                    passes_per_iter: 0.0,
                    source: TimingSource::WallClock,
                })
            }
        }
    }

    /// Frees buffers idle in the pool (the GPU buffer pool, or the CPU backend's pool of
    /// large host buffers), and the CPU backend's cached forms of matmul weights (see
    /// [`ops::linear`]; they are made again on a weight's next use).
    pub fn trim_pool(&self) {
        match self.gpu_ctx() {
            Some(g) => g.trim_pool(),
            None => cpu::trim_pool(),
        }
    }
}
