//! The stream and the buffer pool: batching, reuse, and the upload-ordering hazard.

mod common;
use common::*;
use openkern::Device;
use openkern::{ops, DType, Tensor};

/// A chain of 100 small ops records into one encoder and reaches the queue as one
/// submission when the result is read.
#[test]
fn hundred_op_chain_is_one_submission() {
    let _serial = counters_lock();
    let Some(gpu) = gpu() else { return };
    let x = tensor(&gpu, &random(1000, 1), &[1000], DType::F32);
    gpu.sync().unwrap();
    let before = gpu.stats();
    let mut y = x.clone();
    for _ in 0..100 {
        y = ops::add_scalar(&y, 1.0).unwrap();
    }
    let mid = gpu.stats();
    assert_eq!(
        mid.submissions, before.submissions,
        "ops must not submit on their own"
    );
    assert_eq!(mid.passes - before.passes, 100);
    let got = y.to_vec::<f32>().unwrap();
    let after = gpu.stats();
    assert_eq!(
        after.submissions - before.submissions,
        1,
        "100 ops + readback = one submission"
    );
    let want: Vec<f64> = random(1000, 1).iter().map(|&v| v as f64 + 100.0).collect();
    assert_close("chain of 100 adds", &got, &want, 1e-4, 0.0);
}

/// Buffers of dropped tensors are reused, and the chain above needed few allocations.
#[test]
fn pool_reuses_buffers() {
    let _serial = counters_lock();
    let Some(gpu) = gpu() else { return };
    let x = tensor(&gpu, &random(4096, 3), &[4096], DType::F32);
    let before = gpu.stats();
    let mut y = ops::add_scalar(&x, 1.0).unwrap();
    for _ in 0..50 {
        y = ops::add_scalar(&y, 1.0).unwrap();
    }
    y.to_vec::<f32>().unwrap();
    let after = gpu.stats();
    assert!(
        after.pool_hits - before.pool_hits >= 45,
        "dropped intermediates must be reused: {before:?} -> {after:?}"
    );
    assert!(
        after.pool_misses - before.pool_misses <= 5,
        "{before:?} -> {after:?}"
    );
}

/// The hazard DESIGN.md names: a kernel recorded (not yet submitted) reads buffer B; B's
/// tensor is dropped, so B returns to the pool; an upload takes B from the pool. If the
/// upload bypassed the encoder (queue.write_buffer) it would run at the start of the next
/// submit, before the recorded kernel, and the kernel would read the new data.
#[test]
fn upload_into_reused_buffer_does_not_overtake_pending_kernel() {
    let _serial = counters_lock();
    let Some(gpu) = gpu() else { return };
    for round in 0..3 {
        gpu.sync().unwrap();
        let n = 2048 + round * 17;
        let first = random(n, 10 + round as u64);
        let a = tensor(&gpu, &first, &[n], DType::F32);
        let out = ops::mul_scalar(&a, 2.0).unwrap(); // recorded, reads a's buffer
        let misses = gpu.stats().pool_misses;
        drop(a); // a's buffer goes back to the pool while the kernel is still pending
        let second = vec![1234.5f32; n];
        let b = Tensor::from_slice(&gpu, &second, &[n]).unwrap(); // same size: takes a's buffer
        assert_eq!(
            gpu.stats().pool_misses,
            misses,
            "the upload must reuse the pooled buffer for this test to mean anything"
        );
        let want: Vec<f64> = first.iter().map(|&v| 2.0 * v as f64).collect();
        assert_close(
            "kernel output after buffer reuse",
            &out.to_vec::<f32>().unwrap(),
            &want,
            0.0,
            0.0,
        );
        assert_eq!(b.to_vec::<f32>().unwrap(), second);
    }
}

/// Zero-initialised tensors are cleared in stream order too (a reused buffer is dirty).
fn zeros_from_reused_buffer_are_zero(device: &Device) {
    let _serial = counters_lock();
    let dirty = tensor(device, &vec![7.0; 3000], &[3000], DType::F32);
    let pending = ops::add_scalar(&dirty, 1.0).unwrap();
    drop(dirty);
    let z = Tensor::zeros(device, &[3000], DType::F32).unwrap();
    assert!(z.to_vec::<f32>().unwrap().iter().all(|&v| v == 0.0));
    assert!(pending.to_vec::<f32>().unwrap().iter().all(|&v| v == 8.0));
}
backend_tests!(zeros_from_reused_buffer_are_zero => zeros_from_reused_buffer_are_zero_cpu, zeros_from_reused_buffer_are_zero_gpu);

/// Past the batch bound the stream submits by itself, so a long loop cannot grow one
/// encoder without limit.
#[test]
fn long_chains_submit_in_batches() {
    let _serial = counters_lock();
    let Some(gpu) = gpu() else { return };
    let x = tensor(&gpu, &[0.0; 64], &[64], DType::F32);
    gpu.sync().unwrap();
    let before = gpu.stats().submissions;
    let mut y = x;
    for _ in 0..4500 {
        y = ops::add_scalar(&y, 1.0).unwrap();
    }
    let submitted = gpu.stats().submissions - before;
    assert!(
        (2..=3).contains(&submitted),
        "4500 passes should make 2 batch submissions of 2048, made {submitted}"
    );
    assert!(y.to_vec::<f32>().unwrap().iter().all(|&v| v == 4500.0));
}
