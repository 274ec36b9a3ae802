// The GEMV of matmul_gemv.wgsl with subgroup reductions, for adapters with SUBGROUP.
// Same layout and bindings; only the cross-invocation sum differs.
// #header
@group(0) @binding(0) var<storage, read> a: array<f32>;
fn load_a(i: u32) -> f32 { return a[i]; }
fn load2_a(w: u32) -> vec2<f32> { return vec2<f32>(a[2u * w], a[2u * w + 1u]); }
fn load8_a(o: u32) -> array<vec4<f32>, 2> { let i = 8u * o; return array<vec4<f32>, 2>(vec4<f32>(a[i], a[i + 1u], a[i + 2u], a[i + 3u]), vec4<f32>(a[i + 4u], a[i + 5u], a[i + 6u], a[i + 7u])); }
@group(0) @binding(1) var<storage, read> b: array<f32>;
fn load_b(i: u32) -> f32 { return b[i]; }
fn load2_b(w: u32) -> vec2<f32> { return vec2<f32>(b[2u * w], b[2u * w + 1u]); }
fn load8_b(o: u32) -> array<vec4<f32>, 2> { let i = 8u * o; return array<vec4<f32>, 2>(vec4<f32>(b[i], b[i + 1u], b[i + 2u], b[i + 3u]), vec4<f32>(b[i + 4u], b[i + 5u], b[i + 6u], b[i + 7u])); }
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

// gemv_k: B read along K (the [out, in] weight layout, trans_b). Each subgroup owns
// COLS output columns: its lanes stride along the weight rows in word pairs (coalesced,
// each weight element read exactly once) and subgroupAdd folds their sums in registers,
// so there is no shared memory and no barrier. A lane's pairs of A serve all COLS
// columns from registers: with one column per subgroup, A was loaded as often as the
// weight, and on adapters where every load is costly (llvmpipe: a per-lane loop) that
// doubled the time. SG must be the adapter's fixed subgroup size; WG / SG subgroups per
// workgroup.
override SG: u32 = 32u;
// output columns per subgroup (≤ 8)
override COLS: u32 = 4u;
// every weight row starts at a multiple of 8 elements and K is one: each lane reads
// eight consecutive weights per column with one load8_b (the header may declare b in
// 16-byte elements, see ShaderHeader::quads)
override OCTETS_B: bool = false;
// with OCTETS_B: A's rows are contiguous along K and start at multiples of 8 elements,
// so each lane reads its eight elements of A with one load8_a as well
override OCTETS_A: bool = false;

@compute @workgroup_size(WG)
fn gemv_k(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(subgroup_invocation_id) lane: u32,
          @builtin(subgroup_id) sg: u32) {
    read_pair_params();
    let n_len = params.n;
    let sbn = params.sbn;
    let per_group = (WG / SG) * COLS;
    let g = wid.y * groups.x + wid.x;
    let col_groups = (n_len + per_group - 1u) / per_group;
    let bidx = g / col_groups;
    let n0 = (g % col_groups) * per_group + sg * COLS;
    let live = bidx < params.batch && n0 < n_len;
    let offs = batch_offsets(min(bidx, params.batch - 1u));
    var acc: array<array<f32, 8>, 8>;
    for (var m = 0u; m < MR; m++) {
        for (var c = 0u; c < COLS; c++) {
            acc[m][c] = 0.0;
        }
    }
    if (live && OCTETS_B) {
        for (var k = 8u * lane; k < k_len; k += 8u * SG) {
            var w: array<array<vec4<f32>, 2>, 8>;
            for (var c = 0u; c < COLS; c++) {
                var v = array<vec4<f32>, 2>();
                if (n0 + c < n_len) {
                    v = load8_b((offs.y + (n0 + c) * sbn + k) >> 3u);
                }
                w[c] = v;
            }
            for (var m = 0u; m < MR; m++) {
                var x: array<vec4<f32>, 2>;
                if (OCTETS_A) {
                    x = load8_a((offs.x + m * stride_am + k) >> 3u);
                } else {
                    for (var h = 0u; h < 2u; h++) {
                        x[h] = vec4<f32>(a_pair(offs.x, m, k + 4u * h), a_pair(offs.x, m, k + 4u * h + 2u));
                    }
                }
                for (var h = 0u; h < 2u; h++) {
                    for (var c = 0u; c < COLS; c++) {
                        let q = w[c][h];
                        let p = fma(x[h].x, q.x, fma(x[h].y, q.y, acc[m][c]));
                        acc[m][c] = fma(x[h].z, q.z, fma(x[h].w, q.w, p));
                    }
                }
            }
        }
    }
    if (live && !OCTETS_B) {
        for (var k = 2u * lane; k < k_len; k += 2u * SG) {
            // every column's weight pair in flight before any is used
            var w: array<vec2<f32>, 8>;
            for (var c = 0u; c < COLS; c++) {
                var v = vec2<f32>(0.0);
                if (n0 + c < n_len) {
                    v = w_pair(offs.y + (n0 + c) * sbn, k);
                }
                w[c] = v;
            }
            for (var m = 0u; m < MR; m++) {
                let x = a_pair(offs.x, m, k);
                for (var c = 0u; c < COLS; c++) {
                    acc[m][c] = fma(x.x, w[c].x, fma(x.y, w[c].y, acc[m][c]));
                }
            }
        }
    }
    // The sums go through a copy made in a loop small enough to unroll, so `acc` is only
    // indexed by constants (the store loop, with a GELU inside, may stay a loop; see
    // matmul_subgroup.wgsl's epilogue).
    var sums: array<array<f32, 8>, 8>;
    for (var m = 0u; m < MR; m++) {
        for (var c = 0u; c < COLS; c++) {
            sums[m][c] = acc[m][c];
        }
    }
    for (var m = 0u; m < MR; m++) {
        for (var c = 0u; c < COLS; c++) {
            // every lane of the subgroup takes part; lane 0 stores
            let s = subgroupAdd(sums[m][c]);
            let n = n0 + c;
            if (live && n < n_len && lane == 0u) {
                store_c((bidx * params.m + m) * n_len + n, finish(s, n));
            }
        }
    }
}
