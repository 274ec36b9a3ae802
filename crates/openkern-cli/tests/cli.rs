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
    assert!(text.contains("% of copy"), "{text}");
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
