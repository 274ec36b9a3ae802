//! Tensors: storage on one device, a shape and a dtype. Contiguous, row-major.
//! Cloning a tensor or reshaping it shares the storage; ops always write new tensors.
//!
//! **Views.** A tensor may be a view of another's storage: its elements are the
//! contiguous run that starts [`Tensor::offset`] elements into that storage
//! ([`crate::ops::narrow`], [`crate::ops::split`], [`crate::ops::chunk`] and
//! [`crate::ops::slice`] make them). Every read goes through the offset: the CPU kernels
//! see the sub-slice, GPU kernels bind the buffer at the view's byte offset, and
//! [`Tensor::to_vec`] reads just the view. Views only ever alias for reading: no op
//! writes into an existing tensor (outputs are always fresh), and the one structure that
//! writes in place, [`crate::ops::kv_cache::KvCache`], owns its storage.

use crate::cpu::CpuStorage;
use crate::device::{Backend, Device};
use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::gpu::buffer_pool::PooledBuffer;
use crate::shape::{checked_count, element_count};
use std::sync::Arc;

pub(crate) enum Storage {
    Gpu(PooledBuffer),
    Cpu(CpuStorage),
}

/// An n-dimensional array on a [`Device`].
#[derive(Clone)]
pub struct Tensor {
    pub(crate) storage: Arc<Storage>,
    pub(crate) shape: Vec<usize>,
    /// Elements of `storage` before this tensor's first one (nonzero for a view).
    pub(crate) offset: usize,
    pub(crate) dtype: DType,
    pub(crate) device: Device,
    /// The fault words of the ops that wrote this tensor or its GPU inputs, for ops that
    /// can only find bad input on the GPU: while one is set, every read is that op's
    /// typed error.
    pub(crate) faults: Vec<Arc<crate::gpu::FaultSlot>>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor({:?}, {}, {:?})",
            self.shape, self.dtype, self.device
        )
    }
}

impl Tensor {
    /// Creates a tensor from host data whose type sets the dtype.
    pub fn from_slice<T: Element>(device: &Device, data: &[T], shape: &[usize]) -> Result<Self> {
        let expected = checked_count("Tensor::from_slice", shape)?;
        if data.len() != expected {
            return Err(Error::DataLength {
                shape: shape.to_vec(),
                expected,
                got: data.len(),
            });
        }
        let storage = match &device.inner.backend {
            Backend::Gpu(g) => {
                g.check_binding(
                    || format!("a {} tensor of shape {shape:?}", T::DTYPE),
                    (data.len() * T::DTYPE.size_in_bytes()) as u64,
                )?;
                Storage::Gpu(g.upload(bytemuck::cast_slice(data))?)
            }
            Backend::Cpu => {
                crate::cpu::ensure_host_memory(
                    || format!("a {} tensor of shape {shape:?}", T::DTYPE),
                    T::DTYPE,
                    data.len(),
                )?;
                Storage::Cpu(CpuStorage::from_slice(data))
            }
        };
        Ok(Tensor {
            storage: Arc::new(storage),
            shape: shape.to_vec(),
            offset: 0,
            dtype: T::DTYPE,
            device: device.clone(),
            faults: Vec::new(),
        })
    }

    /// Creates a tensor of `dtype` from f32 data, rounding to nearest even.
    pub fn from_f32(device: &Device, data: &[f32], shape: &[usize], dtype: DType) -> Result<Self> {
        match dtype {
            DType::F32 => Self::from_slice(device, data, shape),
            DType::F16 => {
                let v: Vec<half::f16> = data.iter().map(|&x| half::f16::from_f32(x)).collect();
                Self::from_slice(device, &v, shape)
            }
            DType::BF16 => {
                let v: Vec<half::bf16> = data.iter().map(|&x| half::bf16::from_f32(x)).collect();
                Self::from_slice(device, &v, shape)
            }
            DType::U32 => Err(Error::UnsupportedDType {
                op: "Tensor::from_f32",
                dtype,
                supported: "f32, f16, bf16; build u32 tensors with Tensor::from_slice::<u32>",
            }),
        }
    }

    /// A tensor of zeros.
    pub fn zeros(device: &Device, shape: &[usize], dtype: DType) -> Result<Self> {
        let n = checked_count("Tensor::zeros", shape)?;
        let storage = match &device.inner.backend {
            Backend::Gpu(g) => {
                let bytes = (n * dtype.size_in_bytes()) as u64;
                g.check_binding(|| format!("a {dtype} tensor of shape {shape:?}"), bytes)?;
                Storage::Gpu(g.zeros(bytes)?)
            }
            Backend::Cpu => {
                crate::cpu::ensure_host_memory(
                    || format!("a {dtype} tensor of shape {shape:?}"),
                    dtype,
                    n,
                )?;
                Storage::Cpu(CpuStorage::zeros(dtype, n))
            }
        };
        Ok(Tensor {
            storage: Arc::new(storage),
            shape: shape.to_vec(),
            offset: 0,
            dtype,
            device: device.clone(),
            faults: Vec::new(),
        })
    }

    /// A tensor of `shape` with every element `value` (rounded to `dtype`; for
    /// [`DType::U32`] the value must be a whole number in range).
    pub fn full(device: &Device, shape: &[usize], value: f32, dtype: DType) -> Result<Self> {
        let n = checked_count("Tensor::full", shape)?;
        if dtype == DType::U32 {
            if !(value >= 0.0 && value <= u32::MAX as f32 && value.fract() == 0.0) {
                return Err(Error::Argument {
                    op: "Tensor::full",
                    name: "value",
                    value: value.to_string(),
                    expected: "a whole number in 0..2^32 for a u32 tensor",
                });
            }
            return Self::from_slice(device, &vec![value as u32; n], shape);
        }
        Self::from_f32(device, &vec![value; n], shape, dtype)
    }

    /// A tensor of ones.
    pub fn ones(device: &Device, shape: &[usize], dtype: DType) -> Result<Self> {
        Self::full(device, shape, 1.0, dtype)
    }

    /// The 1-D tensor `start, start + step, ...` up to but excluding `end` (PyTorch's
    /// `arange`): `ceil((end − start) / step)` elements, each computed in f64 and rounded
    /// once to `dtype`. `step` must be finite and nonzero; for [`DType::U32`] every value
    /// must be a whole number ≥ 0 (positions, ids).
    pub fn arange(device: &Device, start: f64, end: f64, step: f64, dtype: DType) -> Result<Self> {
        let op = "Tensor::arange";
        if !(step.is_finite() && step != 0.0 && start.is_finite() && end.is_finite()) {
            return Err(Error::Argument {
                op,
                name: "start, end, step",
                value: format!("({start}, {end}, {step})"),
                expected: "finite numbers with step != 0",
            });
        }
        let n = ((end - start) / step).ceil().max(0.0) as usize;
        let values = (0..n).map(|i| start + i as f64 * step);
        if dtype == DType::U32 {
            let v: Vec<u32> = values
                .map(|x| {
                    if x >= 0.0 && x.fract() == 0.0 && x <= u32::MAX as f64 {
                        Ok(x as u32)
                    } else {
                        Err(Error::Argument {
                            op,
                            name: "start, step",
                            value: format!("({start}, {step}), giving {x}"),
                            expected:
                                "whole numbers >= 0 for a u32 tensor; use a float dtype otherwise",
                        })
                    }
                })
                .collect::<Result<_>>()?;
            return Self::from_slice(device, &v, &[n]);
        }
        let v: Vec<f32> = values.map(|x| x as f32).collect();
        // f32 → f16/bf16 after an f64 → f32 step can double-round; values small enough
        // to matter are exact in f32 anyway (integers below 2^24)
        Self::from_f32(device, &v, &[n], dtype)
    }

    /// A tensor from raw little-endian element bytes (a checkpoint's tensor data, e.g.
    /// a safetensors entry): `bytes.len()` must equal the element count of `shape` times
    /// `dtype`'s size, else [`Error::ByteLength`]. The bytes need no alignment.
    pub fn from_bytes(
        device: &Device,
        bytes: &[u8],
        shape: &[usize],
        dtype: DType,
    ) -> Result<Self> {
        let elements = checked_count("Tensor::from_bytes", shape)?;
        let elem_bytes = dtype.size_in_bytes();
        if bytes.len() != elements * elem_bytes {
            return Err(Error::ByteLength {
                shape: shape.to_vec(),
                dtype,
                elements,
                elem_bytes,
                expected: elements * elem_bytes,
                got: bytes.len(),
            });
        }
        fn words<const N: usize, T>(bytes: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
            bytes
                .chunks_exact(N)
                .map(|c| f(c.try_into().expect("chunks_exact gives N bytes")))
                .collect()
        }
        match dtype {
            DType::F32 => Self::from_slice(device, &words(bytes, f32::from_le_bytes), shape),
            DType::U32 => Self::from_slice(device, &words(bytes, u32::from_le_bytes), shape),
            DType::F16 => Self::from_slice(
                device,
                &words(bytes, |b| half::f16::from_bits(u16::from_le_bytes(b))),
                shape,
            ),
            DType::BF16 => Self::from_slice(
                device,
                &words(bytes, |b| half::bf16::from_bits(u16::from_le_bytes(b))),
                shape,
            ),
        }
    }

    /// A tensor whose contents the caller will overwrite entirely (GPU: not cleared).
    pub(crate) fn uninit(
        device: &Device,
        shape: &[usize],
        dtype: DType,
        op: &'static str,
    ) -> Result<Self> {
        let n = checked_count(op, shape)?;
        let storage = match &device.inner.backend {
            Backend::Gpu(g) => {
                let bytes = (n * dtype.size_in_bytes()) as u64;
                g.check_binding(
                    || format!("the {dtype} output of {op}, shape {shape:?}"),
                    bytes,
                )?;
                Storage::Gpu(g.alloc(bytes.next_multiple_of(4).max(4))?)
            }
            Backend::Cpu => {
                crate::cpu::ensure_host_memory(
                    || format!("the {dtype} output of {op}, shape {shape:?}"),
                    dtype,
                    n,
                )?;
                Storage::Cpu(CpuStorage::zeros(dtype, n))
            }
        };
        Ok(Tensor {
            storage: Arc::new(storage),
            shape: shape.to_vec(),
            offset: 0,
            dtype,
            device: device.clone(),
            faults: Vec::new(),
        })
    }

    pub(crate) fn from_cpu(device: &Device, storage: CpuStorage, shape: &[usize]) -> Self {
        Tensor {
            dtype: storage.dtype(),
            storage: Arc::new(Storage::Cpu(storage)),
            shape: shape.to_vec(),
            offset: 0,
            device: device.clone(),
            faults: Vec::new(),
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        element_count(&self.shape)
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device the tensor lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Bytes of element data.
    pub fn size_in_bytes(&self) -> usize {
        self.len() * self.dtype.size_in_bytes()
    }

    /// The same data under another shape of equal element count: a view, no copy.
    pub fn reshape(&self, shape: &[usize]) -> Result<Self> {
        if checked_count("reshape", shape)? != self.len() {
            return Err(Error::ReshapeCount {
                from: self.shape.clone(),
                from_len: self.len(),
                to: shape.to_vec(),
                to_len: element_count(shape),
            });
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            ..self.clone()
        })
    }

    /// [`reshape`](Self::reshape) with at most one dimension given as `-1`, inferred from
    /// the element count (PyTorch's `view(4, -1, 64)`): `x.reshape_infer(&[4, -1, 64])`.
    /// Other negative sizes, two `-1`s, or a count the known dimensions do not divide
    /// are errors.
    pub fn reshape_infer(&self, shape: &[isize]) -> Result<Self> {
        let op = "reshape_infer";
        let bad = |why: &str| {
            Error::shape(
                op,
                format!(
                    "cannot reshape {:?} ({} elements) to {shape:?}: {why}",
                    self.shape,
                    self.len()
                ),
            )
        };
        let holes = shape.iter().filter(|&&d| d == -1).count();
        if holes > 1 || shape.iter().any(|&d| d < -1) {
            return Err(bad("give every size as a count >= 0 and at most one as -1"));
        }
        let known: usize = shape
            .iter()
            .filter(|&&d| d >= 0)
            .map(|&d| d as usize)
            .product();
        let resolved: Vec<usize> = if holes == 1 {
            if known == 0 || !self.len().is_multiple_of(known) {
                return Err(bad(&format!(
                    "the known sizes multiply to {known}, which does not divide the element count"
                )));
            }
            shape
                .iter()
                .map(|&d| {
                    if d == -1 {
                        self.len() / known
                    } else {
                        d as usize
                    }
                })
                .collect()
        } else {
            shape.iter().map(|&d| d as usize).collect()
        };
        self.reshape(&resolved)
    }

    /// Converts to another dtype (a new tensor; the same tensor when the dtype matches).
    pub fn cast(&self, dtype: DType) -> Result<Self> {
        crate::ops::cast::cast(self, dtype)
    }

    /// Reads the data back into host memory as `T`, which must match the dtype.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        if T::DTYPE != self.dtype {
            return Err(Error::HostType {
                tensor: self.dtype,
                requested: T::DTYPE,
                requested_variant: T::DTYPE.variant_name(),
            });
        }
        match &*self.storage {
            Storage::Cpu(_) => Ok(self.cpu_storage().as_slice::<T>().to_vec()),
            Storage::Gpu(buffer) => {
                let g = self
                    .device
                    .gpu_ctx()
                    .expect("GPU storage lives on a GPU device");
                let bytes = g.read(
                    buffer.buffer(),
                    self.byte_offset() as u64,
                    self.size_in_bytes() as u64,
                    &self.faults,
                )?;
                Ok(bytemuck::pod_collect_to_vec(&bytes))
            }
        }
    }

    /// Reads the data back as f32 whatever the dtype (exact widening; u32 values are
    /// exact below 2^24).
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        Ok(match self.dtype {
            DType::F32 => self.to_vec::<f32>()?,
            DType::F16 => self
                .to_vec::<half::f16>()?
                .into_iter()
                .map(f32::from)
                .collect(),
            DType::BF16 => self
                .to_vec::<half::bf16>()?
                .into_iter()
                .map(f32::from)
                .collect(),
            DType::U32 => self
                .to_vec::<u32>()?
                .into_iter()
                .map(|v| v as f32)
                .collect(),
        })
    }

    /// Copies the tensor to another device.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        if *device == self.device {
            return Ok(self.clone());
        }
        match self.dtype {
            DType::F32 => Self::from_slice(device, &self.to_vec::<f32>()?, &self.shape),
            DType::F16 => Self::from_slice(device, &self.to_vec::<half::f16>()?, &self.shape),
            DType::BF16 => Self::from_slice(device, &self.to_vec::<half::bf16>()?, &self.shape),
            DType::U32 => Self::from_slice(device, &self.to_vec::<u32>()?, &self.shape),
        }
    }

    /// The wgpu buffer holding a GPU tensor, for an engine that binds it in its own
    /// passes; `None` on the CPU device. The data is the
    /// [`size_in_bytes`](Self::size_in_bytes) bytes starting at
    /// [`byte_offset`](Self::byte_offset) (0 except for a view, where it is a multiple of
    /// the adapter's `min_storage_buffer_offset_alignment`, so it can be bound there),
    /// row-major, 16-bit dtypes packed two per little-endian word (the buffer may be
    /// longer: it comes from a size-bucketed pool, and a view shares its parent's
    /// buffer). Call [`Device::flush`] before submitting work that reads it, and do not
    /// write it: other tensors (views, clones) may share it, and an op that reads it may
    /// still be recorded.
    pub fn wgpu_buffer(&self) -> Option<&wgpu::Buffer> {
        match &*self.storage {
            Storage::Gpu(b) => Some(b.buffer()),
            Storage::Cpu(_) => None,
        }
    }

    /// Elements of the underlying storage before this tensor's first element: 0 for a
    /// tensor an op or constructor made, the start of the view for one made by
    /// [`ops::narrow`](crate::ops::narrow) and its relatives (see the module docs).
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// [`offset`](Self::offset) in bytes: where the data starts in
    /// [`wgpu_buffer`](Self::wgpu_buffer).
    pub fn byte_offset(&self) -> usize {
        self.offset * self.dtype.size_in_bytes()
    }

    /// True when `self` and `other` read the same storage (one is a view, clone or
    /// reshape of the other, or both of a third): no data was copied between them.
    pub fn shares_storage_with(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
    }

    /// A view of this tensor's storage: `shape` starting `offset` elements past this
    /// tensor's own start. The caller has checked that the run lies inside `self`.
    pub(crate) fn view_at(&self, offset: usize, shape: &[usize]) -> Tensor {
        let empty = shape.contains(&0);
        Tensor {
            shape: shape.to_vec(),
            // an empty view reads nothing; offset 0 keeps its binding inside the buffer
            offset: if empty { 0 } else { self.offset + offset },
            ..self.clone()
        }
    }

    /// How a GPU kernel binds this tensor: its buffer from the view's byte offset to the
    /// end (GPU views are only made at offsets the adapter can bind, see `ops::narrow`).
    pub(crate) fn gpu_buffer(&self) -> wgpu::BufferBinding<'_> {
        let buffer = self
            .wgpu_buffer()
            .expect("GPU launchers only see GPU tensors");
        wgpu::BufferBinding {
            buffer,
            offset: self.byte_offset() as u64,
            size: None,
        }
    }

    /// Refuses non-float dtypes for float ops.
    pub(crate) fn expect_float(&self, op: &'static str) -> Result<()> {
        if self.dtype.is_float() {
            Ok(())
        } else {
            Err(Error::UnsupportedDType {
                op,
                dtype: self.dtype,
                supported: "f32, f16 and bf16",
            })
        }
    }

    /// A CPU tensor's elements: the run of its storage from its offset (a view's
    /// sub-slice), so CPU kernels never see a view's parent.
    pub(crate) fn cpu_storage(&self) -> CpuSlice<'_> {
        let r = self.offset..self.offset + self.len();
        match &*self.storage {
            Storage::Cpu(c) => match c {
                CpuStorage::F32(v) => CpuSlice::F32(&v[r]),
                CpuStorage::F16(v) => CpuSlice::F16(&v[r]),
                CpuStorage::BF16(v) => CpuSlice::BF16(&v[r]),
                CpuStorage::U32(v) => CpuSlice::U32(&v[r]),
            },
            Storage::Gpu(_) => unreachable!("CPU kernels only see CPU tensors"),
        }
    }
}

/// The elements of one CPU tensor, borrowed: [`Tensor::cpu_storage`] gives the run a
/// tensor (or view) covers, typed by its dtype. CPU kernels read their inputs through it.
#[derive(Clone, Copy)]
pub(crate) enum CpuSlice<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
    BF16(&'a [half::bf16]),
    U32(&'a [u32]),
}

impl<'a> CpuSlice<'a> {
    /// The dtype of the elements.
    pub(crate) fn dtype(&self) -> DType {
        match self {
            CpuSlice::F32(_) => DType::F32,
            CpuSlice::F16(_) => DType::F16,
            CpuSlice::BF16(_) => DType::BF16,
            CpuSlice::U32(_) => DType::U32,
        }
    }

    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        match self {
            CpuSlice::F32(v) => v.len(),
            CpuSlice::F16(v) => v.len(),
            CpuSlice::BF16(v) => v.len(),
            CpuSlice::U32(v) => v.len(),
        }
    }

    /// The elements from index `n` on.
    pub(crate) fn skip(self, n: usize) -> CpuSlice<'a> {
        match self {
            CpuSlice::F32(v) => CpuSlice::F32(&v[n..]),
            CpuSlice::F16(v) => CpuSlice::F16(&v[n..]),
            CpuSlice::BF16(v) => CpuSlice::BF16(&v[n..]),
            CpuSlice::U32(v) => CpuSlice::U32(&v[n..]),
        }
    }

    /// The elements as `T`; the caller has checked that `T` matches.
    pub(crate) fn as_slice<T: Element>(&self) -> &'a [T] {
        match *self {
            CpuSlice::F32(v) => bytemuck::cast_slice(v),
            CpuSlice::F16(v) => bytemuck::cast_slice(v),
            CpuSlice::BF16(v) => bytemuck::cast_slice(v),
            CpuSlice::U32(v) => bytemuck::cast_slice(v),
        }
    }

    /// The elements widened to f32 (borrowed when already f32; 16-bit data through
    /// `cpu::math::widen`, F16C where the CPU has it).
    pub(crate) fn to_f32(self) -> std::borrow::Cow<'a, [f32]> {
        use std::borrow::Cow;
        fn wide<T: Element>(v: &[T]) -> Vec<f32> {
            let mut out = vec![0f32; v.len()];
            crate::cpu::math::widen(v, &mut out);
            out
        }
        match self {
            CpuSlice::F32(v) => Cow::Borrowed(v),
            CpuSlice::F16(v) => Cow::Owned(wide(v)),
            CpuSlice::BF16(v) => Cow::Owned(wide(v)),
            CpuSlice::U32(v) => Cow::Owned(v.iter().map(|&x| x as f32).collect()),
        }
    }
}
