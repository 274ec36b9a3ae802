//! `openkern info`: every adapter and the CPU device, as a table.

use openkern::{Device, DeviceInfo, DeviceSelector};

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "-"
    }
}

fn mib(bytes: u64) -> String {
    if bytes == u64::MAX {
        "unbounded".into()
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

fn print(index: &str, info: &DeviceInfo) {
    let f = &info.features;
    let l = &info.limits;
    println!("[{index}] {}", info.name);
    println!(
        "    backend {:<8} type {:<10} driver {}",
        info.backend,
        info.device_type.to_string(),
        info.driver
    );
    if info.backend == "cpu" {
        println!("    threads {}", info.threads);
    } else {
        println!(
            "    shader-f16 {:<4} subgroup {:<4} ({}..{})  timestamp-query {:<4} cooperative-matrix {}",
            yes(f.shader_f16),
            yes(f.subgroup),
            f.subgroup_min_size,
            f.subgroup_max_size,
            yes(f.timestamp_query),
            if f.cooperative_matrix.is_empty() {
                "-".to_string()
            } else {
                f.cooperative_matrix.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
            }
        );
        println!(
            "    max binding {}  max buffer {}  workgroup: {} invocations, {} KiB shared, {} groups/dim",
            mib(l.max_storage_buffer_binding_size),
            mib(l.max_buffer_size),
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroup_storage_size / 1024,
            l.max_compute_workgroups_per_dimension
        );
    }
    for note in &info.notes {
        println!("    note: {note}");
    }
}

pub fn run() -> openkern::Result<()> {
    let adapters = Device::adapters();
    if adapters.is_empty() {
        println!(
            "no wgpu adapter found (Vulkan, Metal, DX12, GL); only the CPU device is available"
        );
    }
    for a in &adapters {
        match Device::open(DeviceSelector::Adapter(a.index)) {
            Ok(d) => print(&a.index.to_string(), d.info()),
            Err(e) => println!(
                "[{}] {} ({}, {}): could not open: {e}",
                a.index, a.name, a.backend, a.device_type
            ),
        }
    }
    print("cpu", Device::cpu().info());
    let default = Device::new()?;
    println!(
        "\ndefault device: {} ({})",
        default.info().name,
        default.info().backend
    );
    Ok(())
}
