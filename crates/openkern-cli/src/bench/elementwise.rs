//! Benchmarks of the elementwise family: bytes read + written per second.

use super::{BenchArgs, Bound, Row};
use openkern::{ops, DType, Device, Tensor};

pub fn rows(device: &Device, args: &BenchArgs) -> openkern::Result<Vec<Row>> {
    let shapes: &[(usize, usize)] = if args.quick {
        &[(64, 4096)]
    } else {
        &[(4096, 4096), (512, 32000)]
    };
    let mut rows = Vec::new();
    for &(m, n) in shapes {
        for dtype in [DType::F32, DType::F16] {
            let data: Vec<f32> = (0..m * n).map(|i| (i % 97) as f32 * 0.01).collect();
            let a = Tensor::from_f32(device, &data, &[m, n], dtype)?;
            let b = Tensor::from_f32(device, &data, &[m, n], dtype)?;
            let bias = Tensor::from_f32(device, &data[..n], &[n], dtype)?;
            let iters = if args.quick { 3 } else { 20 };
            ops::add(&a, &b)?;
            let t = device.time(iters, || ops::add(&a, &b).map(drop))?;
            let bytes = 3.0 * (m * n * dtype.size_in_bytes()) as f64;
            rows.push(Row {
                family: "elementwise",
                case: format!("add {m}x{n}"),
                dtype: dtype.name(),
                seconds: t.seconds,
                work: bytes,
                bound: Bound::Memory,
                source: t.source,
                peer: None,
            });
            let t = device.time(iters, || ops::add(&a, &bias).map(drop))?;
            let bytes = 2.0 * (m * n * dtype.size_in_bytes()) as f64;
            rows.push(Row {
                family: "elementwise",
                case: format!("add bias [{n}] to {m}x{n}"),
                dtype: dtype.name(),
                seconds: t.seconds,
                work: bytes,
                bound: Bound::Memory,
                source: t.source,
                peer: None,
            });
        }
    }
    Ok(rows)
}
