//! Portability evidence without a GPU: every kernel, in every dtype variant and every
//! override specialisation its launcher uses, parses and validates with naga and
//! translates to SPIR-V (Vulkan), MSL (Metal), HLSL (DX12) and GLSL (GL).
//!
//! Kernels that need an experimental extension (cooperative matrices) must translate to
//! SPIR-V; the other targets are tried and reported, since those backends do not offer it.

use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use openkern::gpu::shader::KernelSource;

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
        if let Err(e) = msl::write_string(&module, &info, &msl::Options::default(), &msl_pipeline) {
            others.push(format!("{entry}: MSL: {e}"));
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
        if kernel.tensors.is_empty() {
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

/// WGSL has no includes, so each matmul shader carries its own copy of the epilogue's
/// activation functions. They must stay identical to each other (one set of formulas, one
/// numbering of `ACT`) and use the same erfc fit as `activation.wgsl`, which the CPU
/// twin copies.
#[test]
fn epilogue_activation_is_one_text_everywhere() {
    fn block(source: &str) -> Option<&str> {
        let start = source.find("fn erfc_pos(")?;
        let end = source[start..]
            .find("\nfn batch_offsets")
            .map(|e| start + e)?;
        Some(&source[start..end])
    }
    fn erfc(source: &str) -> &str {
        let start = source.find("fn erfc_pos(").expect("erfc_pos");
        let end = start + source[start..].find("\n}\n").expect("end of erfc_pos");
        &source[start..end]
    }
    let kernels = openkern::gpu::kernels();
    let matmuls: Vec<_> = kernels
        .iter()
        .filter(|k| k.name.starts_with("matmul_"))
        .collect();
    assert!(matmuls.len() >= 6, "matmul kernels not registered");
    let first = block(matmuls[0].source).expect("matmul epilogue block");
    for k in &matmuls {
        assert_eq!(
            block(k.source),
            Some(first),
            "{}: its erfc_pos/activate block differs from {}'s",
            k.name,
            matmuls[0].name
        );
    }
    let activation = kernels.iter().find(|k| k.name == "activation").unwrap();
    assert_eq!(erfc(activation.source), erfc(first), "erfc fit differs");
}
