//! The `openkern` command end to end.

use std::process::Command;

fn openkern(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_openkern"))
        .args(args)
        .output()
        .expect("run openkern");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn info_lists_the_cpu_device_and_the_default() {
    let (ok, text) = openkern(&["info"]);
    assert!(ok, "{text}");
    assert!(text.contains("[cpu]"), "{text}");
    assert!(text.contains("default device:"), "{text}");
    if !text.contains("no wgpu adapter found") {
        assert!(
            text.contains("max binding"),
            "adapters print their limits: {text}"
        );
    }
}

#[test]
fn bench_prints_both_probes_and_kernel_rows() {
    let (ok, text) = openkern(&["bench", "--quick", "--filter", "elementwise"]);
    assert!(ok, "{text}");
    assert!(text.contains("probe copy bandwidth"), "{text}");
    assert!(text.contains("probe fma throughput"), "{text}");
    assert!(text.contains("% copy"), "{text}");
    assert!(
        text.contains("Llama-3.2-1B"),
        "the model dimensions are printed: {text}"
    );
    assert!(text.contains("geometric mean"), "{text}");
}

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("openkern-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn bench_writes_json_and_a_roofline_and_compares_with_itself() {
    let json = temp("run.json");
    let svg = temp("roofline.svg");
    let (ok, text) = openkern(&[
        "--device",
        "cpu",
        "bench",
        "--quick",
        "--filter",
        "argmax,gemm",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(run["format"], "openkern-bench");
    assert_eq!(run["version"], 1);
    assert!(run["tool"]["git_commit"].as_str().unwrap().len() >= 7);
    assert!(run["probes"]["copy"]["per_second"].as_f64().unwrap() > 0.0);
    let rows = run["rows"].as_array().unwrap();
    assert!(rows
        .iter()
        .any(|r| r["op"] == "argmax" && r["model"] == "1b"));
    assert!(rows
        .iter()
        .any(|r| r["family"] == "gemm" && r["kernel"] == "cpu gemm"));
    for r in rows {
        assert!(r["median_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["min_s"].as_f64() <= r["max_s"].as_f64(), "{r}");
    }
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(
        picture.starts_with("<svg") && picture.contains("fma roof"),
        "{picture}"
    );
    let (ok, text) = openkern(&["compare", json.to_str().unwrap(), json.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.contains("geometric mean 1.00x"), "{text}");
}

#[test]
fn list_shapes_exports_every_family_and_the_models() {
    let path = temp("shapes.json");
    let (ok, text) = openkern(&["bench", "--list-shapes", path.to_str().unwrap()]);
    assert!(ok, "{text}");
    let list: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(list["format"], "openkern-shapes");
    assert_eq!(list["models"].as_array().unwrap().len(), 3);
    let cases = list["cases"].as_array().unwrap();
    for family in [
        "linear",
        "gemv",
        "gemm",
        "softmax",
        "norm",
        "activation",
        "rope",
        "embedding",
    ] {
        assert!(cases.iter().any(|c| c["family"] == family), "{family}");
    }
    assert!(cases
        .iter()
        .any(|c| c["model"] == "70b" && c["phase"] == "decode"));
}

#[test]
fn compare_rejects_a_file_that_is_not_a_run() {
    let path = temp("not-a-run.json");
    std::fs::write(&path, "{\"hello\": 1}").unwrap();
    let (ok, text) = openkern(&["compare", path.to_str().unwrap(), path.to_str().unwrap()]);
    assert!(!ok);
    assert!(text.contains("not an openkern-bench file"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn check_passes_on_the_cpu_device() {
    let (ok, text) = openkern(&["--device", "cpu", "check"]);
    assert!(ok, "{text}");
    assert!(text.contains("all checks passed"), "{text}");
}

#[test]
fn a_bad_device_argument_is_an_error_not_a_panic() {
    let (ok, text) = openkern(&["--device", "nonsense", "bench"]);
    assert!(!ok);
    assert!(
        text.contains("not `default`, `cpu` or an adapter index"),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
}
