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
// Word pairs for 16-bit operands (one 32-bit load brings two elements), set by the
// launcher where pairs are word-aligned: A_PAIRS reads A's chunk in pairs along K (a
// chunk is then 2·SG values of K); B_PAIRS_K reads B's pairs along K (the [out, in]
// weight); B_PAIRS_N reads them along N, and a lane then owns column pairs
// n0 + 2·(j/2·SG + l) + j%2 instead of n0 + j·SG + l.
override A_PAIRS: bool = false;
override B_PAIRS_K: bool = false;
override B_PAIRS_N: bool = false;
override HAS_BIAS: bool = false;
override ACT: u32 = 0u;
override WG: u32 = SG * WGS;

// The column of C that accumulator component j of `lane` holds.
fn column(n0: u32, j: u32, lane: u32) -> u32 {
    if (B_PAIRS_N) {
        return n0 + 2u * ((j / 2u) * SG + lane) + j % 2u;
    }
    return n0 + j * SG + lane;
}

// Value kk of the subgroup's A chunk for row r, from the lane that loaded it.
fn a_at(a_reg: ptr<function, array<vec2<f32>, 32>>, r: u32, kk: u32) -> f32 {
    if (A_PAIRS) {
        let pair = (*a_reg)[r];
        return subgroupShuffle(select(pair.x, pair.y, (kk & 1u) == 1u), kk >> 1u);
    }
    return subgroupShuffle((*a_reg)[r].x, kk);
}

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
    let chunk = select(SG, 2u * SG, A_PAIRS);
    for (var k0 = 0u; k0 < k_end; k0 += chunk) {
        // This lane's share of the A chunk: A[row0 + r, k0 + lane], or the pair at
        // k0 + 2·lane.
        var a_reg: array<vec2<f32>, 32>;
        if (A_SHUFFLE) {
            for (var r = 0u; r < TM; r++) {
                let row = row0 + r;
                var v = vec2<f32>(0.0);
                if (A_PAIRS) {
                    let ka = k0 + 2u * lane;
                    let i = offs.x + row * sam + ka;
                    if (row < m && ka + 1u < kk_total) {
                        v = load2_a(i >> 1u);
                    } else if (row < m && ka < kk_total) {
                        v.x = load_a(i);
                    }
                } else {
                    let ka = k0 + lane;
                    if (row < m && ka < kk_total) {
                        v.x = load_a(offs.x + row * sam + ka * sak);
                    }
                }
                a_reg[r] = v;
            }
        }
        let count = min(chunk, kk_total - k0);
        if (B_PAIRS_K && A_SHUFFLE) {
            // K is even here, so every pair lies inside the row.
            for (var kk = 0u; kk < count; kk += 2u) {
                let k = k0 + kk;
                var b0 = vec4<f32>(0.0);
                var b1 = vec4<f32>(0.0);
                for (var j = 0u; j < TN; j++) {
                    let col = column(n0, j, lane);
                    if (col < n) {
                        let w = load2_b((offs.y + col * sbn + k) >> 1u);
                        b0[j] = w.x;
                        b1[j] = w.y;
                    }
                }
                // kk is even: with A in pairs, both values sit in one lane's pair (no
                // select; a bigger body here stops Mesa unrolling the row loop at TM 32)
                for (var r = 0u; r < TM; r++) {
                    var x0: f32;
                    var x1: f32;
                    if (A_PAIRS) {
                        x0 = subgroupShuffle(a_reg[r].x, kk >> 1u);
                        x1 = subgroupShuffle(a_reg[r].y, kk >> 1u);
                    } else {
                        x0 = subgroupShuffle(a_reg[r].x, kk);
                        x1 = subgroupShuffle(a_reg[r].x, kk + 1u);
                    }
                    acc[r] = fma(vec4<f32>(x1), b1, fma(vec4<f32>(x0), b0, acc[r]));
                }
            }
            continue;
        }
        for (var kk = 0u; kk < count; kk++) {
            let k = k0 + kk;
            var bv = vec4<f32>(0.0);
            if (B_PAIRS_N) {
                // N is even here: a pair is wholly inside or wholly past the row
                for (var j = 0u; j < TN; j += 2u) {
                    let col = column(n0, j, lane);
                    if (col < n) {
                        let w = load2_b((offs.y + k * sbk + col) >> 1u);
                        bv[j] = w.x;
                        bv[j + 1u] = w.y;
                    }
                }
            } else {
                for (var j = 0u; j < TN; j++) {
                    let col = column(n0, j, lane);
                    if (col < n) {
                        bv[j] = load_b(offs.y + k * sbk + col * sbn);
                    }
                }
            }
            for (var r = 0u; r < TM; r++) {
                var x = 0.0;
                if (A_SHUFFLE) {
                    x = a_at(&a_reg, r, kk);
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
        let col = column(n0, j, lane);
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
            let col = column(n0, j, lane);
            let x = activate(tile[r][j], ACT);
            // Every lane takes part in the shuffle; only in-range lanes store.
            let right = subgroupShuffleDown(x, 1u);
            if (!live || row >= m || col >= n) {
                continue;
            }
            let at = out_base + row * n + col;
            if (B_PAIRS_N) {
                // this lane holds both columns of the pair (N is even)
                if (j % 2u == 0u) {
                    store2_c(at >> 1u, vec2<f32>(x, activate(tile[r][j + 1u], ACT)));
                }
            } else if (pairs_ok) {
                if (lane % 2u == 0u) {
                    store2_c(at >> 1u, vec2<f32>(x, right));
                }
            } else {
                store_c(at, x);
            }
        }
    }
}
