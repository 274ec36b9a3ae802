fn ok_f16_bits(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    if ((b & 0x7fffffffu) > 0x7f800000u) { return 0x7e00u; }
    if (abs(v) >= 65520.0) { return ((b >> 16u) & 0x8000u) | 0x7c00u; }
    return pack2x16float(vec2<f32>(v, 0.0)) & 0xffffu;
}
