//! Launchers for `shaders/probe.wgsl`: the device's copy bandwidth and FMA throughput,
//! measured in the same run as the kernels they are compared with.

use super::shader::{kernel_file, uniform_params, KernelSource};
use super::timing::TimingSource;
use super::{fold_groups, GpuContext};
use crate::device::Device;
use crate::error::Result;

uniform_params! {
    /// Mirrors `Params` in probe.wgsl.
    pub(crate) struct ProbeParams {
        n: u32,
        _pad: [u32; 3],
    }
}

pub(crate) static PROBE: KernelSource = KernelSource {
    name: "probe",
    source: kernel_file!("probe"),
    entry_points: &["copy", "fma_chain"],
    tensors: &[],
    mixed_dtypes: false,
    enables: &[],
    specialisations: &[&[("FMA_LOOP", 512.0)]],
    pieces: &[],
    swaps: &[],
    params: Some(&ProbeParams::LAYOUT),
};

const WORKGROUP: u32 = 256;
const FMA_LOOP: u32 = 512;
/// FLOPs per invocation of `fma_chain`: loop × 8 accumulators × 4 lanes × 2.
const FLOPS_PER_INVOCATION: f64 = FMA_LOOP as f64 * 8.0 * 4.0 * 2.0;

/// A limit measured on a device.
#[derive(Debug, Clone, Copy)]
pub struct ProbeResult {
    /// Bytes per second (copy) or FLOP per second (FMA).
    pub per_second: f64,
    /// Bytes or FLOPs moved per run.
    pub work: f64,
    /// Seconds per run.
    pub seconds: f64,
    /// How it was timed.
    pub source: TimingSource,
}

/// Device-to-device copy bandwidth through a compute kernel, counting bytes read plus
/// bytes written. Uses a buffer of up to 256 MiB (bounded by the binding limit).
pub fn copy_bandwidth(device: &Device) -> Result<ProbeResult> {
    let Some(g) = device.gpu_ctx() else {
        return Ok(crate::cpu::probe::copy_bandwidth());
    };
    let bytes = (256u64 << 20)
        .min(g.limits.max_storage_buffer_binding_size)
        .min(g.limits.max_buffer_size)
        / 16
        * 16;
    let software = device.info().device_type == crate::DeviceType::SoftwareGpu;
    let bytes = if software { bytes.min(64 << 20) } else { bytes };
    let n = (bytes / 16) as u32;
    let src = g.zeros(bytes)?;
    let dst = g.alloc(bytes)?;
    let pipeline = g.pipeline(
        &PROBE,
        "copy",
        super::shader::ShaderHeader::new(vec![]),
        &[],
    )?;
    let params = ProbeParams { n, _pad: [0; 3] };
    let run = || {
        g.dispatch(
            &pipeline,
            "probe copy",
            &[
                src.buffer().as_entire_buffer_binding(),
                dst.buffer().as_entire_buffer_binding(),
            ],
            Some(bytemuck::bytes_of(&params)),
            fold_groups(n.div_ceil(WORKGROUP)),
        )
    };
    run()?; // warm-up
    let iters = if software { 3 } else { 20 };
    let t = g.time(iters, run)?;
    let work = 2.0 * bytes as f64;
    Ok(ProbeResult {
        per_second: work / t.seconds,
        work,
        seconds: t.seconds,
        source: t.source,
    })
}

/// f32 FMA throughput (FLOP/s, an FMA counting 2), grown until a run takes ≥ 2 ms.
pub fn fma_throughput(device: &Device) -> Result<ProbeResult> {
    let Some(g) = device.gpu_ctx() else {
        return Ok(crate::cpu::probe::fma_throughput());
    };
    let pipeline = g.pipeline(
        &PROBE,
        "fma_chain",
        super::shader::ShaderHeader::new(vec![]),
        &[("FMA_LOOP", FMA_LOOP as f64)],
    )?;
    let sink = g.alloc(16 * 1024)?;
    let src = g.alloc(16)?;
    let params = ProbeParams {
        n: 1024,
        _pad: [0; 3],
    };
    let mut groups: u32 = 64;
    loop {
        let run = || {
            g.dispatch(
                &pipeline,
                "probe fma",
                &[
                    src.buffer().as_entire_buffer_binding(),
                    sink.buffer().as_entire_buffer_binding(),
                ],
                Some(bytemuck::bytes_of(&params)),
                fold_groups(groups),
            )
        };
        run()?;
        let t = GpuContext::time(g, 3, run)?;
        if t.seconds >= 2e-3 || groups >= 1 << 20 {
            let work = groups as f64 * WORKGROUP as f64 * FLOPS_PER_INVOCATION;
            return Ok(ProbeResult {
                per_second: work / t.seconds,
                work,
                seconds: t.seconds,
                source: t.source,
            });
        }
        groups *= if t.seconds < 2e-4 { 8 } else { 2 };
    }
}
