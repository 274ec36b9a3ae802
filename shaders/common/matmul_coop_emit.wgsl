// Writes one staged CT×CT accumulator tile (slot `slot` of the f32 staging array Cs,
// row-major; CT is the kernel's cooperative-matrix side): bias, activation, masking at
// the edges. Each lane takes column pairs, written as one word for 16-bit outputs where
// aligned.
fn emit(slot: u32, lane: u32, sg_size: u32, row0: u32, col0: u32, out_base: u32, live: bool) {
    let pairs_ok = params.n % 2u == 0u;
    let row_pairs = CT / 2u;
    for (var p = lane; p < CT * row_pairs; p += sg_size) {
        let row = row0 + p / row_pairs;
        let col = col0 + 2u * (p % row_pairs);
        if (!live || row >= params.m || col >= params.n) {
            continue;
        }
        let e = slot * CT * CT + 2u * p;
        var v = vec2<f32>(Cs[e], Cs[e + 1u]);
        if (HAS_BIAS) {
            v.x += load_bias(col);
            if (col + 1u < params.n) {
                v.y += load_bias(col + 1u);
            }
        }
        v = vec2<f32>(activate(v.x, ACT), activate(v.y, ACT));
        let at = out_base + row * params.n + col;
        if (pairs_ok) {
            store2_c(at >> 1u, v);
        } else {
            store_c(at, v.x);
            if (col + 1u < params.n) {
                store_c(at + 1u, v.y);
            }
        }
    }
}
