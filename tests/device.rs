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

    // The engine reads an openkern result in its own submission: flush (no wait), then
    // copy the tensor's buffer with the engine's encoder.
    let c = ops::add_scalar(&a, 0.5).unwrap();
    assert!(Tensor::from_slice(&Device::cpu(), &[1.0f32], &[1])
        .unwrap()
        .wgpu_buffer()
        .is_none());
    let src = c.wgpu_buffer().expect("a GPU tensor has a buffer");
    let before = wrapped.stats().submissions;
    wrapped.flush().unwrap();
    assert_eq!(wrapped.stats().submissions, before + 1, "flush submits");
    let bytes = c.size_in_bytes() as u64;
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("engine readback"),
        size: bytes,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(src, 0, &readback, 0, bytes);
    let (_, queue) = wrapped.wgpu().unwrap();
    queue.submit([encoder.finish()]);
    readback
        .slice(..)
        .map_async(wgpu::MapMode::Read, |r| r.unwrap());
    device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    let data = readback.slice(..).get_mapped_range().unwrap();
    let got: &[f32] = bytemuck::cast_slice(&data);
    assert_eq!(got, &[1.5, 2.5, 3.5]);
}

#[test]
fn gpu_timing_measures_recorded_work() {
    // timing windows count every pass recorded on the shared device: keep the other
    // tests of this file that record on it out of them
    let _serial = counters_lock();
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
    let _serial = counters_lock();
    let Some(gpu) = gpu() else { return };
    let copy = openkern::gpu::probe::copy_bandwidth(&gpu).unwrap();
    let fma = openkern::gpu::probe::fma_throughput(&gpu).unwrap();
    assert!(copy.per_second > 1e8, "{copy:?}");
    assert!(fma.per_second > 1e8, "{fma:?}");
}

/// Engines share devices and tensors across threads.
#[test]
fn devices_and_tensors_are_send_and_sync() {
    let _serial = counters_lock();
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Device>();
    assert_send_sync::<Tensor>();
    let Some(gpu) = gpu() else { return };
    let handles: Vec<_> = (0..4)
        .map(|k| {
            let d = gpu.clone();
            std::thread::spawn(move || {
                let v = random(1000, k);
                let t = Tensor::from_slice(&d, &v, &[1000]).unwrap();
                let got = ops::add_scalar(&t, 1.0).unwrap().to_vec::<f32>().unwrap();
                got.iter().zip(&v).all(|(g, x)| *g == x + 1.0)
            })
        })
        .collect();
    assert!(handles.into_iter().all(|h| h.join().unwrap()));
}
