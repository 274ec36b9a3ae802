//! `OPENKERN_DEVICE` selects the backend. Alone in its own test binary because it sets a
//! process-wide environment variable.

use openkern::{Device, DeviceType};

#[test]
fn env_switch_forces_the_cpu_device() {
    std::env::set_var(openkern::device::DEVICE_ENV, "cpu");
    let d = Device::new().unwrap();
    assert_eq!(d.info().device_type, DeviceType::Cpu);
    // An adapter name that matches nothing is an error, not a silent CPU fallback.
    std::env::set_var(openkern::device::DEVICE_ENV, "");
    std::env::set_var("WGPU_ADAPTER_NAME", "no-such-adapter-anywhere");
    let e = Device::new().unwrap_err();
    assert!(e.to_string().contains("no-such-adapter-anywhere"), "{e}");
    std::env::remove_var("WGPU_ADAPTER_NAME");
    std::env::remove_var(openkern::device::DEVICE_ENV);
}
