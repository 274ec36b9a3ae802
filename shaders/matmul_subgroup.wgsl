// Subgroup GEMM for adapters with SUBGROUP and a fixed subgroup size SG: no shared
// memory and no barriers. A subgroup owns a TM × (TN·SG) block of C; lane l owns columns
// n0 + j·SG + l (j < TN), so its B loads are coalesced across the subgroup. For each
// chunk of SG values of K, lane l loads A[row, k0 + l] for its TM rows (coalesced along
// K) and the subgroup passes them around with subgroupShuffle: A is read from memory
// once per subgroup instead of once per lane, and never staged through shared memory.
// The workgroup stacks WGS subgroups along M. Barrier-free, which suits adapters where
// workgroup barriers are expensive (software rasterisers) and where SG is large.
//
// Loads per FMA. Per step of K a lane loads TN values of B and TM / SG of A and does
// TM · TN FMAs, so tall tiles (TM up to 32) pay where a load costs far more than an FMA:
// llvmpipe (Mesa 22.3) loads a storage element lane by lane with a bounds check, some
// 20 cycles per lane, whether the index is uniform or the load a vec4, while a shuffle
// is one vpermd. The row accumulators are vec4s over the TN ≤ 4 columns.
//
// Stores: with N even, lane pairs combine through subgroupShuffleDown so 16-bit outputs
// are whole-word stores.

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

// subgroup size the launcher saw (fixed on this adapter)
override SG: u32 = 32u;
// rows per subgroup (≤ 32), columns per lane (≤ 4), subgroups per workgroup
override TM: u32 = 32u;
override TN: u32 = 4u;
override WGS: u32 = 2u;
// false: every lane loads A[row, k] itself (a uniform address: one broadcast load, which
// beats the shuffle on adapters that emulate shuffles, e.g. software rasterisers)
override A_SHUFFLE: bool = true;
override HAS_BIAS: bool = false;
override ACT: u32 = 0u;
override WG: u32 = SG * WGS;

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
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_id) sgi: u32) {
    // The parameters are read once into registers: read inside the loops, every use
    // was a fresh uniform-buffer load (a gather of eight lanes on llvmpipe).
    let m = params.m;
    let n = params.n;
    let kk_total = params.k;
    let sam = params.sam;
    let sak = params.sak;
    let sbk = params.sbk;
    let sbn = params.sbn;
    let g = wid.y * groups.x + wid.x;
    let live = g < params.total_groups;
    let tn = g % params.tiles_n;
    let tm = (g / params.tiles_n) % params.tiles_m;
    let bidx = (g / (params.tiles_n * params.tiles_m)) % params.batch;
    let offs = batch_offsets(bidx);
    let row0 = tm * (TM * WGS) + sgi * TM;
    let n0 = tn * (TN * SG);

    var acc: array<vec4<f32>, 32>;
    for (var r = 0u; r < TM; r++) {
        acc[r] = vec4<f32>(0.0);
    }
    var k_end = 0u;
    if (live) {
        k_end = kk_total;
    }
    for (var k0 = 0u; k0 < k_end; k0 += SG) {
        // This lane's share of the A chunk: A[row0 + r, k0 + lane].
        var a_reg: array<f32, 32>;
        let ka = k0 + lane;
        if (A_SHUFFLE) {
            for (var r = 0u; r < TM; r++) {
                let row = row0 + r;
                var v = 0.0;
                if (row < m && ka < kk_total) {
                    v = load_a(offs.x + row * sam + ka * sak);
                }
                a_reg[r] = v;
            }
        }
        let count = min(SG, kk_total - k0);
        for (var kk = 0u; kk < count; kk++) {
            let k = k0 + kk;
            var bv = vec4<f32>(0.0);
            for (var j = 0u; j < TN; j++) {
                let col = n0 + j * SG + lane;
                if (col < n) {
                    bv[j] = load_b(offs.y + k * sbk + col * sbn);
                }
            }
            for (var r = 0u; r < TM; r++) {
                var x = 0.0;
                if (A_SHUFFLE) {
                    x = subgroupShuffle(a_reg[r], kk);
                } else if (row0 + r < m) {
                    x = load_a(offs.x + (row0 + r) * sam + k * sak);
                }
                acc[r] = fma(vec4<f32>(x), bv, acc[r]);
            }
        }
    }

    // Epilogue. The bias is added while the tile is copied into `tile`, and the
    // activation and stores read the copy: the copy loop is small enough for every
    // compiler to unroll, so `acc` is only ever indexed by constants and stays in
    // registers. Mesa's NIR unrolls a loop only while its cost × trip count stays within
    // 32 × 26 instructions on llvmpipe (nir_opt_loop_unroll, max_unroll_iterations 32):
    // a store loop that also adds the bias or evaluates GELU stays a loop there, and
    // indexed by its counter the whole accumulator became an array in memory for the K
    // loop as well, which made a fused GELU cost 1.5–2× the plain matmul. The copy costs
    // one store and load per output.
    var bias_v = vec4<f32>(0.0);
    for (var j = 0u; j < TN; j++) {
        let col = n0 + j * SG + lane;
        if (HAS_BIAS && col < n) {
            bias_v[j] = load_bias(col);
        }
    }
    var tile: array<vec4<f32>, 32>;
    for (var r = 0u; r < TM; r++) {
        tile[r] = acc[r];
        if (HAS_BIAS) {
            tile[r] += bias_v;
        }
    }
    let pairs_ok = n % 2u == 0u;
    let out_base = bidx * m * n;
    for (var r = 0u; r < TM; r++) {
        let row = row0 + r;
        for (var j = 0u; j < TN; j++) {
            let col = n0 + j * SG + lane;
            let x = activate(tile[r][j], ACT);
            // Every lane takes part in the shuffle; only in-range lanes store.
            let right = subgroupShuffleDown(x, 1u);
            if (!live || row >= m || col >= n) {
                continue;
            }
            let at = out_base + row * n + col;
            if (pairs_ok) {
                if (lane % 2u == 0u) {
                    store2_c(at >> 1u, vec2<f32>(x, right));
                }
            } else {
                store_c(at, x);
            }
        }
    }
}
