//! Compiled pipelines persist across devices (and so processes) through wgpu's
//! `PipelineCache` on Vulkan, in the tuning-cache directory; `OPENKERN_PIPELINE_CACHE=0`
//! keeps them off the disk. Alone in its own test binary because it sets process-wide
//! environment variables.

mod common;
use common::*;
use openkern::{ops, DType, Device};

fn cache_files(dir: &std::path::Path) -> Vec<(String, u64)> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("wgpu_pipeline_cache")
                })
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        e.metadata().map_or(0, |m| m.len()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn run_softmax(d: &Device) {
    let x = tensor(d, &random(3 * 70, 5), &[3, 70], DType::F32);
    let y = ops::softmax(&x).unwrap().to_vec::<f32>().unwrap();
    assert!((y[..70].iter().sum::<f32>() - 1.0).abs() < 1e-4);
}

#[test]
fn pipelines_persist_in_the_cache_directory_and_the_switch_turns_it_off() {
    let Some(gpu) = gpu() else { return };
    let dir = std::env::temp_dir().join(format!("openkern-pipeline-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::env::set_var(openkern::autotune::CACHE_DIR_ENV, &dir);

    std::env::set_var(openkern::gpu::PIPELINE_DISK_CACHE_ENV, "0");
    let d = Device::gpu().unwrap();
    run_softmax(&d);
    drop(d);
    assert!(
        cache_files(&dir).is_empty(),
        "the switch is off: {:?}",
        cache_files(&dir)
    );

    std::env::remove_var(openkern::gpu::PIPELINE_DISK_CACHE_ENV);
    let d = Device::gpu().unwrap();
    run_softmax(&d);
    drop(d); // writes the file
    let files = cache_files(&dir);
    if gpu.info().backend != "vulkan" {
        assert!(
            files.is_empty(),
            "only Vulkan has a pipeline cache: {files:?}"
        );
        return;
    }
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].0.contains(&gpu.info().cache_key()),
        "keyed by adapter and driver: {files:?}"
    );
    // A second device loads it and still computes right.
    let d = Device::gpu().unwrap();
    run_softmax(&d);
    drop(d);
    // A corrupt file is ignored (wgpu validates it), not an error.
    std::fs::write(dir.join(&files[0].0), b"not a pipeline cache").unwrap();
    let d = Device::gpu().unwrap();
    run_softmax(&d);
    drop(d);
    std::env::remove_var(openkern::autotune::CACHE_DIR_ENV);
    let _ = std::fs::remove_dir_all(&dir);
}
