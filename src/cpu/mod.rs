//! The native CPU backend: the same ops in Rust, multithreaded with rayon.

pub(crate) mod activation;
pub(crate) mod attention;
pub(crate) mod cast;
pub(crate) mod elementwise;
pub(crate) mod embedding;
pub(crate) mod gemv;
pub(crate) mod lanes;
pub(crate) mod layout;
pub(crate) mod math;
pub(crate) mod matmul;
pub(crate) mod norm;
pub(crate) mod packed;
pub mod probe;
pub(crate) mod reduce;
pub(crate) mod rope;
pub(crate) mod softmax;
pub(crate) mod table16;
pub(crate) mod tasks;
pub(crate) mod unary;
pub(crate) mod weights;

use crate::device::{DeviceFeatures, DeviceInfo, DeviceLimits, DeviceType};
use crate::dtype::{DType, Element};
use half::{bf16, f16};

/// Elements below which CPU kernels stay on one thread (spawning costs more).
pub(crate) const PARALLEL_MIN: usize = 1 << 15;

pub(crate) struct CpuContext {
    threads: usize,
}

impl CpuContext {
    pub(crate) fn new() -> Self {
        CpuContext {
            threads: rayon::current_num_threads(),
        }
    }

    pub(crate) fn info(&self) -> DeviceInfo {
        let name = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        let mut simd = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") {
                simd.push("avx2");
            }
            if is_x86_feature_detected!("fma") {
                simd.push("fma");
            }
            if is_x86_feature_detected!("avx512f") {
                simd.push("avx512f");
            }
        }
        DeviceInfo {
            name,
            backend: "cpu".into(),
            device_type: DeviceType::Cpu,
            driver: format!("openkern native ({})", simd.join("+")),
            limits: DeviceLimits {
                max_storage_buffer_binding_size: u64::MAX,
                max_buffer_size: u64::MAX,
                max_compute_invocations_per_workgroup: 0,
                max_compute_workgroup_storage_size: 0,
                max_compute_workgroups_per_dimension: 0,
            },
            features: DeviceFeatures::default(),
            threads: self.threads,
            notes: Vec::new(),
        }
    }
}

/// Host storage of a CPU tensor.
pub(crate) enum CpuStorage {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    U32(Vec<u32>),
}

impl CpuStorage {
    pub(crate) fn from_slice<T: Element>(data: &[T]) -> Self {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        match T::DTYPE {
            DType::F32 => CpuStorage::F32(bytemuck::pod_collect_to_vec(bytes)),
            DType::F16 => CpuStorage::F16(bytemuck::pod_collect_to_vec(bytes)),
            DType::BF16 => CpuStorage::BF16(bytemuck::pod_collect_to_vec(bytes)),
            DType::U32 => CpuStorage::U32(bytemuck::pod_collect_to_vec(bytes)),
        }
    }

    pub(crate) fn zeros(dtype: DType, n: usize) -> Self {
        match dtype {
            DType::F32 => CpuStorage::F32(vec![0.0; n]),
            DType::F16 => CpuStorage::F16(vec![f16::ZERO; n]),
            DType::BF16 => CpuStorage::BF16(vec![bf16::ZERO; n]),
            DType::U32 => CpuStorage::U32(vec![0; n]),
        }
    }

    pub(crate) fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F16(_) => DType::F16,
            CpuStorage::BF16(_) => DType::BF16,
            CpuStorage::U32(_) => DType::U32,
        }
    }

    /// Storage of `dtype` from f32 results, rounding to nearest even.
    pub(crate) fn from_f32(dtype: DType, mut v: Vec<f32>) -> Self {
        let s = match dtype {
            DType::F32 => return CpuStorage::F32(v),
            DType::F16 => CpuStorage::F16(narrowed(&v)),
            DType::BF16 => CpuStorage::BF16(narrowed(&v)),
            DType::U32 => CpuStorage::U32(v.iter().map(|&x| x as u32).collect()),
        };
        // the f32 staging buffer (a matmul's accumulators, say) goes back to the pool
        give(&mut v);
        s
    }
}

/// `v` rounded to a 16-bit type in parallel blocks (half's slice conversion: F16C where
/// the CPU has it, not one software conversion per element).
fn narrowed<T: Pooled + Element>(v: &[f32]) -> Vec<T> {
    use rayon::prelude::*;
    let mut out = take::<T>(v.len());
    if v.len() <= CONVERT_SERIAL_MAX {
        math::narrow(v, &mut out);
        return out;
    }
    out.par_chunks_mut(unary::BLOCK)
        .zip(v.par_chunks(unary::BLOCK))
        .for_each(|(o, s)| math::narrow(s, o));
    out
}

/// Most elements a 16-bit ↔ f32 conversion of a whole operand (a matmul's widened input,
/// its narrowed output) runs on one thread: F16C converts 128 K elements in about 15 µs,
/// and waking the pool's threads and joining them cost 10-15 µs a call here (a 16 × 384
/// × 384 f16 linear took 51 µs against f32's 24 µs with two such round trips).
pub(crate) const CONVERT_SERIAL_MAX: usize = 1 << 17;

/// Recycled host buffers for large CPU op outputs.
///
/// With the system allocator a large output (tens of MB) is fresh mmap'd memory on every
/// call, and first-touching it costs a page fault plus a kernel page clear per 4 KiB:
/// measured on 4096x4096 f32 softmax, as much time as the op itself. Large buffers
/// therefore return here when their CPU tensor drops, and the next op output of the same
/// element type that fits reuses one (its stale contents are overwritten; ops that take
/// from the pool write every element). Bounded: buffers of at least [`POOL_MIN_BYTES`],
/// at most [`POOL_MAX_ENTRIES`] per type (the smallest makes way for a larger one) and
/// [`POOL_MAX_BYTES`] idle per type; `Device::trim_pool` empties it.
pub(crate) trait Pooled: Copy + Send + 'static {
    fn pool() -> &'static std::sync::Mutex<Vec<Vec<Self>>>;
}

/// Smallest buffer worth pooling. Below it the allocator's free lists serve quickly, but
/// `take` must hand out zeroed memory there: a 72 × 1536 f32 linear output cleared per
/// call was 4 % of that linear's time (a memset the op overwrites at once), so buffers
/// from 64 KiB up come back stale from the pool instead.
pub(crate) const POOL_MIN_BYTES: usize = 64 << 10;
/// Most idle buffers kept per element type (a model's forward pass has a few dozen
/// output sizes in flight; when the pool is full a larger buffer displaces the smallest).
pub(crate) const POOL_MAX_ENTRIES: usize = 32;
/// Most idle bytes kept per element type.
pub(crate) const POOL_MAX_BYTES: usize = 1 << 30;

macro_rules! pooled {
    ($($t:ty),*) => {$(
        impl Pooled for $t {
            fn pool() -> &'static std::sync::Mutex<Vec<Vec<Self>>> {
                static POOL: std::sync::Mutex<Vec<Vec<$t>>> = std::sync::Mutex::new(Vec::new());
                &POOL
            }
        }
    )*};
}
pooled!(f32, f16, bf16, u32);

/// Host storage from this size up is probed before it is allocated. The probe costs a
/// map and unmap of address space; below this size that would be a syscall pair on the
/// hot path of ordinary ops for allocations that, short of a tight `ulimit`, cannot fail.
const PROBE_MIN_BYTES: usize = 64 << 20;

/// Refuses, as [`Error::OutOfMemory`], host storage of `n` elements of `dtype` that the
/// allocator cannot provide, before anything allocates it: an infallible allocation of
/// that size would abort the process. (The probe reserves address space and frees it;
/// the real buffer is allocated right after.) Sizes below [`PROBE_MIN_BYTES`] are not
/// probed.
pub(crate) fn ensure_host_memory(
    what: impl FnOnce() -> String,
    dtype: DType,
    n: usize,
) -> crate::error::Result<()> {
    let bytes = n.checked_mul(dtype.size_in_bytes());
    let ok =
        bytes.is_some_and(|b| b < PROBE_MIN_BYTES || Vec::<u8>::new().try_reserve_exact(b).is_ok());
    if ok {
        Ok(())
    } else {
        Err(crate::error::Error::OutOfMemory {
            what: what(),
            bytes: bytes.map_or(u64::MAX, |b| b as u64),
            device: "the host (CPU device)".into(),
        })
    }
}

/// A vector of `n` elements whose contents the caller overwrites entirely: a pooled
/// buffer when a large enough one is idle (stale values), else a zeroed new one.
pub(crate) fn take<T: Pooled + Element>(n: usize) -> Vec<T> {
    if n * std::mem::size_of::<T>() >= POOL_MIN_BYTES {
        let mut pool = T::pool().lock().unwrap_or_else(|p| p.into_inner());
        // the smallest idle buffer holding at least n initialised elements (a larger one
        // is truncated; its spare capacity goes back to the pool with it)
        let best = pool
            .iter()
            .enumerate()
            .filter(|(_, b)| b.len() >= n)
            .min_by_key(|(_, b)| b.len())
            .map(|(i, _)| i);
        if let Some(i) = best {
            let mut v = pool.swap_remove(i);
            v.truncate(n);
            return v;
        }
    }
    vec![T::from_f32(0.0); n]
}

fn give<T: Pooled>(v: &mut Vec<T>) {
    let bytes = v.capacity() * std::mem::size_of::<T>();
    if v.len() * std::mem::size_of::<T>() < POOL_MIN_BYTES {
        return;
    }
    let mut pool = T::pool().lock().unwrap_or_else(|p| p.into_inner());
    let idle: usize = pool
        .iter()
        .map(|b| b.len() * std::mem::size_of::<T>())
        .sum();
    if idle + bytes > POOL_MAX_BYTES {
        return;
    }
    if pool.len() < POOL_MAX_ENTRIES {
        pool.push(std::mem::take(v));
        return;
    }
    // full: keep the larger buffers (a fresh large one costs a page fault and a clear
    // per 4 KiB; a small one is cheap to allocate again)
    if let Some((i, _)) = pool
        .iter()
        .enumerate()
        .min_by_key(|(_, b)| b.capacity())
        .filter(|(_, b)| b.capacity() < v.capacity())
    {
        pool[i] = std::mem::take(v);
    }
}

impl Drop for CpuStorage {
    fn drop(&mut self) {
        match self {
            CpuStorage::F32(v) => give(v),
            CpuStorage::F16(v) => give(v),
            CpuStorage::BF16(v) => give(v),
            CpuStorage::U32(v) => give(v),
        }
    }
}

/// Frees every idle pooled host buffer.
pub(crate) fn trim_pool() {
    fn clear<T: Pooled>() {
        T::pool().lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
    clear::<f32>();
    clear::<f16>();
    clear::<bf16>();
    clear::<u32>();
    weights::clear();
}
