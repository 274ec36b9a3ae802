//! Portability evidence without a GPU: every kernel, in every dtype variant and every
//! override specialisation its launcher uses, parses and validates with naga and
//! translates to SPIR-V (Vulkan), MSL (Metal), HLSL (DX12) and GLSL (GL).
//!
//! Kernels that need an experimental extension (cooperative matrices) must translate to
//! SPIR-V (Vulkan: NVIDIA, AMD) and to MSL 2.3 (Metal's simdgroup matrices: Apple); HLSL
//! and GLSL are tried and reported, since those backends do not offer it. The 8×8
//! cooperative-matrix kernel must come out of the MSL writer in Metal's real 8×8 types.

use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use openkern::gpu::shader::KernelSource;

/// Metal's simdgroup matrices are 8×8 only: a kernel that uses `coop_mat8x8` (the
/// variant for Metal) must come out of the MSL writer with no other simdgroup matrix
/// type (naga writes whatever size the WGSL names, `simdgroup_half16x16` included,
/// which Metal lacks, and its validator does not check that a multiply's operands agree
/// in size).
fn metal_matrix_types(wgsl: &str, msl: &str, entry: &str) -> Vec<String> {
    if !wgsl.contains("coop_mat8x8") {
        return Vec::new();
    }
    let mut bad: Vec<String> = Vec::new();
    for (at, _) in msl.match_indices("simdgroup_") {
        let word: String = msl[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let ty = ["half", "float"]
            .iter()
            .any(|t| word.starts_with(&format!("simdgroup_{t}")));
        if ty && !word.ends_with("8x8") && !bad.contains(&word) {
            bad.push(word);
        }
    }
    if !msl.contains("simdgroup_multiply_accumulate") {
        bad.push("(no simdgroup_multiply_accumulate at all)".into());
    }
    bad.into_iter()
        .map(|w| format!("{entry}: MSL: {w} is not a Metal simdgroup matrix type"))
        .collect()
}

fn translate(kernel: &KernelSource, source: &str, constants: &[(&str, f64)]) -> Vec<String> {
    let mut failures = Vec::new();
    let module = match naga::front::wgsl::parse_str(source) {
        Ok(m) => m,
        Err(e) => return vec![format!("parse: {}", e.emit_to_string(source))],
    };
    let info = match Validator::new(ValidationFlags::all(), Capabilities::all()).validate(&module) {
        Ok(i) => i,
        Err(e) => return vec![format!("validate: {}", e.emit_to_string(source))],
    };
    let pipeline_constants: naga::back::PipelineConstants =
        constants.iter().map(|&(k, v)| (k.to_string(), v)).collect();
    let experimental = source.contains("wgpu_cooperative_matrix");
    for &entry in kernel.entry_points {
        let ep = Some((naga::ShaderStage::Compute, entry));
        let (module, info) = match naga::back::pipeline_constants::process_overrides(
            &module,
            &info,
            ep,
            &pipeline_constants,
        ) {
            Ok(pair) => pair,
            Err(e) => {
                failures.push(format!("{entry}: overrides {constants:?}: {e}"));
                continue;
            }
        };
        let spv_options = spv::Options::default();
        let spv_pipeline = spv::PipelineOptions {
            shader_stage: naga::ShaderStage::Compute,
            entry_point: entry.to_string(),
        };
        if let Err(e) = spv::write_vec(&module, &info, &spv_options, Some(&spv_pipeline)) {
            failures.push(format!("{entry}: SPIR-V: {e}"));
        }
        let mut others = Vec::new();
        let msl_pipeline = msl::PipelineOptions {
            entry_point: Some((naga::ShaderStage::Compute, entry.to_string())),
            ..Default::default()
        };
        // wgpu's Metal backend offers cooperative matrices from MSL 2.3 on
        let msl_options = msl::Options {
            lang_version: if experimental {
                (2, 3)
            } else {
                msl::Options::default().lang_version
            },
            ..Default::default()
        };
        match msl::write_string(&module, &info, &msl_options, &msl_pipeline) {
            Err(e) => failures.push(format!("{entry}: MSL: {e}")),
            Ok((text, _)) => failures.extend(metal_matrix_types(source, &text, entry)),
        }
        let hlsl_options = hlsl::Options {
            shader_model: hlsl::ShaderModel::V6_2,
            ..Default::default()
        };
        let hlsl_pipeline = hlsl::PipelineOptions {
            entry_point: Some((naga::ShaderStage::Compute, entry.to_string())),
        };
        let mut out = String::new();
        if let Err(e) =
            hlsl::Writer::new(&mut out, &hlsl_options, &hlsl_pipeline).write(&module, &info, None)
        {
            others.push(format!("{entry}: HLSL: {e}"));
        }
        let glsl_options = glsl::Options {
            version: glsl::Version::new_gles(310),
            ..Default::default()
        };
        let glsl_pipeline = glsl::PipelineOptions {
            shader_stage: naga::ShaderStage::Compute,
            entry_point: entry.to_string(),
            multiview: None,
        };
        let mut out = String::new();
        let glsl = glsl::Writer::new(
            &mut out,
            &module,
            &info,
            &glsl_options,
            &glsl_pipeline,
            naga::proc::BoundsCheckPolicies::default(),
        )
        .and_then(|mut w| w.write().map(drop));
        if let Err(e) = glsl {
            others.push(format!("{entry}: GLSL: {e}"));
        }
        if experimental {
            for o in others {
                eprintln!("{} (experimental, not offered there): {o}", kernel.name);
            }
        } else {
            failures.extend(others);
        }
    }
    failures
}

#[test]
fn every_kernel_variant_validates_and_translates_everywhere() {
    let mut failures = Vec::new();
    let mut variants = 0;
    for kernel in openkern::gpu::kernels() {
        // The file on its own, default header and override defaults.
        for f in translate(kernel, kernel.source, &[]) {
            failures.push(format!("{} (as written): {f}", kernel.name));
        }
        for header in kernel.headers() {
            let source = kernel.specialise(&header);
            for &constants in kernel.specialisations {
                variants += 1;
                for f in translate(kernel, &source, constants) {
                    failures.push(format!(
                        "{} {:?} {constants:?}: {f}",
                        kernel.name, header.dtypes
                    ));
                }
            }
        }
    }
    assert!(variants > 0);
    eprintln!("{variants} kernel variants validated");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The default header written in each file is the one the launcher would generate for
/// f32, so the file on its own shows exactly what the f32 variant compiles.
#[test]
fn default_headers_match_the_generated_f32_header() {
    for kernel in openkern::gpu::kernels() {
        // a twin with swapped pieces shares its file with the kernel as written
        if kernel.tensors.is_empty() || !kernel.swaps.is_empty() {
            continue;
        }
        let f32_header = openkern::gpu::shader::ShaderHeader::new(vec![
            openkern::DType::F32;
            kernel.tensors.len()
        ]);
        let generated = kernel.specialise(&f32_header);
        let strip = |s: &str| {
            s.lines()
                .filter(|l| !l.starts_with("enable "))
                .map(str::trim_end)
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(
            strip(&generated),
            strip(kernel.source),
            "{}: the header block in shaders/{}.wgsl differs from ShaderHeader's f32 rendering",
            kernel.name,
            kernel.name
        );
    }
}

/// Shared WGSL is written once in `shaders/common/`; each kernel that uses a piece keeps an
/// inline copy between `// #piece NAME` markers so the file is valid WGSL alone. Every
/// copy must equal its canonical file byte for byte, every marked block must be a piece
/// the kernel lists (and every listed piece present), and `shaders/common/` holds exactly
/// the registered pieces.
#[test]
fn inline_pieces_equal_their_canonical_files() {
    use openkern::gpu::shader::{piece_blocks, pieces};
    let mut failures = Vec::new();
    for kernel in openkern::gpu::kernels() {
        let blocks = match piece_blocks(kernel.source) {
            Ok(b) => b,
            Err(e) => {
                failures.push(format!("{}: {e}", kernel.name));
                continue;
            }
        };
        for piece in kernel.pieces {
            if !blocks.iter().any(|b| b.name == piece.name) {
                failures.push(format!(
                    "{}: lists piece {} but carries no `// #piece {}` block",
                    kernel.name, piece.name, piece.name
                ));
            }
        }
        for (from, _) in kernel.swaps {
            if !kernel.pieces.iter().any(|p| p.name == from.name) {
                failures.push(format!(
                    "{}: swaps piece {} it does not carry",
                    kernel.name, from.name
                ));
            }
        }
        for block in &blocks {
            let Some(piece) = kernel.pieces.iter().find(|p| p.name == block.name) else {
                failures.push(format!(
                    "{}: carries a block for piece {} without listing it in its KernelSource",
                    kernel.name, block.name
                ));
                continue;
            };
            if block.text != piece.source {
                let line = block
                    .text
                    .lines()
                    .zip(piece.source.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or(block.text.lines().count().min(piece.source.lines().count()));
                failures.push(format!(
                    "{}: its copy of piece {} drifted from shaders/common/{}.wgsl (first difference at line {} of the piece); copy the canonical text back",
                    kernel.name,
                    piece.name,
                    piece.name,
                    line + 1
                ));
            }
        }
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/common");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("shaders/common")
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".wgsl")
                .to_string()
        })
        .collect();
    files.sort();
    let mut registered: Vec<String> = pieces::ALL.iter().map(|p| p.name.to_string()).collect();
    registered.sort();
    if files != registered {
        failures.push(format!(
            "shaders/common holds {files:?} but pieces::ALL registers {registered:?}"
        ));
    }
    for kernel in openkern::gpu::kernels() {
        if kernel.source.contains("// #reduce") {
            failures.push(format!("{}: old `// #reduce` marker", kernel.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Each kernel's uniform `Params` is declared once in Rust (`uniform_params!`); its layout
/// must be the WGSL struct's as naga lays it out: the same members in the same order at
/// the same offsets (padding members aside) and the same size.
#[test]
fn params_structs_match_their_wgsl_layout() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for kernel in openkern::gpu::kernels() {
        let module = naga::front::wgsl::parse_str(kernel.source).expect("kernels parse");
        let uniform = module
            .global_variables
            .iter()
            .find(|(_, v)| v.space == naga::AddressSpace::Uniform);
        let (var, layout) = match (uniform, kernel.params) {
            (None, None) => continue,
            (Some((_, v)), Some(l)) => (v, l),
            (Some(_), None) => {
                failures.push(format!(
                    "{}: has a uniform but its KernelSource names no params layout",
                    kernel.name
                ));
                continue;
            }
            (None, Some(l)) => {
                failures.push(format!(
                    "{}: names {} but declares no uniform",
                    kernel.name, l.rust_name
                ));
                continue;
            }
        };
        let naga::TypeInner::Struct { members, span } = &module.types[var.ty].inner else {
            failures.push(format!("{}: its uniform is not a struct", kernel.name));
            continue;
        };
        let wgsl: Vec<(String, usize)> = members
            .iter()
            .filter_map(|m| {
                let name = m.name.clone().unwrap_or_default();
                (!name.starts_with("_pad")).then_some((name, m.offset as usize))
            })
            .collect();
        let rust: Vec<(String, usize)> = layout
            .fields
            .iter()
            .filter(|(n, _)| !n.starts_with("_pad"))
            .map(|&(n, o)| (n.to_string(), o))
            .collect();
        if wgsl != rust {
            failures.push(format!(
                "{}: WGSL Params members {wgsl:?} differ from {} {rust:?}",
                kernel.name, layout.rust_name
            ));
        }
        if *span as usize != layout.size {
            failures.push(format!(
                "{}: WGSL Params is {span} bytes, {} is {}",
                kernel.name, layout.rust_name, layout.size
            ));
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} params structs checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every kernel file in `shaders/` is registered (through `ops::FAMILIES` or the probes),
/// so a new kernel cannot miss the portability test above.
#[test]
fn every_shader_file_is_a_registered_kernel() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    let registered: Vec<&str> = openkern::gpu::kernels().iter().map(|k| k.name).collect();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(dir).expect("shaders/") {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if let Some(stem) = name.strip_suffix(".wgsl") {
            if !registered.contains(&stem) {
                missing.push(stem.to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "shaders/{missing:?}.wgsl are not registered: add their KernelSource to an OpFamily in src/ops/mod.rs"
    );
}

/// Both cooperative-matrix GEMMs, 16×16 (Vulkan) and 8×8 (Metal), are registered, so
/// the test above validates them and translates every specialisation to SPIR-V and MSL.
#[test]
fn both_cooperative_matrix_variants_are_registered() {
    let kernels = openkern::gpu::kernels();
    for (name, ty) in [
        ("matmul_coop", "coop_mat16x16"),
        ("matmul_coop8", "coop_mat8x8"),
    ] {
        let k = kernels
            .iter()
            .find(|k| k.name == name)
            .unwrap_or_else(|| panic!("{name} is not registered in ops::FAMILIES"));
        assert!(k.source.contains(ty), "{name} does not use {ty}");
        assert!(
            k.specialisations.len() >= 2,
            "{name}: specialisations the launcher uses must be listed"
        );
        let failures = translate(k, &k.specialise(&k.headers()[0]), k.specialisations[1]);
        assert!(failures.is_empty(), "{name}: {failures:?}");
    }
}
