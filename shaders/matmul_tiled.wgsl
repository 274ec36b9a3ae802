// Tiled GEMM: C[b] = act(A[b] · B[b] + bias), f32 accumulation, any M, N, K, strides.
//
// Tiling scheme. A workgroup computes a BM×BN block of C; each of its
// (BM/TM)·(BN/TN) invocations computes a TM×TN micro-tile in registers (register
// blocking: per k step an invocation reads TM + TN values from shared memory and does
// TM·TN FMAs). K advances BK at a time through shared memory.
//
// Shared layout. Both tiles are stored k-major as vec4 along m (A) or n (B), so the
// inner loop reads whole vec4s (one 128-bit shared load for four FMAs rows/cols). An
// invocation's four-wide groups are interleaved with the other invocations'
// (group j of invocation t sits at vec4 index t + j·(BN/TN)), so a warp's vec4 reads hit
// consecutive addresses: no bank conflicts. Each k row is padded by one vec4 (PAD)
// because global loads along K write a column of the k-major tile: without the pad all
// of a warp's writes would land in one bank.
//
// Double buffering. Two shared buffers: while the tile in one is multiplied, the next
// tile's global loads are already in flight into registers; they are written into the
// other buffer afterwards. One barrier per K step suffices, since a buffer is only
// rewritten a full step after it was last read.
//
// Vectorised loads. Global loads go in pairs along the operand's contiguous dimension;
// with VEC2 (set by the launcher when pairs are word-aligned) a pair is one load2_* call:
// one 32-bit load for f16/bf16 instead of two.
//
// Split K. Workgroups may own a K range (params.k_chunk); with splits > 1 the launcher
// binds an f32 workspace as `c` (partial sums at split·batch·M·N) and runs the
// epilogue in matmul_reduce.wgsl instead (HAS_BIAS false, ACT 0 here).
//
// Grid: tiles_n · tiles_m · batch · splits workgroups, folded into y above 65535.

// #header
@group(0) @binding(0) var<storage, read> a: array<f32>;
fn load_a(i: u32) -> f32 { return a[i]; }
fn load2_a(w: u32) -> vec2<f32> { return vec2<f32>(a[2u * w], a[2u * w + 1u]); }
@group(0) @binding(1) var<storage, read> b: array<f32>;
fn load_b(i: u32) -> f32 { return b[i]; }
fn load2_b(w: u32) -> vec2<f32> { return vec2<f32>(b[2u * w], b[2u * w + 1u]); }
@group(0) @binding(2) var<storage, read> bias: array<f32>;
fn load_bias(i: u32) -> f32 { return bias[i]; }
fn load2_bias(w: u32) -> vec2<f32> { return vec2<f32>(bias[2u * w], bias[2u * w + 1u]); }
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
fn store_c(i: u32, v: f32) { c[i] = v; }
fn store2_c(w: u32, v: vec2<f32>) { c[2u * w] = v.x; c[2u * w + 1u] = v.y; }
// #end header

// #piece matmul_params
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
// #end piece matmul_params
@group(0) @binding(4) var<uniform> params: Params;

override BM: u32 = 64u;
override BN: u32 = 64u;
override BK: u32 = 16u;
// micro-tile: 4 or 8 each
override TM: u32 = 4u;
override TN: u32 = 4u;
// A is read along K (not transposed) / B is read along N (not transposed)
override A_KCONTIG: bool = true;
override B_NCONTIG: bool = true;
override VEC2_A: bool = false;
override VEC2_B: bool = false;
override HAS_BIAS: bool = false;
// 0 none, 1 gelu (erf), 2 gelu (tanh), 3 silu, 4 relu
override ACT: u32 = 0u;

override WG: u32 = (BM / TM) * (BN / TN);
const PAD: u32 = 1u;
override A_ROW: u32 = BM / 4u + PAD;
override B_ROW: u32 = BN / 4u + PAD;
// pairs each invocation loads per tile (≤ 8 each)
override A_PAIRS: u32 = BM * BK / (2u * WG);
override B_PAIRS: u32 = BN * BK / (2u * WG);

var<workgroup> As: array<vec4<f32>, 2u * BK * A_ROW>;
var<workgroup> Bs: array<vec4<f32>, 2u * BK * B_ROW>;

// #piece activation
// The activations, one numbering everywhere (Activation::code in src/ops/activation.rs):
// 0 none, 1 gelu (erf form), 2 gelu (tanh approximation), 3 silu, 4 relu. The same
// formulas as the CPU twin. The logistic forms are x / (1 + exp(-t)), which saturate
// cleanly where a tanh could give inf / inf = NaN. Called with an override constant as
// `code`, the switch folds away.

// erfc(z) for z >= 0 to a fractional error below 1.2e-7 (Numerical Recipes' erfcc,
// a Chebyshev fit); WGSL has no erf.
fn erfc_pos(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
        + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
        + t * (-0.82215223 + t * 0.17087277))))))));
    return t * exp(p);
}

fn activate(x: f32, code: u32) -> f32 {
    switch code {
        case 1u: {
            // gelu(x) = x * Phi(x) = x * erfc(-x / sqrt 2) / 2, written so the fit is
            // always evaluated at a non-negative argument
            let z = x * 0.7071067811865476;
            if (z >= 0.0) {
                return x * (1.0 - 0.5 * erfc_pos(z));
            }
            return x * 0.5 * erfc_pos(-z);
        }
        case 2u: {
            let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
            return x / (1.0 + exp(-2.0 * u));
        }
        case 3u: {
            return x / (1.0 + exp(-x));
        }
        case 4u: {
            // not max(x, 0): WGSL leaves max's NaN result unspecified
            if (x > 0.0 || (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u) {
                return x;
            }
            return 0.0;
        }
        default: {
            return x;
        }
    }
}
// #end piece activation

// #piece matmul_batch_offsets
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
// #end piece matmul_batch_offsets

// A pair of A elements (m, k), (m, k+1) — or (m, k), (m+1, k) when A is transposed —
// zero outside the matrix or past k_end.
fn load_pair_a(base: u32, m: u32, k: u32, k_end: u32) -> vec2<f32> {
    let i = base + m * params.sam + k * params.sak;
    var in0: bool;
    var in1: bool;
    if (A_KCONTIG) {
        in0 = m < params.m && k < k_end;
        in1 = m < params.m && k + 1u < k_end;
    } else {
        in0 = m < params.m && k < k_end;
        in1 = m + 1u < params.m && k < k_end;
    }
    if (VEC2_A && in1) {
        return load2_a(i >> 1u);
    }
    var v = vec2<f32>(0.0, 0.0);
    if (in0) { v.x = load_a(i); }
    if (in1) { v.y = load_a(i + 1u); }
    return v;
}

fn load_pair_b(base: u32, k: u32, n: u32, k_end: u32) -> vec2<f32> {
    let i = base + k * params.sbk + n * params.sbn;
    var in0: bool;
    var in1: bool;
    if (B_NCONTIG) {
        in0 = k < k_end && n < params.n;
        in1 = k < k_end && n + 1u < params.n;
    } else {
        in0 = k < k_end && n < params.n;
        in1 = k + 1u < k_end && n < params.n;
    }
    if (VEC2_B && in1) {
        return load2_b(i >> 1u);
    }
    var v = vec2<f32>(0.0, 0.0);
    if (in0) { v.x = load_b(i); }
    if (in1) { v.y = load_b(i + 1u); }
    return v;
}

// Tile coordinates (row in tile, k in tile) of load pair p of invocation lid: pairs run
// along the operand's contiguous dimension so neighbouring invocations read
// neighbouring addresses (coalesced).
fn a_pair_coord(p: u32) -> vec2<u32> {
    if (A_KCONTIG) {
        return vec2<u32>(p / (BK / 2u), 2u * (p % (BK / 2u)));
    }
    return vec2<u32>(2u * (p % (BM / 2u)), p / (BM / 2u));
}

fn b_pair_coord(p: u32) -> vec2<u32> {
    if (B_NCONTIG) {
        return vec2<u32>(2u * (p % (BN / 2u)), p / (BN / 2u));
    }
    return vec2<u32>(p / (BK / 2u), 2u * (p % (BK / 2u)));
}

fn put_a(buf: u32, m: u32, k: u32, v: f32) {
    As[(buf * BK + k) * A_ROW + m / 4u][m % 4u] = v;
}

fn put_b(buf: u32, k: u32, n: u32, v: f32) {
    Bs[(buf * BK + k) * B_ROW + n / 4u][n % 4u] = v;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = wid.y * groups.x + wid.x;
    // Past-the-end groups of a folded grid do no work but still reach every barrier.
    let live = g < params.total_groups;
    let tn = g % params.tiles_n;
    let tm = (g / params.tiles_n) % params.tiles_m;
    let rest = g / (params.tiles_n * params.tiles_m);
    let bidx = rest % params.batch;
    let split = rest / params.batch;

    let offs = batch_offsets(bidx);
    let m0 = tm * BM;
    let n0 = tn * BN;
    let k_begin = split * params.k_chunk;
    let k_end = min(params.k, k_begin + params.k_chunk);
    var tiles = 0u;
    if (live && k_end > k_begin) {
        tiles = (k_end - k_begin + BK - 1u) / BK;
    }

    let tx = lid % (BN / TN);
    let ty = lid / (BN / TN);

    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    var ra: array<vec2<f32>, 8>;
    var rb: array<vec2<f32>, 8>;

    // Prologue: tile 0 into buffer 0.
    if (tiles > 0u) {
        for (var r = 0u; r < A_PAIRS; r++) {
            let t = a_pair_coord(lid + r * WG);
            ra[r] = load_pair_a(offs.x, m0 + t.x, k_begin + t.y, k_end);
        }
        for (var r = 0u; r < B_PAIRS; r++) {
            let t = b_pair_coord(lid + r * WG);
            rb[r] = load_pair_b(offs.y, k_begin + t.y, n0 + t.x, k_end);
        }
        for (var r = 0u; r < A_PAIRS; r++) {
            let t = a_pair_coord(lid + r * WG);
            if (A_KCONTIG) {
                put_a(0u, t.x, t.y, ra[r].x);
                put_a(0u, t.x, t.y + 1u, ra[r].y);
            } else {
                put_a(0u, t.x, t.y, ra[r].x);
                put_a(0u, t.x + 1u, t.y, ra[r].y);
            }
        }
        for (var r = 0u; r < B_PAIRS; r++) {
            let t = b_pair_coord(lid + r * WG);
            if (B_NCONTIG) {
                put_b(0u, t.y, t.x, rb[r].x);
                put_b(0u, t.y, t.x + 1u, rb[r].y);
            } else {
                put_b(0u, t.y, t.x, rb[r].x);
                put_b(0u, t.y + 1u, t.x, rb[r].y);
            }
        }
    }
    workgroupBarrier();

    for (var tile = 0u; tile < tiles; tile++) {
        let cur = tile % 2u;
        let has_next = tile + 1u < tiles;
        // Issue the next tile's global loads before the math so they overlap it.
        if (has_next) {
            let kn = k_begin + (tile + 1u) * BK;
            for (var r = 0u; r < A_PAIRS; r++) {
                let t = a_pair_coord(lid + r * WG);
                ra[r] = load_pair_a(offs.x, m0 + t.x, kn + t.y, k_end);
            }
            for (var r = 0u; r < B_PAIRS; r++) {
                let t = b_pair_coord(lid + r * WG);
                rb[r] = load_pair_b(offs.y, kn + t.y, n0 + t.x, k_end);
            }
        }
        for (var kk = 0u; kk < BK; kk++) {
            var av: array<vec4<f32>, 2>;
            var bv: array<vec4<f32>, 2>;
            let arow = (cur * BK + kk) * A_ROW;
            let brow = (cur * BK + kk) * B_ROW;
            for (var i = 0u; i < TM / 4u; i++) {
                av[i] = As[arow + ty + i * (BM / TM)];
            }
            for (var j = 0u; j < TN / 4u; j++) {
                bv[j] = Bs[brow + tx + j * (BN / TN)];
            }
            for (var i = 0u; i < TM; i++) {
                let x = av[i / 4u][i % 4u];
                for (var j = 0u; j < TN / 4u; j++) {
                    acc[i * 2u + j] = fma(vec4<f32>(x), bv[j], acc[i * 2u + j]);
                }
            }
        }
        if (has_next) {
            let nxt = 1u - cur;
            for (var r = 0u; r < A_PAIRS; r++) {
                let t = a_pair_coord(lid + r * WG);
                if (A_KCONTIG) {
                    put_a(nxt, t.x, t.y, ra[r].x);
                    put_a(nxt, t.x, t.y + 1u, ra[r].y);
                } else {
                    put_a(nxt, t.x, t.y, ra[r].x);
                    put_a(nxt, t.x + 1u, t.y, ra[r].y);
                }
            }
            for (var r = 0u; r < B_PAIRS; r++) {
                let t = b_pair_coord(lid + r * WG);
                if (B_NCONTIG) {
                    put_b(nxt, t.y, t.x, rb[r].x);
                    put_b(nxt, t.y, t.x + 1u, rb[r].y);
                } else {
                    put_b(nxt, t.y, t.x, rb[r].x);
                    put_b(nxt, t.y + 1u, t.x, rb[r].y);
                }
            }
        }
        workgroupBarrier();
    }

    if (!live) {
        return;
    }
    // Epilogue: bias, activation, store. Row i of the micro-tile is tile row
    // 4·(ty + (i/4)·(BM/TM)) + i%4; column group j starts at 4·(tx + j·(BN/TN)).
    //
    // The bias is added while the tile is copied into `tile`, and the activation and
    // stores read the copy: the copy loop is small enough for every compiler to unroll,
    // so `acc` is only ever indexed by constants and stays in registers whatever the
    // epilogue costs (Mesa's NIR, for one, leaves a loop rolled once its cost × trip
    // count passes 32 × 26 instructions on llvmpipe; see matmul_subgroup.wgsl). The copy
    // costs one store and load per output.
    var bias_v: array<vec4<f32>, 2>;
    for (var j = 0u; j < TN / 4u; j++) {
        let col = n0 + 4u * (tx + j * (BN / TN));
        var v = vec4<f32>(0.0);
        for (var e = 0u; e < 4u; e++) {
            if (HAS_BIAS && col + e < params.n) {
                v[e] = load_bias(col + e);
            }
        }
        bias_v[j] = v;
    }
    var tile: array<vec4<f32>, 16>;
    for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN / 4u; j++) {
            var v = acc[i * 2u + j];
            if (HAS_BIAS) {
                v += bias_v[j];
            }
            tile[i * 2u + j] = v;
        }
    }
    let out_base = (split * params.batch + bidx) * params.m * params.n;
    let pairs_ok = params.n % 2u == 0u;
    for (var i = 0u; i < TM; i++) {
        let row = m0 + 4u * (ty + (i / 4u) * (BM / TM)) + i % 4u;
        if (row >= params.m) {
            continue;
        }
        for (var j = 0u; j < TN / 4u; j++) {
            let col = n0 + 4u * (tx + j * (BN / TN));
            var v = tile[i * 2u + j];
            for (var e = 0u; e < 4u; e++) {
                v[e] = activate(v[e], ACT);
            }
            let at = out_base + row * params.n + col;
            if (pairs_ok && col + 4u <= params.n) {
                store2_c(at >> 1u, v.xy);
                store2_c((at >> 1u) + 1u, v.zw);
            } else {
                for (var e = 0u; e < 4u; e++) {
                    if (col + e < params.n) {
                        store_c(at + e, v[e]);
                    }
                }
            }
        }
    }
}
