//! Embedding gather on every backend and dtype, and the out-of-range id rules.

mod common;
use common::*;
use openkern::Device;
use openkern::{ops, DType, Error, Tensor};

fn gather_rows_exactly(device: &Device) {
    for dtype in DType::ALL {
        for &(vocab, d) in &[(5usize, 1usize), (37, 3), (100, 64), (7, 257)] {
            let table = quantize(&random(vocab * d, d as u64), dtype);
            let ids: Vec<u32> = (0..11).map(|i| ((i * 7 + 3) % vocab) as u32).collect();
            let t = tensor(device, &table, &[vocab, d], dtype);
            let idt = Tensor::from_slice(device, &ids, &[1, 11]).unwrap();
            let got = ops::embedding(&idt, &t).unwrap();
            assert_eq!(got.shape(), &[1, 11, d]);
            assert_eq!(got.dtype(), dtype);
            let want: Vec<f64> = ids
                .iter()
                .flat_map(|&i| {
                    table[i as usize * d..(i as usize + 1) * d]
                        .iter()
                        .map(|&v| v as f64)
                })
                .collect();
            assert_close(
                &format!("embedding {vocab}x{d} {dtype} on {device:?}"),
                &got.to_f32_vec().unwrap(),
                &want,
                0.0,
                0.0,
            );
        }
    }
}
backend_tests!(gather_rows_exactly => gather_rows_exactly_cpu, gather_rows_exactly_gpu);

fn out_of_range_ids(device: &Device) {
    let table_data = random(4 * 3, 1);
    let ids = [1u32, 4, 2, 9];
    let table = tensor(device, &table_data, &[4, 3], DType::F32);
    let idt = Tensor::from_slice(device, &ids, &[4]).unwrap();
    let bad = |e: Error| {
        assert!(
            matches!(
                e,
                Error::IndexOutOfRange {
                    index: 4 | 9,
                    position: 1 | 3,
                    bound: 4,
                    ..
                }
            ),
            "{device:?}: {e}"
        )
    };
    // The CPU refuses at the call; a GPU at every read of the output, since its ids may
    // only exist on the GPU.
    match ops::embedding(&idt, &table) {
        Err(e) => {
            assert!(device.is_cpu());
            bad(e)
        }
        Ok(t) => {
            assert!(!device.is_cpu());
            // a read of another tensor, from another thread, does not receive the fault
            let other = tensor(device, &[1.0, 2.0], &[2], DType::F32);
            std::thread::scope(|s| {
                s.spawn(|| assert_eq!(other.to_f32_vec().unwrap(), vec![1.0, 2.0]));
            });
            device.sync().unwrap();
            // the faulty output never reads back as data: every read is the error
            bad(t.to_f32_vec().unwrap_err());
            bad(t.to_f32_vec().unwrap_err());
            // the device keeps working
            let again = ops::embedding(&idt, &table).unwrap();
            bad(again.to_f32_vec().unwrap_err());
            // ids made on the GPU: argmax of a row whose maximum sits past the table
            let logits = tensor(device, &[0.0, 0.0, 0.0, 0.0, 5.0], &[1, 5], DType::F32);
            let next = ops::argmax(&logits).unwrap();
            let e = ops::embedding(&next, &table)
                .unwrap()
                .to_f32_vec()
                .unwrap_err();
            assert!(matches!(e, Error::IndexOutOfRange { index: 4, .. }), "{e}");
            let good = Tensor::from_slice(device, &[3u32, 0], &[2]).unwrap();
            let v = ops::embedding(&good, &table).unwrap().to_f32_vec().unwrap();
            assert_eq!(v[..3], table_data[9..12]);
        }
    }
}
backend_tests!(out_of_range_ids => out_of_range_ids_cpu, out_of_range_ids_gpu);

#[test]
fn u32_tensors_round_trip_and_refuse_float_ops() {
    for device in devices() {
        let ids = Tensor::from_slice(&device, &[0u32, 7, u32::MAX], &[3]).unwrap();
        assert_eq!(ids.dtype(), DType::U32);
        assert_eq!(ids.to_vec::<u32>().unwrap(), vec![0, 7, u32::MAX]);
        assert_eq!(
            ids.to_device(&openkern::Device::cpu())
                .unwrap()
                .to_vec::<u32>()
                .unwrap(),
            vec![0, 7, u32::MAX]
        );
        assert!(matches!(
            ids.to_vec::<f32>().unwrap_err(),
            Error::HostType { .. }
        ));
        assert!(matches!(
            ids.cast(DType::F32),
            Ok(_) | Err(Error::UnsupportedDType { .. })
        ));
        assert!(matches!(
            Tensor::from_f32(&device, &[1.0], &[1], DType::U32).unwrap_err(),
            Error::UnsupportedDType { .. }
        ));
        let f = tensor(&device, &[1.0, 2.0], &[2], DType::F32);
        assert!(matches!(
            f.cast(DType::U32).unwrap_err(),
            Error::UnsupportedDType { .. }
        ));
        let table = tensor(&device, &[1.0, 2.0], &[2, 1], DType::F32);
        assert!(matches!(
            ops::embedding(&f, &table).unwrap_err(),
            Error::UnsupportedDType { .. }
        ));
        assert!(matches!(
            ops::embedding(&ids, &f).unwrap_err(),
            Error::Shape { .. }
        ));
    }
    let cpu = openkern::Device::cpu();
    let ids = Tensor::from_slice(&cpu, &[3u32, 16_777_216], &[2]).unwrap();
    assert_eq!(
        ids.cast(DType::F32).unwrap().to_vec::<f32>().unwrap(),
        vec![3.0, 16_777_216.0]
    );
}

fn zero_width_tables_are_refused(device: &Device) {
    // the output [2, 0] is empty, so no kernel would look at the ids: id 7 into a
    // 3-row table was an error on the CPU and silently accepted on the GPU
    let ids = Tensor::from_slice(device, &[0u32, 7], &[2]).unwrap();
    let table = Tensor::zeros(device, &[3, 0], DType::F32).unwrap();
    let e = ops::embedding(&ids, &table).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
    assert!(e.to_string().contains("d >= 1"), "{e}");
    // no ids at all is still an empty result
    let none = Tensor::from_slice::<u32>(device, &[], &[0]).unwrap();
    assert_eq!(ops::embedding(&none, &table).unwrap().shape(), &[0, 0]);
}
backend_tests!(zero_width_tables_are_refused => zero_width_tables_are_refused_cpu, zero_width_tables_are_refused_gpu);
