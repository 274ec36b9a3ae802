struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    // element strides of A's (m, k) and B's (k, n)
    sam: u32,
    sak: u32,
    sbk: u32,
    sbn: u32,
    tiles_m: u32,
    tiles_n: u32,
    splits: u32,
    // K elements per split (a multiple of BK when splits > 1)
    k_chunk: u32,
    batch_rank: u32,
    total_groups: u32,
    _pad0: u32,
    _pad1: u32,
    batch_shape: array<vec4<u32>, 2>,
    a_bstride: array<vec4<u32>, 2>,
    b_bstride: array<vec4<u32>, 2>,
}
