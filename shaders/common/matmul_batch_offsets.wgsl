fn batch_offsets(bidx: u32) -> vec2<u32> {
    var rem = bidx;
    var off = vec2<u32>(0u, 0u);
    for (var d = i32(params.batch_rank) - 1; d >= 0; d--) {
        let q = u32(d) / 4u;
        let r = u32(d) % 4u;
        let size = params.batch_shape[q][r];
        let i = rem % size;
        rem = rem / size;
        off += i * vec2<u32>(params.a_bstride[q][r], params.b_bstride[q][r]);
    }
    return off;
}
