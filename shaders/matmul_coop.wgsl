enable f16;
enable wgpu_cooperative_matrix;

// Cooperative-matrix GEMM: f16 A and B, f32 accumulation in 16×16 coop_mat tiles, which
// Vulkan drivers map to tensor cores (VK_KHR_cooperative_matrix). Selected only on
// adapters reporting a 16×16×16 f16→f32 configuration.
//
// A workgroup computes a BM×BN = (32·SGM)×(32·SGN) block as SGM×SGN quadrants of 32×32,
// one per subgroup, each quadrant 2×2 accumulator tiles (2×2 → 64×64 for small outputs,
// 4×2 → 128×64 for large ones: twice the MMAs per staged byte). Per K step of BK = 32 the
// workgroup stages the A and B tiles in shared memory (bounds-checked, zero-filled, so
// any M, N, K, stride and transpose works), then every subgroup does 2·2·2 = 8
// coopMultiplyAdd on its quadrant.
// Rows in shared memory are padded by 8 halves: 16-byte aligned for the coop loads and
// off the bank period so a tile's rows do not collide.
// Cooperative ops must sit in workgroup-uniform control flow, so no branch may depend on
// the subgroup id: every subgroup runs the same loads and multiply-adds, on quadrant
// min(q0 + sg, Q − 1), Q = SGM·SGN. With STEP = Q (the launcher's choice where the
// subgroup size is fixed and the workgroup holds Q subgroups, e.g. 4 or 8 × 32 on NVIDIA)
// one pass covers the block; with STEP = 1 (subgroup size unknown) the quadrants take Q
// passes and only subgroup 0's result is kept: slower, but right on any subgroup size.
// The epilogue goes through a per-subgroup f32 16×16 staging tile, so bias, activation,
// output dtype and edge masking are plain per-element code.
//
// a and b are declared here as f16 (binding 2, 3); the header declares bias and c.

// #header
@group(0) @binding(0) var<storage, read> bias: array<f32>;
fn load_bias(i: u32) -> f32 { return bias[i]; }
fn load2_bias(w: u32) -> vec2<f32> { return vec2<f32>(bias[2u * w], bias[2u * w + 1u]); }
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
fn store_c(i: u32, v: f32) { c[i] = v; }
fn store2_c(w: u32, v: vec2<f32>) { c[2u * w] = v.x; c[2u * w + 1u] = v.y; }
// #end header

@group(0) @binding(2) var<storage, read> a: array<f16>;
@group(0) @binding(3) var<storage, read> b: array<f16>;

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

override WG: u32 = 128u;
override STEP: u32 = 1u;
override HAS_BIAS: bool = false;
override ACT: u32 = 0u;

// subgroups (32×32 quadrants) per workgroup along M and N; SGM·SGN ≤ 16
override SGM: u32 = 2u;
override SGN: u32 = 2u;
override Q: u32 = SGM * SGN;
override BM: u32 = 32u * SGM;
override BN: u32 = 32u * SGN;
const BK: u32 = 32u;
// the cooperative-matrix side (the epilogue's staging tiles are CT×CT)
const CT: u32 = 16u;
const A_STRIDE: u32 = BK + 8u;
override B_STRIDE: u32 = BN + 8u;

var<workgroup> As: array<f16, BM * A_STRIDE>;
var<workgroup> Bs: array<f16, BK * B_STRIDE>;
// one 16×16 f32 staging tile per subgroup (the 16th shared by any beyond it, which
// then all hold quadrant 3: identical values)
var<workgroup> Cs: array<f32, 16u * CT * CT>;

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

// #piece matmul_coop_emit
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
// #end piece matmul_coop_emit

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_id) sg: u32,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_size) sg_size: u32) {
    let g = wid.y * groups.x + wid.x;
    let live = g < params.total_groups;
    let tn = g % params.tiles_n;
    let tm = (g / params.tiles_n) % params.tiles_m;
    let bidx = (g / (params.tiles_n * params.tiles_m)) % params.batch;
    let offs = batch_offsets(bidx);
    let m0 = tm * BM;
    let n0 = tn * BN;
    var tiles = 0u;
    if (live) {
        tiles = (params.k + BK - 1u) / BK;
    }
    let out_base = bidx * params.m * params.n;
    for (var q0 = 0u; q0 < Q; q0 += STEP) {
        let q = min(q0 + sg, Q - 1u);
        let mine = sg < STEP && q0 + sg < Q;
        let qm = (q / SGN) * 32u;
        let qn = (q % SGN) * 32u;
        // Zero accumulators come from a zeroed staging tile rather than a null constant
        // (OpConstantNull of a cooperative-matrix type is not accepted everywhere).
        let slot = min(sg, 15u);
        for (var e = lid; e < 16u * 256u; e += WG) {
            Cs[e] = 0.0;
        }
        workgroupBarrier();
        var c00 = coopLoadT<coop_mat16x16<f32, C>>(&Cs[slot * 256u], 16u);
        var c01 = c00;
        var c10 = c00;
        var c11 = c00;
        workgroupBarrier();
        for (var t = 0u; t < tiles; t++) {
            let k0 = t * BK;
            // Stage A (BM×BK) and B (BK×BN); zero outside the matrices.
            for (var e = lid; e < BM * BK; e += WG) {
                let mm = e / BK;
                let kk = e % BK;
                var v = f16(0.0);
                if (m0 + mm < params.m && k0 + kk < params.k) {
                    v = a[offs.x + (m0 + mm) * params.sam + (k0 + kk) * params.sak];
                }
                As[mm * A_STRIDE + kk] = v;
            }
            for (var e = lid; e < BK * BN; e += WG) {
                let kk = e / BN;
                let nn = e % BN;
                var v = f16(0.0);
                if (k0 + kk < params.k && n0 + nn < params.n) {
                    v = b[offs.y + (k0 + kk) * params.sbk + (n0 + nn) * params.sbn];
                }
                Bs[kk * B_STRIDE + nn] = v;
            }
            workgroupBarrier();
            {
                for (var kk = 0u; kk < BK; kk += 16u) {
                    let a0 = coopLoadT<coop_mat16x16<f16, A>>(&As[qm * A_STRIDE + kk], A_STRIDE);
                    let a1 = coopLoadT<coop_mat16x16<f16, A>>(&As[(qm + 16u) * A_STRIDE + kk], A_STRIDE);
                    let b0 = coopLoadT<coop_mat16x16<f16, B>>(&Bs[kk * B_STRIDE + qn], B_STRIDE);
                    let b1 = coopLoadT<coop_mat16x16<f16, B>>(&Bs[kk * B_STRIDE + qn + 16u], B_STRIDE);
                    c00 = coopMultiplyAdd(a0, b0, c00);
                    c01 = coopMultiplyAdd(a0, b1, c01);
                    c10 = coopMultiplyAdd(a1, b0, c10);
                    c11 = coopMultiplyAdd(a1, b1, c11);
                }
            }
            workgroupBarrier();
        }
        // Epilogue, one 16×16 accumulator at a time through this subgroup's staging tile.
        { coopStoreT(c00, &Cs[slot * 256u], 16u); }
        workgroupBarrier();
        if (mine) { emit(slot, lane, sg_size, m0 + qm, n0 + qn, out_base, live); }
        workgroupBarrier();
        { coopStoreT(c01, &Cs[slot * 256u], 16u); }
        workgroupBarrier();
        if (mine) { emit(slot, lane, sg_size, m0 + qm, n0 + qn + 16u, out_base, live); }
        workgroupBarrier();
        { coopStoreT(c10, &Cs[slot * 256u], 16u); }
        workgroupBarrier();
        if (mine) { emit(slot, lane, sg_size, m0 + qm + 16u, n0 + qn, out_base, live); }
        workgroupBarrier();
        { coopStoreT(c11, &Cs[slot * 256u], 16u); }
        workgroupBarrier();
        if (mine) { emit(slot, lane, sg_size, m0 + qm + 16u, n0 + qn + 16u, out_base, live); }
        workgroupBarrier();
    }
}
