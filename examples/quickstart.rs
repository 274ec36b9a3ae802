//! The smallest useful program: open the best device, add two tensors, read the result.
//!
//! `cargo run --release --example quickstart`

use openkern::{ops, DType, Device, Tensor};

fn main() -> openkern::Result<()> {
    let device = Device::new()?;
    let info = device.info();
    println!(
        "device: {} ({}, {})",
        info.name, info.backend, info.device_type
    );

    let x = Tensor::from_slice(&device, &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
    let bias = Tensor::from_slice(&device, &[0.5f32, -1.0, 2.0], &[3])?;
    let y = ops::add(&x, &bias)?; // bias broadcasts over the rows
    let y = ops::mul_scalar(&y, 2.0)?;
    println!("y = {:?}", y.to_vec::<f32>()?);

    let half = y.cast(DType::F16)?;
    println!("as f16 = {:?}", half.to_f32_vec()?);
    Ok(())
}
