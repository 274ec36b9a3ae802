// GEMV for M ≤ 8 (token decode, small batched decode): bandwidth-bound, so every kernel
// here reads each element of B exactly once, in coalesced word pairs, and keeps the M
// rows of A (small, cache-resident) in the inner loop. Grid folded into y above 65535.
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

// rows of A (M ≤ 8), a pipeline constant so the accumulators stay in registers
override MR: u32 = 1u;
override WG: u32 = 128u;
override HAS_BIAS: bool = false;
override ACT: u32 = 0u;
// pairs along K of A / along K (gemv_k) or N (gemv_n) of B are word-aligned
override VEC2_A: bool = false;
override VEC2_B: bool = false;

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

// #piece gemv_pairs
// K and A's strides, copied from `params` once per invocation by read_pair_params():
// read from the uniform buffer in the K loop, each use was a fresh load (on llvmpipe a
// gather over the eight lanes of a SIMD row, per use).
var<private> k_len: u32;
var<private> stride_am: u32;
var<private> stride_ak: u32;

fn read_pair_params() {
    k_len = params.k;
    stride_am = params.sam;
    stride_ak = params.sak;
}

// A pair (m, k), (m, k+1) of A, zero past K.
fn a_pair(base: u32, m: u32, k: u32) -> vec2<f32> {
    let i = base + m * stride_am + k * stride_ak;
    if (k + 1u < k_len) {
        if (VEC2_A) {
            return load2_a(i >> 1u);
        }
        return vec2<f32>(load_a(i), load_a(i + stride_ak));
    }
    if (k < k_len) {
        return vec2<f32>(load_a(i), 0.0);
    }
    return vec2<f32>(0.0);
}

// A pair (k, k+1) of the weight row starting at brow (B read along K), zero past K.
fn w_pair(brow: u32, k: u32) -> vec2<f32> {
    if (k + 1u < k_len) {
        if (VEC2_B) {
            return load2_b((brow + k) >> 1u);
        }
        return vec2<f32>(load_b(brow + k), load_b(brow + k + 1u));
    }
    if (k < k_len) {
        return vec2<f32>(load_b(brow + k), 0.0);
    }
    return vec2<f32>(0.0);
}

fn finish(acc: f32, col: u32) -> f32 {
    var x = acc;
    if (HAS_BIAS) {
        x += load_bias(col);
    }
    return activate(x, ACT);
}
// #end piece gemv_pairs

// gemv_k: B read along K (the [out, in] weight layout, trans_b). A team of TEAM
// invocations owns one output column n: it strides along the weight row in word pairs
// (coalesced, each weight element read exactly once), then reduces in shared memory.
// WG / TEAM columns per workgroup keep workgroups few and full where K is short or
// workgroup launches are costly.
override TEAM: u32 = 32u;
var<workgroup> red: array<f32, 8u * WG>;

@compute @workgroup_size(WG)
fn gemv_k(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    read_pair_params();
    let teams = WG / TEAM;
    let team = lid / TEAM;
    let tl = lid % TEAM;
    let g = wid.y * groups.x + wid.x;
    let col_groups = (params.n + teams - 1u) / teams;
    let bidx = g / col_groups;
    let n = (g % col_groups) * teams + team;
    let live = bidx < params.batch && n < params.n;
    let offs = batch_offsets(min(bidx, params.batch - 1u));
    var acc: array<f32, 8>;
    for (var m = 0u; m < MR; m++) {
        acc[m] = 0.0;
    }
    if (live) {
        let brow = offs.y + n * params.sbn;
        // Four word pairs in flight per invocation before any is used: a GEMV is
        // latency-bound unless each invocation keeps several loads outstanding.
        for (var k0 = 2u * tl; k0 < k_len; k0 += 8u * TEAM) {
            var w: array<vec2<f32>, 4>;
            for (var u = 0u; u < 4u; u++) {
                w[u] = w_pair(brow, k0 + u * 2u * TEAM);
            }
            for (var u = 0u; u < 4u; u++) {
                let k = k0 + u * 2u * TEAM;
                if (k < k_len) {
                    for (var m = 0u; m < MR; m++) {
                        let x = a_pair(offs.x, m, k);
                        acc[m] = fma(x.x, w[u].x, fma(x.y, w[u].y, acc[m]));
                    }
                }
            }
        }
    }
    // Tree reduction within each team, one slot per (row, invocation).
    for (var m = 0u; m < MR; m++) {
        red[m * WG + lid] = acc[m];
    }
    workgroupBarrier();
    for (var s = TEAM / 2u; s > 0u; s >>= 1u) {
        if (tl < s) {
            for (var m = 0u; m < MR; m++) {
                red[m * WG + lid] += red[m * WG + lid + s];
            }
        }
        workgroupBarrier();
    }
    if (live && tl < MR) {
        store_c((bidx * params.m + tl) * params.n + n, finish(red[tl * WG + team * TEAM], n));
    }
}

// gemv_n: B read along N (plain x·W with W [K, N]). Each invocation owns a column pair;
// KS slices of the workgroup split K and meet in shared memory.
const KS: u32 = 8u;
const NX: u32 = 32u;
var<workgroup> red2: array<vec2<f32>, 256>;

@compute @workgroup_size(32, 8)
fn gemv_n(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_id) lid3: vec3<u32>) {
    let g = wid.y * groups.x + wid.x;
    let col_groups = (params.n + 2u * NX - 1u) / (2u * NX);
    let live = g < col_groups * params.batch;
    let bidx = g / col_groups;
    let n = 2u * ((g % col_groups) * NX + lid3.x);
    let offs = batch_offsets(bidx);
    var acc: array<vec2<f32>, 8>;
    for (var m = 0u; m < MR; m++) {
        acc[m] = vec2<f32>(0.0);
    }
    if (live && n < params.n) {
        for (var k = lid3.y; k < params.k; k += KS) {
            let i = offs.y + k * params.sbk + n;
            var w: vec2<f32>;
            if (n + 1u < params.n) {
                if (VEC2_B) {
                    w = load2_b(i >> 1u);
                } else {
                    w = vec2<f32>(load_b(i), load_b(i + 1u));
                }
            } else {
                w = vec2<f32>(load_b(i), 0.0);
            }
            for (var m = 0u; m < MR; m++) {
                acc[m] = fma(vec2<f32>(load_a(offs.x + m * params.sam + k * params.sak)), w, acc[m]);
            }
        }
    }
    for (var m = 0u; m < MR; m++) {
        red2[lid3.y * NX + lid3.x] = acc[m];
        workgroupBarrier();
        if (lid3.y == 0u && live && n < params.n) {
            var s = vec2<f32>(0.0);
            for (var y = 0u; y < KS; y++) {
                s += red2[y * NX + lid3.x];
            }
            let at = (bidx * params.m + m) * params.n + n;
            store_c(at, finish(s.x, n));
            if (n + 1u < params.n) {
                store_c(at + 1u, finish(s.y, n + 1u));
            }
        }
        workgroupBarrier();
    }
}
