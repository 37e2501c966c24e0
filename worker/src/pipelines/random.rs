//! A `ddpm-spade` pipeline over randomly initialised full-size models, for benchmarks.

use std::sync::Arc;

use burn::tensor::backend::Backend;
use shared::spec::{Precision, RunSpec};

use super::ddpm_spade::DdpmSpadePipeline;
use super::models::{ModelIds, Models};
use crate::ddpm::{DdpmMeta, DdpmModel, Encoding, UNetConfig};
use crate::device::Resolved;
use crate::spade::{Losses, SpadeDiscriminatorConfig, SpadeGeneratorConfig, SpadeMeta, SpadeModel, SpadeTrainSettings};

/// What [`random_ddpm_spade`] builds.
#[derive(Debug, Clone, Copy)]
pub struct RandomSettings {
    /// Image side.
    pub size: u32,
    /// DDIM with that many steps; `None`: DDPM over all 1000 timesteps.
    pub ddim_steps: Option<usize>,
    pub precision: Precision,
    /// `pipeline.labels.batch_size` and `pipeline.images.batch_size` (default:
    /// `pipeline.batch_size`, 8; `bench pipeline` sets them per row).
    pub label_batch: Option<usize>,
    pub image_batch: Option<usize>,
}

/// A `ddpm-spade` pipeline over randomly initialised full-size models: Ho et al.'s CIFAR
/// UNet (≈35.7M parameters) on 64×64 one-hot label maps (or `size`, if smaller) and the
/// full SPADE generator (ngf 64, label input) at `size`. For timing only: the samples are
/// noise. The weights come from a fixed seed, so every precision casts the same models.
pub fn random_ddpm_spade<B: Backend>(settings: RandomSettings, dev: B::Device, resolved: Resolved) -> anyhow::Result<DdpmSpadePipeline<B>> {
    let RandomSettings { size, ddim_steps, precision, label_batch, image_batch } = settings;
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
    B::seed(&dev, 0x5EED);
    let models = Models::new(
        DdpmModel::new(meta.unet.init::<B>(&dev), meta.clone(), dev.clone()).with_precision(precision),
        SpadeModel { generator: arch.init::<B>(&dev), meta: image_meta }.for_inference(precision),
    );
    let mut sampler = match ddim_steps {
        Some(n) => format!("sampler = \"ddim\"\nsteps = {n}"),
        None => "sampler = \"ddpm\"".to_string(),
    };
    if let Some(b) = label_batch {
        sampler += &format!("\nbatch_size = {b}");
    }
    let images = image_batch.map_or(String::new(), |b| format!("batch_size = {b}\n"));
    let spec = RunSpec::parse(
        &format!("[run]\ncount = 1\nshard_size = 1\n[output]\nurl = \"memory://\"\n[pipeline]\nkind = \"ddpm-spade\"\nimage_size = {size}\nprecision = \"{precision}\"\n[pipeline.labels]\nmodel = \"random\"\n{sampler}\n[pipeline.images]\nmodel = \"random\"\n{images}"),
        "random full-size spec",
    )?;
    let ids = ModelIds { label_meta: meta, label_digest: "random".into(), image_digest: "random".into() };
    DdpmSpadePipeline::new(&spec, &ids, Arc::new(models), resolved)
}
