//! A `ddpm-spade` pipeline over randomly initialised full-size models, for benchmarks.

use std::sync::{Arc, Mutex};

use burn::tensor::backend::Backend;
use shared::spec::RunSpec;

use super::ddpm_spade::DdpmSpadePipeline;
use super::models::{ModelIds, Models};
use crate::ddpm::{DdpmMeta, DdpmModel, Encoding, UNetConfig};
use crate::device::Resolved;
use crate::spade::{Losses, SpadeDiscriminatorConfig, SpadeGeneratorConfig, SpadeMeta, SpadeModel, SpadeTrainSettings};

/// A `ddpm-spade` pipeline over randomly initialised full-size models: Ho et al.'s CIFAR
/// UNet (≈35.7M parameters) on 64×64 one-hot label maps (or `size`, if smaller) and the
/// full SPADE generator (ngf 64, ≈92M) at `size`. For timing only: the samples are noise.
/// `ddim_steps`: DDIM with that many steps; `None`: DDPM over all 1000 timesteps.
pub fn random_ddpm_spade<B: Backend>(size: u32, ddim_steps: Option<usize>, dev: B::Device, resolved: Resolved) -> anyhow::Result<DdpmSpadePipeline<B>> {
    let classes = shared::ClassTable::ai_hub();
    let k = classes.len();
    let label_size = 64.min(size);
    let mut unet = UNetConfig::cifar10(k);
    unet.image_size = label_size as usize;
    let meta = DdpmMeta::untrained(unet, Encoding::OneHot, 1000, label_size);
    meta.validate("random full-size DDPM")?;
    let arch = SpadeGeneratorConfig::new(k, size as usize).with_input(crate::spade::SpadeInput::Label);
    arch.validate().map_err(|e| anyhow::anyhow!("random full-size SPADE at {size}: {e}"))?;
    let image_meta = SpadeMeta::new(arch.clone(), SpadeDiscriminatorConfig::new(k), classes.clone(), "random".into(), 0, Losses::default(), SpadeTrainSettings::default());
    let models = Models { ddpm: DdpmModel::new(meta.unet.init::<B>(&dev), meta.clone(), dev.clone()), spade: SpadeModel { generator: arch.init::<B>(&dev), meta: image_meta } };
    let sampler = match ddim_steps {
        Some(n) => format!("sampler = \"ddim\"\nsteps = {n}"),
        None => "sampler = \"ddpm\"".to_string(),
    };
    let spec = RunSpec::parse(
        &format!("[run]\ncount = 1\nshard_size = 1\n[output]\nurl = \"memory://\"\n[pipeline]\nkind = \"ddpm-spade\"\nimage_size = {size}\n[pipeline.labels]\nmodel = \"random\"\n{sampler}\n[pipeline.images]\nmodel = \"random\"\n"),
        "random full-size spec",
    )?;
    let ids = ModelIds { label_meta: meta, label_digest: "random".into(), image_digest: "random".into() };
    DdpmSpadePipeline::new(&spec, &ids, Arc::new(Mutex::new(models)), resolved)
}
