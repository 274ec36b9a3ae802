//! Host allocation failure on the CPU device is a typed error, never an abort.
//!
//! The checks run in a child process (this test binary again, filtered to one test)
//! under an address-space limit of 2 GiB (`ulimit -v`), so a 4 GiB output must fail to
//! allocate and the library must report it as `Error::OutOfMemory`. Before, the process
//! died with "memory allocation of ... bytes failed" (signal 6).

mod common;
use openkern::{ops, DType, Device, Error, Tensor};

const CHILD: &str = "OPENKERN_HOST_MEMORY_CHILD";

#[test]
fn host_allocation_failure_is_a_typed_error() {
    if !cfg!(target_os = "linux") {
        eprintln!("SKIPPED: the child's memory limit uses ulimit -v (Linux)");
        return;
    }
    let (status, text) = common::run_test_under_memory_limit(
        "allocations_past_the_limit_fail_cleanly",
        2_097_152,
        &[(CHILD, "1")],
    );
    assert!(status.success(), "child failed ({status}):\n{text}");
    assert!(
        text.contains("1 passed"),
        "child did not run the checks:\n{text}"
    );
}

/// The child's half: only runs under the parent's limit.
#[test]
fn allocations_past_the_limit_fail_cleanly() {
    if std::env::var(CHILD).is_err() {
        return;
    }
    let cpu = Device::cpu();
    let oom = |what: &str, r: openkern::Result<Tensor>| {
        let e = r.unwrap_err();
        assert!(matches!(e, Error::OutOfMemory { .. }), "{what}: {e}");
        assert!(e.to_string().contains("smaller"), "{what}: {e}");
        eprintln!("{what}: {e}");
    };
    // 4 TiB: fails on any machine
    oom(
        "zeros [2^20, 2^20]",
        Tensor::zeros(&cpu, &[1 << 20, 1 << 20], DType::F32),
    );
    // 4 GiB: fails under the 2 GiB limit
    oom(
        "zeros [2^16, 2^14]",
        Tensor::zeros(&cpu, &[1 << 16, 1 << 14], DType::F32),
    );
    let a = Tensor::zeros(&cpu, &[1 << 15, 1], DType::F32).unwrap();
    let b = Tensor::zeros(&cpu, &[1, 1 << 15], DType::F32).unwrap();
    oom("matmul output [2^15, 2^15]", ops::matmul(&a, &b));
    let col = Tensor::zeros(&cpu, &[1 << 16, 1], DType::F32).unwrap();
    let row = Tensor::zeros(&cpu, &[1 << 14], DType::F32).unwrap();
    oom("broadcast add to [2^16, 2^14]", ops::add(&col, &row));
    oom(
        "from_slice then cast to a 4 GiB tensor",
        Tensor::zeros(&cpu, &[1 << 30], DType::F16).and_then(|t| t.cast(DType::F32)),
    );
    // the device keeps working
    let x = Tensor::from_slice(&cpu, &[1.0f32, 2.0, 3.0], &[3]).unwrap();
    assert_eq!(ops::sum(&x).unwrap().to_vec::<f32>().unwrap(), [6.0]);
}
