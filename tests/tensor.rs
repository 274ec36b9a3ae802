//! Tensors: creation, dtypes (packed 16-bit storage), reshape views, casts, read-back,
//! and the errors user mistakes produce.

mod common;
use common::*;
use openkern::{bf16, f16, DType, Device, Error, Tensor};

fn round_trips_every_dtype_and_odd_length(device: &Device) {
    for n in [1usize, 2, 3, 17, 63, 65, 257, 1025] {
        let v = random(n, n as u64);
        let t = Tensor::from_slice(device, &v, &[n]).unwrap();
        assert_eq!(t.to_vec::<f32>().unwrap(), v);
        let h: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
        let t = Tensor::from_slice(device, &h, &[n]).unwrap();
        assert_eq!(t.dtype(), DType::F16);
        assert_eq!(t.to_vec::<f16>().unwrap(), h);
        let b: Vec<bf16> = v.iter().map(|&x| bf16::from_f32(x)).collect();
        let t = Tensor::from_slice(device, &b, &[n]).unwrap();
        assert_eq!(t.to_vec::<bf16>().unwrap(), b);
    }
}
backend_tests!(round_trips_every_dtype_and_odd_length => round_trips_every_dtype_and_odd_length_cpu, round_trips_every_dtype_and_odd_length_gpu);

fn reshape_is_a_view_of_the_same_data(device: &Device) {
    let v = random(60, 1);
    let t = Tensor::from_slice(device, &v, &[3, 4, 5]).unwrap();
    let r = t.reshape(&[12, 5]).unwrap();
    assert_eq!(r.shape(), &[12, 5]);
    assert_eq!(r.to_vec::<f32>().unwrap(), v);
    let e = t.reshape(&[7, 9]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::ReshapeCount {
                from_len: 60,
                to_len: 63,
                ..
            }
        ),
        "{e}"
    );
}
backend_tests!(reshape_is_a_view_of_the_same_data => reshape_is_a_view_of_the_same_data_cpu, reshape_is_a_view_of_the_same_data_gpu);

fn casts_round_to_nearest_even_and_keep_specials(device: &Device) {
    // Values chosen to hit ties, subnormals, overflow and NaN in each format.
    let mut v = vec![
        0.0f32,
        -0.0,
        1.0,
        -1.5,
        1.0 + 1.0 / 2048.0,
        1.0 + 3.0 / 2048.0,
        65504.0,
        65520.0,
        1e6,
        -1e6,
        6e-8,
        1e-40,
        3.0e38,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ];
    v.extend(random(301, 5).iter().map(|x| x * 1000.0));
    let t = Tensor::from_slice(device, &v, &[v.len()]).unwrap();
    for to in DType::ALL {
        let c = t.cast(to).unwrap();
        assert_eq!(c.dtype(), to);
        let got = c.to_f32_vec().unwrap();
        for (i, (&g, &x)) in got.iter().zip(&v).enumerate() {
            let want = quantize(&[x], to)[0];
            // GPUs may flush f32 subnormals; everything else must match the IEEE rounding.
            let subnormal = x != 0.0 && x.abs() < f32::MIN_POSITIVE;
            let ok = (g.is_nan() && want.is_nan()) || g == want || (subnormal && g == 0.0);
            assert!(
                ok,
                "cast {x} f32 -> {to} on {device:?} (index {i}): got {g}, want {want}"
            );
        }
        // And back from the narrow type to every other.
        for back in DType::ALL {
            let got = c.cast(back).unwrap().to_f32_vec().unwrap();
            let want = quantize(&quantize(&v, to), back);
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                let subnormal = v[i] != 0.0 && v[i].abs() < f32::MIN_POSITIVE;
                assert!(
                    (g.is_nan() && w.is_nan()) || g == w || (subnormal && g == 0.0),
                    "cast {to} -> {back} at {i}: got {g}, want {w}"
                );
            }
        }
    }
}
backend_tests!(casts_round_to_nearest_even_and_keep_specials => casts_round_to_nearest_even_and_keep_specials_cpu, casts_round_to_nearest_even_and_keep_specials_gpu);

fn mistakes_are_typed_errors(device: &Device) {
    let e = Tensor::from_slice(device, &[1.0f32; 5], &[2, 3]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::DataLength {
                expected: 6,
                got: 5,
                ..
            }
        ),
        "{e}"
    );
    let t = Tensor::from_slice(device, &[1.0f32; 6], &[2, 3]).unwrap();
    let e = t.to_vec::<f16>().unwrap_err();
    assert!(
        matches!(
            e,
            Error::HostType {
                tensor: DType::F32,
                requested: DType::F16,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("cast(DType::F16)"), "{e}");
}
backend_tests!(mistakes_are_typed_errors => mistakes_are_typed_errors_cpu, mistakes_are_typed_errors_gpu);

/// A tensor over the storage binding limit is refused with the numbers, never truncated.
#[test]
fn tensors_over_the_binding_limit_are_refused() {
    let Some(gpu) = gpu() else { return };
    let limit = gpu
        .info()
        .limits
        .max_storage_buffer_binding_size
        .min(gpu.info().limits.max_buffer_size);
    let elems = (limit / 4 + 1) as usize;
    let e = Tensor::zeros(&gpu, &[elems], DType::F32).unwrap_err();
    match e {
        Error::TooLarge {
            bytes, limit: l, ..
        } => {
            assert_eq!(bytes, elems as u64 * 4);
            assert_eq!(l, limit);
        }
        other => panic!("expected TooLarge, got {other}"),
    }
    // Exactly at the limit works (16-bit elements: half the count of bytes).
    if limit <= 256 << 20 {
        let t = Tensor::zeros(&gpu, &[(limit / 2) as usize], DType::F16).unwrap();
        assert_eq!(t.size_in_bytes() as u64, limit);
        drop(t);
        gpu.trim_pool();
    }
}

fn tensors_move_between_devices(device: &Device) {
    let cpu = Device::cpu();
    let v = random(33, 9);
    let t = Tensor::from_slice(&cpu, &v, &[3, 11]).unwrap();
    let moved = t.to_device(device).unwrap();
    assert_eq!(moved.device(), device);
    assert_eq!(moved.to_vec::<f32>().unwrap(), v);
}
backend_tests!(tensors_move_between_devices => tensors_move_between_devices_cpu, tensors_move_between_devices_gpu);

fn constructors(device: &Device) {
    for dtype in DType::ALL {
        let t = Tensor::full(device, &[3, 5], -2.5, dtype).unwrap();
        assert_eq!((t.shape(), t.dtype()), (&[3usize, 5][..], dtype));
        assert_eq!(t.to_f32_vec().unwrap(), vec![-2.5; 15]);
        assert_eq!(
            Tensor::ones(device, &[7], dtype)
                .unwrap()
                .to_f32_vec()
                .unwrap(),
            vec![1.0; 7]
        );
        let a = Tensor::arange(device, 0.0, 5.0, 1.0, dtype).unwrap();
        assert_eq!(a.to_f32_vec().unwrap(), vec![0.0, 1.0, 2.0, 3.0, 4.0]);
        let a = Tensor::arange(device, 1.0, -0.5, -0.5, dtype).unwrap();
        assert_eq!(a.to_f32_vec().unwrap(), vec![1.0, 0.5, 0.0]);
        let e = Tensor::arange(device, 0.0, 1.0, 0.0, dtype).unwrap_err();
        assert!(matches!(e, Error::Argument { .. }), "{e}");
    }
    let ids = Tensor::arange(device, 2.0, 6.0, 1.0, DType::U32).unwrap();
    assert_eq!(ids.to_vec::<u32>().unwrap(), vec![2, 3, 4, 5]);
    assert!(Tensor::arange(device, 0.5, 3.0, 1.0, DType::U32).is_err());
    assert_eq!(
        Tensor::full(device, &[2], 7.0, DType::U32)
            .unwrap()
            .to_vec::<u32>()
            .unwrap(),
        vec![7, 7]
    );
    assert!(Tensor::full(device, &[2], -1.0, DType::U32).is_err());
    assert_eq!(
        Tensor::full(device, &[0, 3], 1.0, DType::F32)
            .unwrap()
            .len(),
        0
    );
}
backend_tests!(constructors => constructors_cpu, constructors_gpu);

fn from_bytes_little_endian(device: &Device) {
    let v = [1.5f32, -0.0, f32::INFINITY, 3.25e-3, 65504.0, -7.0];
    for dtype in DType::ALL_WITH_INDEX {
        let q: Vec<f32> = if dtype == DType::U32 {
            vec![0.0, 1.0, 2.0, 70000.0, 5.0, 9.0]
        } else {
            quantize(&v, dtype)
        };
        let bytes: Vec<u8> = q
            .iter()
            .flat_map(|&x| match dtype {
                DType::F32 => x.to_le_bytes().to_vec(),
                DType::F16 => f16::from_f32(x).to_bits().to_le_bytes().to_vec(),
                DType::BF16 => bf16::from_f32(x).to_bits().to_le_bytes().to_vec(),
                DType::U32 => (x as u32).to_le_bytes().to_vec(),
            })
            .collect();
        // an odd offset: checkpoint bytes need not be aligned
        let mut buf = vec![0u8];
        buf.extend_from_slice(&bytes);
        let t = Tensor::from_bytes(device, &buf[1..], &[2, 3], dtype).unwrap();
        assert_eq!((t.shape(), t.dtype()), (&[2usize, 3][..], dtype));
        assert_eq!(t.to_f32_vec().unwrap(), q, "{dtype}");
        let e = Tensor::from_bytes(device, &bytes[1..], &[2, 3], dtype).unwrap_err();
        let size = dtype.size_in_bytes();
        assert!(
            matches!(e, Error::ByteLength { expected, got, .. } if expected == 6 * size && got == 6 * size - 1),
            "{e}"
        );
    }
}
backend_tests!(from_bytes_little_endian => from_bytes_little_endian_cpu, from_bytes_little_endian_gpu);

fn reshape_infers_one_dimension(device: &Device) {
    let t = Tensor::from_slice(device, &random(24, 1), &[2, 3, 4]).unwrap();
    assert_eq!(t.reshape_infer(&[4, -1]).unwrap().shape(), &[4, 6]);
    assert_eq!(t.reshape_infer(&[-1]).unwrap().shape(), &[24]);
    assert_eq!(
        t.reshape_infer(&[2, -1, 3, 1]).unwrap().shape(),
        &[2, 4, 3, 1]
    );
    assert_eq!(t.reshape_infer(&[6, 4]).unwrap().shape(), &[6, 4]);
    for bad in [&[-1, -1][..], &[5, -1], &[0, -1], &[-2, 12], &[5, 5]] {
        assert!(t.reshape_infer(bad).is_err(), "{bad:?}");
    }
    let e = t.reshape_infer(&[5, -1]).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
}
backend_tests!(reshape_infers_one_dimension => reshape_infers_one_dimension_cpu, reshape_infers_one_dimension_gpu);

/// Shapes whose element count overflows `usize` are typed errors, never wrapped-around
/// empty tensors (they used to come back as empty tensors on both backends).
fn overflowing_shapes_are_errors(device: &Device) {
    let huge = [1usize << 32, 1 << 32];
    let e = Tensor::zeros(device, &huge, DType::F32).unwrap_err();
    assert!(matches!(e, Error::ShapeOverflow { .. }), "{e}");
    let e = Tensor::from_slice::<f32>(device, &[], &[1 << 63, 2]).unwrap_err();
    assert!(matches!(e, Error::ShapeOverflow { .. }), "{e}");
    let e = Tensor::full(device, &[usize::MAX, 3], 1.0, DType::F16).unwrap_err();
    assert!(matches!(e, Error::ShapeOverflow { .. }), "{e}");
    let t = Tensor::from_slice(device, &[1.0f32, 2.0], &[2]).unwrap();
    let e = t.reshape(&[1 << 32, 1 << 32, 1 << 40]).unwrap_err();
    assert!(matches!(e, Error::ShapeOverflow { .. }), "{e}");
    // a zero dimension makes any shape empty, however large the others
    let empty = Tensor::zeros(device, &[1 << 40, 0, 1 << 40], DType::F32).unwrap();
    assert!(empty.is_empty());
}
backend_tests!(overflowing_shapes_are_errors => overflowing_shapes_are_errors_cpu, overflowing_shapes_are_errors_gpu);

/// Every hint in a dtype error, followed literally, works: for each tensor dtype read as
/// each other host type, the message names calls that succeed on this device (u32 never
/// casts to or from floats on a GPU, floats never cast to u32), and we make them.
fn dtype_hints_work_when_followed(device: &Device) {
    let values = [1.0f32, 2.0, 3.0];
    for have in DType::ALL {
        let t = Tensor::from_f32(device, &values, &[3], have)
            .or_else(|_| Tensor::from_slice(device, &[1u32, 2, 3], &[3]))
            .unwrap();
        assert_eq!(t.dtype(), have);
        for want in DType::ALL {
            if want == have {
                continue;
            }
            let e = match want {
                DType::F32 => t.to_vec::<f32>().map(|_| ()).unwrap_err(),
                DType::F16 => t.to_vec::<f16>().map(|_| ()).unwrap_err(),
                DType::BF16 => t.to_vec::<bf16>().map(|_| ()).unwrap_err(),
                DType::U32 => t.to_vec::<u32>().map(|_| ()).unwrap_err(),
            };
            let msg = e.to_string();
            let rust = match have {
                DType::F32 => "f32",
                DType::F16 => "half::f16",
                DType::BF16 => "half::bf16",
                DType::U32 => "u32",
            };
            // `.to_vec::<{have}>()` and `.to_f32_vec()` are always offered, and work
            assert!(msg.contains(&format!("`.to_vec::<{rust}>()`")), "{msg}");
            assert!(msg.contains("`.to_f32_vec()`"), "{msg}");
            assert_eq!(t.to_f32_vec().unwrap(), values, "{msg}");
            let read_back = match have {
                DType::F32 => t.to_vec::<f32>().is_ok(),
                DType::F16 => t.to_vec::<f16>().is_ok(),
                DType::BF16 => t.to_vec::<bf16>().is_ok(),
                DType::U32 => t.to_vec::<u32>().is_ok(),
            };
            assert!(read_back, "{msg}");
            // a cast is offered exactly where it exists, and then works
            let cast = format!("`.cast(DType::{want:?})`");
            let cast_named = msg.contains(&cast);
            assert_eq!(cast_named, have.is_float() && want.is_float(), "{msg}");
            if cast_named {
                let c = t.cast(want).unwrap();
                assert_eq!(c.to_f32_vec().unwrap(), values, "{msg}");
            }
        }
    }
    // operands of different dtypes: the hint's cast makes the call work
    let a = Tensor::from_f32(device, &values, &[3], DType::F16).unwrap();
    let b = Tensor::from_f32(device, &values, &[3], DType::F32).unwrap();
    let e = openkern::ops::add(&a, &b).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("`.cast(DType::F16)`"), "{msg}");
    let sum = openkern::ops::add(&a, &b.cast(DType::F16).unwrap()).unwrap();
    assert_eq!(sum.to_f32_vec().unwrap(), [2.0, 4.0, 6.0]);
    // a u32 operand: no cast is suggested, since none exists on every device
    let ids = Tensor::from_slice(device, &[1u32, 2, 3], &[3]).unwrap();
    if let Err(e) = openkern::ops::add(&b, &ids) {
        assert!(!e.to_string().contains(".cast(DType::U32)"), "{e}");
    }
}
backend_tests!(dtype_hints_work_when_followed => dtype_hints_work_when_followed_cpu, dtype_hints_work_when_followed_gpu);
