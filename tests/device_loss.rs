//! A lost device (destroyed, reset by the driver) fails every later call with
//! `Error::DeviceLost`, never a panic or a hang, and a new device works afterwards.
//! A buffer the device cannot allocate is `Error::OutOfMemory`.

mod common;
use common::*;
use openkern::{ops, DType, Device, Error, Tensor};
use std::time::{Duration, Instant};

/// A wgpu device and queue on the adapter `gpu()` uses, opened by the test so it can
/// destroy the device under openkern.
fn raw_device(gpu: &Device) -> (wgpu::Device, wgpu::Queue) {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
        .into_iter()
        .find(|a| a.get_info().name == gpu.info().name)
        .expect("the adapter gpu() opened");
    pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap()
}

fn assert_lost<T: std::fmt::Debug>(what: &str, r: openkern::Result<T>) {
    match r {
        Err(Error::DeviceLost { .. }) => {}
        other => panic!("{what}: expected DeviceLost, got {other:?}"),
    }
}

#[test]
fn every_call_on_a_destroyed_device_is_device_lost() {
    let Some(gpu) = gpu() else { return };
    let (device, queue) = raw_device(&gpu);
    let d = Device::from_wgpu(device.clone(), queue);
    let x = Tensor::from_slice(&d, &random(4 * 50, 1), &[4, 50]).unwrap();
    let w = Tensor::from_slice(&d, &[1.0f32; 50], &[50]).unwrap();
    let m = Tensor::from_slice(&d, &random(50 * 3, 3), &[50, 3]).unwrap();
    let y = ops::softmax(&x).unwrap(); // recorded, not yet submitted
    assert_eq!(y.to_vec::<f32>().unwrap().len(), 200);
    let pending = ops::rms_norm(&x, &w, 1e-5).unwrap(); // recorded before the loss

    let start = Instant::now();
    device.destroy();
    assert_lost("read of a tensor recorded before", pending.to_vec::<f32>());
    assert_lost("read of a tensor read before", y.to_vec::<f32>());
    assert_lost("softmax", ops::softmax(&x));
    assert_lost("rms_norm", ops::rms_norm(&x, &w, 1e-5));
    assert_lost("matmul", ops::matmul(&x, &m));
    assert_lost("from_slice", Tensor::from_slice(&d, &[1.0f32], &[1]));
    assert_lost("zeros", Tensor::zeros(&d, &[3], DType::F16));
    assert_lost("sync", d.sync());
    assert_lost("flush", d.flush());
    // and again: the error is sticky, not a one-off
    assert_lost("softmax again", ops::softmax(&x));
    let e = ops::softmax(&x).unwrap_err();
    assert!(e.to_string().contains("Device::new"), "{e}");
    d.trim_pool(); // no panic
    drop((x, w, m, y, pending, d));
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "calls on a lost device must fail fast, took {:?}",
        start.elapsed()
    );

    // A new device opens and works.
    let fresh = Device::gpu().unwrap();
    let x = Tensor::from_slice(&fresh, &[0.0f32, 0.0], &[2]).unwrap();
    assert_eq!(
        ops::softmax(&x).unwrap().to_vec::<f32>().unwrap(),
        vec![0.5, 0.5]
    );
}

/// The same through clones and threads: every holder of the lost device gets the error.
#[test]
fn a_lost_device_fails_on_every_thread() {
    let Some(gpu) = gpu() else { return };
    let (device, queue) = raw_device(&gpu);
    let d = Device::from_wgpu(device.clone(), queue);
    let x = Tensor::from_slice(&d, &random(64, 2), &[64]).unwrap();
    device.destroy();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let x = x.clone();
            std::thread::spawn(move || {
                matches!(ops::add_scalar(&x, 1.0), Err(Error::DeviceLost { .. }))
                    && matches!(x.to_vec::<f32>(), Err(Error::DeviceLost { .. }))
            })
        })
        .collect();
    assert!(handles.into_iter().all(|h| h.join().unwrap()));
}

/// Child-process half of `out_of_device_memory_is_a_typed_error`: under an address-space
/// limit, holds ever more 64 MiB tensors until the device refuses one.
#[test]
#[ignore = "run by out_of_device_memory_is_a_typed_error in a child process"]
fn child_allocates_until_out_of_memory() {
    let d = Device::gpu().unwrap();
    let mut held = Vec::new();
    for i in 0..1024 {
        match Tensor::zeros(&d, &[16 << 20], DType::F32) {
            Ok(t) => held.push(t),
            Err(Error::OutOfMemory { bytes, .. }) => {
                assert!(bytes >= 64 << 20);
                // the device still works for what fits once memory is freed
                held.truncate(held.len() / 2);
                let x = Tensor::from_slice(&d, &[1.0f32, 2.0], &[2]).unwrap();
                let y = ops::add_scalar(&x, 1.0).unwrap().to_vec::<f32>().unwrap();
                assert_eq!(y, vec![2.0, 3.0]);
                println!("OOM-TYPED after {i} tensors");
                return;
            }
            Err(e) => panic!("after {i} tensors: expected OutOfMemory, got {e:?}"),
        }
        d.sync().unwrap();
    }
    panic!("64 GiB allocated without an error: the limit did not apply");
}

#[test]
fn out_of_device_memory_is_a_typed_error() {
    let Some(gpu) = gpu() else { return };
    if gpu.info().device_type != openkern::DeviceType::SoftwareGpu || !cfg!(target_os = "linux") {
        // Only a software adapter's memory is host memory that a process limit bounds.
        eprintln!("skipped: needs a software adapter (lavapipe) on Linux");
        return;
    }
    // 3 GB of address space: the driver and LLVM start within it, 64 MiB buffers soon
    // exhaust it.
    let (status, text) =
        run_test_under_memory_limit("child_allocates_until_out_of_memory", 3_000_000, &[]);
    assert!(
        status.success() && text.contains("OOM-TYPED"),
        "child failed ({status:?}):\n{text}"
    );
}
