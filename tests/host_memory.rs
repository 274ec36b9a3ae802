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

/// CPU outputs from 64 KiB up come from a pool of dropped buffers that keep their old
/// contents, so every op that takes one must write all of it. The pool is filled with
/// NaN buffers first; no NaN may show in the outputs that reuse them.
#[test]
fn pooled_outputs_never_show_stale_values() {
    let cpu = Device::cpu();
    let seed = |dtype: DType| {
        // only NaN buffers idle: the earlier outputs' clean ones would fit first
        cpu.trim_pool();
        for n in [20_000usize, 70_000, 300_000] {
            drop(Tensor::full(&cpu, &[n], f32::NAN, dtype).unwrap());
        }
    };
    let clean = |what: &str, t: Tensor| {
        let v = t.to_f32_vec().unwrap();
        assert!(
            v.iter().all(|x| !x.is_nan()),
            "{what}: stale NaN in the output"
        );
    };
    for dtype in [DType::F32, DType::F16] {
        seed(dtype);
        clean("zeros", Tensor::zeros(&cpu, &[64, 512], dtype).unwrap());
        seed(dtype);
        let a = Tensor::zeros(&cpu, &[64, 0], dtype).unwrap();
        let b = Tensor::zeros(&cpu, &[0, 512], dtype).unwrap();
        clean("matmul with k = 0", ops::matmul(&a, &b).unwrap());
        seed(dtype);
        let x = Tensor::ones(&cpu, &[64, 300], dtype).unwrap();
        let y = Tensor::ones(&cpu, &[64, 212], dtype).unwrap();
        clean("concat", ops::concat(&[&x, &y], 1).unwrap());
        seed(dtype);
        let w = Tensor::ones(&cpu, &[512, 300], dtype).unwrap();
        clean("linear", ops::linear(&x, &w, None, None).unwrap());
    }
}
