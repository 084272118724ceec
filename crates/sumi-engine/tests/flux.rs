//! The Flux transformer against diffusers' `FluxTransformer2DModel` on tiny random models
//! (`tests/fixtures/flux/make_flux_fixtures.py`): dev (guidance embeddings) and schnell.

use candle_core::{DType, Device, Tensor};
use sumi_engine::arch::flux::{FluxInputs, FluxTransformer, Rope};

#[path = "support/fixtures.rs"]
mod support;
use support::{fixtures, max_abs};

fn ids(t: &Tensor) -> Vec<[f32; 3]> {
    t.to_vec2::<f32>()
        .unwrap()
        .into_iter()
        .map(|r| [r[0], r[1], r[2]])
        .collect()
}

fn check(name: &str, dtype: DType, tolerance: f32) {
    let dir = fixtures().join("flux");
    let t = candle_core::safetensors::load(dir.join("transformer_ref.safetensors"), &Device::Cpu)
        .unwrap();
    let model = FluxTransformer::load(&dir.join(name).join("transformer"), &Device::Cpu, dtype)
        .expect("fixture transformer loads");
    let mut all_ids = ids(&t["txt_ids"]);
    all_ids.extend(ids(&t["img_ids"]));
    let rope = Rope::new(&all_ids, &model.config().axes_dims_rope, &Device::Cpu).unwrap();
    let out = model
        .forward(&FluxInputs {
            img: &t["img"],
            txt: &t["txt"],
            pooled: &t["pooled"],
            timestep: &t["timestep"],
            guidance: model.has_guidance().then_some(&t["guidance"]),
            rope: &rope,
        })
        .unwrap();
    let want = &t[&format!("{name}.out")];
    assert_eq!(out.dims(), want.dims());
    let scale = max_abs(want, &want.zeros_like().unwrap());
    let err = max_abs(&out, want) / scale;
    eprintln!(
        "flux {name} {dtype:?}: max error {err:.2e} relative to the largest output {scale:.2}"
    );
    assert!(err < tolerance, "{name}: differs by {err:.2e}");
    if model.has_guidance() {
        let missing = model.forward(&FluxInputs {
            img: &t["img"],
            txt: &t["txt"],
            pooled: &t["pooled"],
            timestep: &t["timestep"],
            guidance: None,
            rope: &rope,
        });
        let msg = missing
            .expect_err("dev without guidance is refused")
            .to_string();
        assert!(msg.contains("needs a guidance scale"), "{msg}");
    }
}

#[test]
fn dev_transformer_matches_diffusers() {
    check("dev", DType::F32, 1e-4);
}

#[test]
fn schnell_transformer_matches_diffusers() {
    check("schnell", DType::F32, 1e-4);
}

#[test]
fn bf16_weights_on_the_cpu_stay_within_bf16_precision() {
    check("dev", DType::BF16, 2e-2);
}

#[test]
fn t5_encoder_matches_transformers() {
    use sumi_engine::arch::t5::{bucket, T5Encoder};
    let dir = fixtures().join("flux");
    let t = candle_core::safetensors::load(dir.join("t5_ref.safetensors"), &Device::Cpu).unwrap();
    let rel: Vec<i64> = t["relative"].to_vec1().unwrap();
    let want: Vec<i64> = t["buckets"].to_vec1().unwrap();
    for (r, w) in rel.iter().zip(&want) {
        assert_eq!(bucket(*r, 32, 128) as i64, *w, "distance {r}");
    }
    for (dtype, tolerance) in [(DType::F32, 1e-5), (DType::BF16, 2e-2)] {
        let model = T5Encoder::load(&dir.join("dev/text_encoder_2"), &Device::Cpu, dtype).unwrap();
        let ids = t["ids"].to_dtype(DType::U32).unwrap();
        let got = model.forward(&ids).unwrap();
        let want = &t["hidden"];
        let scale = max_abs(want, &want.zeros_like().unwrap());
        let err = max_abs(&got, want) / scale;
        eprintln!("t5 {dtype:?}: max error {err:.2e} relative to the largest value {scale:.2}");
        assert!(err < tolerance, "{dtype:?}: differs by {err:.2e}");
    }
}

#[test]
fn sixteen_channel_vae_with_shift_matches_diffusers() {
    use sumi_engine::arch::vae::{Vae, VaeConfig};
    let dir = fixtures().join("flux");
    let t = candle_core::safetensors::load(dir.join("vae_ref.safetensors"), &Device::Cpu).unwrap();
    let vae_dir = dir.join("dev/vae");
    let config: VaeConfig = sumi_engine::weights::read_json(&vae_dir.join("config.json")).unwrap();
    assert_eq!(
        (config.latent_channels, config.shift_factor),
        (16, Some(0.1159))
    );
    let files = sumi_engine::weights::find_weights(&vae_dir, "diffusion_pytorch_model").unwrap();
    let vb = sumi_engine::weights::var_builder(&files, DType::F32, &Device::Cpu).unwrap();
    let vae = Vae::new(config, vb).unwrap();
    let image = vae.decode(&t["latent"]).unwrap();
    let err = max_abs(&image, &t["image"]);
    eprintln!("flux vae decode: max error {err:.2e}");
    assert!(err < 1e-4, "decode differs by {err:.2e}");
    let encoded = vae.encode(&t["source"]).unwrap();
    let err = max_abs(&encoded, &t["encoded"]);
    eprintln!("flux vae encode: max error {err:.2e}");
    assert!(err < 1e-4, "encode differs by {err:.2e}");
}

#[test]
fn network_packs_and_unpacks_the_latent_as_flux_pipeline() {
    use sumi_engine::arch::flux_network::FluxNetwork;
    use sumi_engine::arch::network::{DenoisingNetwork, NetCond};
    let dir = fixtures().join("flux");
    let t = candle_core::safetensors::load(dir.join("transformer_ref.safetensors"), &Device::Cpu)
        .unwrap();
    let transformer =
        FluxTransformer::load(&dir.join("dev/transformer"), &Device::Cpu, DType::F32).unwrap();
    let net = FluxNetwork::new(transformer);
    assert_eq!(net.in_channels(), 4);
    let cond = NetCond::Flow {
        txt: t["txt"].clone(),
        pooled: t["pooled"].clone(),
        guidance: Some(t["guidance"].clone()),
    };
    let out = net
        .forward(&t["net.latent"], &t["timestep"], &cond)
        .unwrap();
    let want = &t["net.out"];
    assert_eq!(out.dims(), want.dims());
    let err = max_abs(&out, want) / max_abs(want, &want.zeros_like().unwrap());
    eprintln!("flux network: max error {err:.2e} (relative)");
    assert!(err < 1e-4, "differs by {err:.2e}");
    let odd = Tensor::zeros((1, 4, 7, 12), DType::F32, &Device::Cpu).unwrap();
    assert!(net.forward(&odd, &t["timestep"], &cond).is_err());
}
