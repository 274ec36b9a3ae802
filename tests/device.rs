//! Devices: discovery, selection, what they report, and wrapping an engine's wgpu device.

mod common;
use common::*;
use openkern::{ops, DType, Device, DeviceSelector, DeviceType, Error, Tensor};

#[test]
fn cpu_device_reports_itself() {
    let cpu = Device::cpu();
    let info = cpu.info();
    assert_eq!(info.backend, "cpu");
    assert_eq!(info.device_type, DeviceType::Cpu);
    assert!(info.threads >= 1);
    assert!(cpu.is_cpu());
    assert!(cpu.wgpu().is_none());
    assert_eq!(
        Device::open(DeviceSelector::Cpu).unwrap().info().backend,
        "cpu"
    );
}

#[test]
fn gpu_device_reports_real_limits_and_features() {
    let Some(gpu) = gpu() else { return };
    let info = gpu.info();
    assert!(!info.name.is_empty());
    assert!(
        ["vulkan", "metal", "dx12", "gl"].contains(&info.backend.as_str()),
        "{}",
        info.backend
    );
    // wgpu's conservative default binding limit is 128 MiB; the adapter's real limit is
    // never below it, and where the adapter offers more the device must have it too.
    assert!(info.limits.max_storage_buffer_binding_size >= 128 << 20);
    assert!(info.limits.max_compute_invocations_per_workgroup >= 256);
    let f = &info.features;
    if f.subgroup {
        assert!(f.subgroup_min_size >= 1 && f.subgroup_min_size <= f.subgroup_max_size);
    }
    if info.name.contains("llvmpipe") && info.backend == "vulkan" {
        // Mesa lavapipe 22.3 offers these; if they vanish the device request is wrong.
        assert!(f.shader_f16 && f.subgroup && f.timestamp_query, "{f:?}");
    }
    let adapters = Device::adapters();
    assert!(adapters.iter().any(|a| a.name == info.name));
    // Indices follow selection order and open.
    let first = Device::open(DeviceSelector::Adapter(0)).unwrap();
    assert_eq!(first.info().name, adapters[0].name);
}

#[test]
fn selectors_that_match_nothing_are_errors() {
    let e = Device::open(DeviceSelector::Adapter(10_000)).unwrap_err();
    assert!(matches!(e, Error::NoAdapter { .. }), "{e}");
    assert!(e.to_string().contains("openkern info"), "{e}");
    let e = Device::open(DeviceSelector::VirtualGpu(10_000)).unwrap_err();
    assert!(matches!(e, Error::NoAdapter { .. }), "{e}");
}

/// An engine that already holds a wgpu device hands it over; openkern records into it.
#[test]
fn wraps_an_existing_wgpu_device() {
    let Some(gpu) = gpu() else { return };
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    let adapter = adapters
        .into_iter()
        .find(|a| a.get_info().name == gpu.info().name)
        .expect("same adapter");
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap();
    let wrapped = Device::from_wgpu(device.clone(), queue);
    assert_eq!(wrapped.info().name, gpu.info().name);
    assert!(wrapped.info().notes.iter().any(|n| n.contains("wrapped")));
    assert!(
        !wrapped.info().features.shader_f16,
        "features the engine did not enable are not used"
    );
    let (d, _) = wrapped.wgpu().unwrap();
    assert_eq!(d.limits(), device.limits());
    let a = Tensor::from_slice(&wrapped, &[1.0f32, 2.0, 3.0], &[3]).unwrap();
    let b = ops::mul_scalar(&a, 3.0).unwrap().cast(DType::BF16).unwrap();
    assert_eq!(b.to_f32_vec().unwrap(), vec![3.0, 6.0, 9.0]);
}

#[test]
fn gpu_timing_measures_recorded_work() {
    let Some(gpu) = gpu() else { return };
    let x = tensor(&gpu, &random(1 << 16, 1), &[1 << 16], DType::F32);
    let t = gpu.time(4, || ops::add_scalar(&x, 1.0).map(drop)).unwrap();
    assert!(t.seconds > 0.0 && t.seconds < 1.0, "{t:?}");
    if gpu.info().features.timestamp_query {
        assert_eq!(t.source, openkern::TimingSource::GpuTimestamps);
        assert_eq!(t.passes_per_iter, 1.0);
    }
    let cpu = Device::cpu();
    let y = tensor(&cpu, &random(1 << 16, 1), &[1 << 16], DType::F32);
    let t = cpu.time(2, || ops::add_scalar(&y, 1.0).map(drop)).unwrap();
    assert_eq!(t.source, openkern::TimingSource::WallClock);
}

#[test]
fn probes_measure_positive_limits() {
    let Some(gpu) = gpu() else { return };
    let copy = openkern::gpu::probe::copy_bandwidth(&gpu).unwrap();
    let fma = openkern::gpu::probe::fma_throughput(&gpu).unwrap();
    assert!(copy.per_second > 1e8, "{copy:?}");
    assert!(fma.per_second > 1e8, "{fma:?}");
}
