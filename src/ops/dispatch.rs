//! What every op repeats between its argument checks and its kernels, written once: the
//! same-device and same-dtype checks, output allocation, the empty-output rule and the
//! CPU/GPU branch.
//!
//! **The empty-output rule**: an op whose outputs have no elements records no kernel and
//! runs no CPU code; it returns empty tensors of the right shapes and dtypes, on every
//! backend. (Argument checks still run first, so a bad call on empty tensors is still an
//! error.)

use crate::cpu::CpuStorage;
use crate::device::Backend;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::tensor::Tensor;

/// Every tensor in `others` is on `x`'s device.
pub(crate) fn same_device<'t>(
    op: &'static str,
    x: &Tensor,
    others: impl IntoIterator<Item = &'t Tensor>,
) -> Result<()> {
    for t in others {
        x.device().same(op, t.device())?;
    }
    Ok(())
}

/// Every tensor in `others` is on `x`'s device and has `x`'s dtype.
pub(crate) fn same_device_and_dtype<'t>(
    op: &'static str,
    x: &Tensor,
    others: impl IntoIterator<Item = &'t Tensor>,
) -> Result<()> {
    for t in others {
        x.device().same(op, t.device())?;
        if t.dtype() != x.dtype() {
            return Err(Error::DTypeMismatch {
                op,
                lhs: x.dtype(),
                rhs: t.dtype(),
            });
        }
    }
    Ok(())
}

/// Runs an op with `N` outputs of the given shapes and dtypes on the device of its
/// `inputs` (the first one's; the op has checked they agree): on a GPU, allocates them,
/// calls `gpu` to record its kernels into them and gives each output the fault words its
/// inputs carry, so a fault recorded upstream reaches every tensor computed from the
/// faulty one; on the CPU, calls `cpu` for their storage. Applies the empty-output rule
/// (module docs) on both.
pub(crate) fn run<const N: usize>(
    op: &'static str,
    inputs: &[&Tensor],
    outputs: [(&[usize], DType); N],
    gpu: impl FnOnce(&GpuContext, &[Tensor; N]) -> Result<()>,
    cpu: impl FnOnce() -> Result<[CpuStorage; N]>,
) -> Result<[Tensor; N]> {
    let device = inputs
        .first()
        .map(|t| t.device())
        .ok_or_else(|| Error::Internal {
            message: format!("{op}: dispatched without inputs"),
        })?;
    for (shape, _) in &outputs {
        crate::shape::checked_count(op, shape)?;
    }
    let empty = outputs
        .iter()
        .all(|(shape, _)| shape.iter().product::<usize>() == 0);
    match &device.inner.backend {
        Backend::Gpu(g) => {
            let inherited = crate::gpu::inherited_faults(inputs.iter().copied());
            let mut made = Vec::with_capacity(N);
            for (shape, dtype) in outputs {
                let mut t = Tensor::uninit(device, shape, dtype, op)?;
                t.faults = inherited.clone();
                made.push(t);
            }
            let out: [Tensor; N] = made.try_into().map_err(|_| Error::Internal {
                message: format!("{op}: output count"),
            })?;
            if !empty {
                gpu(g, &out)?;
            }
            Ok(out)
        }
        Backend::Cpu => {
            for (shape, dtype) in &outputs {
                crate::cpu::ensure_host_memory(
                    || format!("the {dtype} output of {op}, shape {shape:?}"),
                    *dtype,
                    shape.iter().product(),
                )?;
            }
            let storage = if empty {
                outputs.map(|(_, dtype)| CpuStorage::zeros(dtype, 0))
            } else {
                cpu()?
            };
            let mut i = 0;
            Ok(storage.map(|s| {
                let t = Tensor::from_cpu(device, s, outputs[i].0);
                i += 1;
                t
            }))
        }
    }
}

/// [`run`] for the common case of one output.
pub(crate) fn run1(
    op: &'static str,
    inputs: &[&Tensor],
    shape: &[usize],
    dtype: DType,
    gpu: impl FnOnce(&GpuContext, &Tensor) -> Result<()>,
    cpu: impl FnOnce() -> Result<CpuStorage>,
) -> Result<Tensor> {
    let [out] = run(
        op,
        inputs,
        [(shape, dtype)],
        |g, [out]| gpu(g, out),
        || cpu().map(|s| [s]),
    )?;
    Ok(out)
}

/// [`run1`] for an op whose kernel can only find bad input on the GPU (ids or lengths made
/// there): `gpu` records into a fresh fault word, which the output owns beside the words
/// its `inputs` carry, so every read of the output reports a fault recorded while it or
/// its inputs were made (see `crate::gpu::FaultSlot`).
pub(crate) fn run1_reporting_faults(
    op: &'static str,
    inputs: &[&Tensor],
    shape: &[usize],
    dtype: DType,
    gpu: impl FnOnce(&GpuContext, &Tensor, &crate::gpu::FaultSlot) -> Result<()>,
    cpu: impl FnOnce() -> Result<CpuStorage>,
) -> Result<Tensor> {
    let mut slot = None;
    let mut out = run1(
        op,
        inputs,
        shape,
        dtype,
        |g, out| {
            let s = g.fault_slot()?;
            gpu(g, out, &s)?;
            slot = Some(s);
            Ok(())
        },
        cpu,
    )?;
    if let Some(s) = slot {
        out.faults.push(s);
    }
    Ok(out)
}
