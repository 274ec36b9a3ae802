//! `openkern info`: every adapter and the CPU device, as a table, with the matrix path
//! (cooperative matrices 16×16 or 8×8, subgroup, tiled) each adapter's large GEMMs take.

use openkern::ops::matmul::{self, MatmulOptions};
use openkern::{DType, Device, DeviceInfo, DeviceSelector, Tensor};

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

/// Side of the square GEMM whose kernel choice `info` reports (the large shape class).
const PATH_SIDE: usize = 1024;

/// Which matrix path a large f16 and f32 GEMM take on `device` (coop 16×16, coop 8×8,
/// subgroup or tiled, as `ops::matmul::describe` says) and why.
fn print_matrix_paths(device: &Device) -> openkern::Result<()> {
    let f = &device.info().features;
    let coop_off = std::env::var("OPENKERN_COOP").is_ok_and(|v| v == "0");
    let tuning = if openkern::autotune::needs_tuning(device) {
        "tile kernel by heuristic (no tuning cache yet; `openkern bench` tunes)"
    } else {
        "tile kernel from this adapter's tuning cache"
    };
    for dtype in [DType::F16, DType::F32] {
        let a = Tensor::zeros(device, &[PATH_SIDE, PATH_SIDE], dtype)?;
        let path = matmul::describe(&a, &a, &MatmulOptions::default())?;
        let why = match (dtype, matmul::coop_tile(f)) {
            (DType::F16, Ok((_, why))) if coop_off => {
                format!("OPENKERN_COOP=0, else coop: {why}; {tuning}")
            }
            (DType::F16, Ok((_, why))) => why,
            (DType::F16, Err(why)) => format!("no coop: {why}; {tuning}"),
            (_, Ok(_)) => format!("coop takes f16 inputs only; {tuning}"),
            (_, Err(why)) => format!("no coop: {why}; {tuning}"),
        };
        println!("    matmul {dtype} {PATH_SIDE}^3: {path} — {why}");
    }
    Ok(())
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
            Ok(d) => {
                print(&a.index.to_string(), d.info());
                if let Err(e) = print_matrix_paths(&d) {
                    println!("    matmul path: could not tell: {e}");
                }
            }
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
