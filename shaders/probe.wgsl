// Probes of the device's limits, timed by `openkern bench`:
// `copy` streams one vec4 per invocation from src to dst (bytes read + written),
// `fma` runs long chains of independent vec4 FMAs (no memory traffic in the loop).

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}
@group(0) @binding(2) var<uniform> params: Params;

override WORKGROUP: u32 = 256u;
// FMA iterations per invocation; each does ACCUMULATORS independent vec4 FMAs.
override FMA_LOOP: u32 = 512u;

@compute @workgroup_size(WORKGROUP)
fn copy(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * groups.x + wid.x) * WORKGROUP + lid;
    if (i < params.n) {
        dst[i] = src[i];
    }
}

@compute @workgroup_size(WORKGROUP)
fn fma_chain(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) groups: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * groups.x + wid.x) * WORKGROUP + lid;
    let seed = f32(i & 1023u) * 1e-3 + src[0].x;
    // Eight independent accumulators hide the FMA latency.
    var a0 = vec4<f32>(seed, seed + 0.1, seed + 0.2, seed + 0.3);
    var a1 = a0 + 0.01;
    var a2 = a0 + 0.02;
    var a3 = a0 + 0.03;
    var a4 = a0 + 0.04;
    var a5 = a0 + 0.05;
    var a6 = a0 + 0.06;
    var a7 = a0 + 0.07;
    let m = vec4<f32>(0.9999);
    let c = vec4<f32>(1e-4);
    // Unrolled four times so loop bookkeeping is a small fraction of the issued work.
    for (var k = 0u; k < FMA_LOOP; k += 4u) {
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a3 = fma(a3, m, c);
        a4 = fma(a4, m, c);
        a5 = fma(a5, m, c);
        a6 = fma(a6, m, c);
        a7 = fma(a7, m, c);

        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a3 = fma(a3, m, c);
        a4 = fma(a4, m, c);
        a5 = fma(a5, m, c);
        a6 = fma(a6, m, c);
        a7 = fma(a7, m, c);

        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a3 = fma(a3, m, c);
        a4 = fma(a4, m, c);
        a5 = fma(a5, m, c);
        a6 = fma(a6, m, c);
        a7 = fma(a7, m, c);

        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a3 = fma(a3, m, c);
        a4 = fma(a4, m, c);
        a5 = fma(a5, m, c);
        a6 = fma(a6, m, c);
        a7 = fma(a7, m, c);
    }
    let s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
    // Written only when impossible, so the chain is kept but no bandwidth is used.
    if (s.x == -1.0) {
        dst[i % params.n] = s;
    }
}
