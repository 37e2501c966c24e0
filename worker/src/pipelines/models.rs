//! A `ddpm-spade` spec's two model artifacts: fetched, verified and checked against the
//! spec ([`fetch_models`] → [`CheckedModels`]), then loaded onto a device.

use std::path::Path;
use std::sync::Mutex;

use anyhow::{bail, Context};
use burn::tensor::backend::Backend;
use shared::artifact::{self, Artifact};
use shared::spec::{Precision, RunSpec};

use crate::ddpm::{DdpmMeta, DdpmModel};
use crate::spade::{SpadeMeta, SpadeModel};

/// Both artifacts of a `ddpm-spade` spec, fetched, verified and checked against it.
#[derive(Debug, Clone)]
pub struct CheckedModels {
    pub labels: Artifact,
    pub label_meta: DdpmMeta,
    pub images: Artifact,
    pub image_meta: SpadeMeta,
}

/// Fetches both models of a `ddpm-spade` spec into memory (through the local cache for
/// `s3://`), verifies their pinned digests, checks them against the spec
/// ([`shared::artifact::check_spec`]) and parses their full `model.json`.
pub async fn fetch_models(spec: &RunSpec, cache_dir: &Path) -> anyhow::Result<CheckedModels> {
    let (Some(ls), Some(is)) = (&spec.pipeline.labels, &spec.pipeline.images) else {
        bail!("pipeline.labels and pipeline.images are required for ddpm-spade");
    };
    let labels = artifact::fetch(&ls.model, ls.sha256.as_deref(), cache_dir).await.with_context(|| format!("pipeline.labels.model = {:?}", ls.model))?;
    let images = artifact::fetch(&is.model, is.sha256.as_deref(), cache_dir).await.with_context(|| format!("pipeline.images.model = {:?}", is.model))?;
    artifact::check_spec(spec, (&labels.uri, &labels.info), (&images.uri, &images.info))?;
    let label_meta = DdpmMeta::from_json(&labels.model_json, &format!("{}/model.json", labels.uri)).context("pipeline.labels.model")?;
    let image_meta = SpadeMeta::from_json(&images.model_json, &images.uri).context("pipeline.images.model")?;
    Ok(CheckedModels { labels, label_meta, images, image_meta })
}

/// Both networks on one device, each behind its own lock: no lock spans two models, so
/// while one job slot paints with SPADE another can sample with the DDPM.
pub(super) struct Models<B: Backend> {
    pub ddpm: Mutex<DdpmModel<B>>,
    pub spade: Mutex<SpadeModel<B>>,
}

impl<B: Backend> Models<B> {
    pub(super) fn new(ddpm: DdpmModel<B>, spade: SpadeModel<B>) -> Self {
        Models { ddpm: Mutex::new(ddpm), spade: Mutex::new(spade) }
    }
}

/// What a pipeline keeps of its models besides the networks: the label model's
/// `model.json` and both digests (recorded with every sample).
#[derive(Debug, Clone)]
pub(super) struct ModelIds {
    pub label_meta: DdpmMeta,
    pub label_digest: String,
    pub image_digest: String,
}

impl CheckedModels {
    pub(super) fn ids(&self) -> ModelIds {
        ModelIds { label_meta: self.label_meta.clone(), label_digest: self.labels.digest.clone(), image_digest: self.images.digest.clone() }
    }

    /// Loads both networks onto `dev`, in `precision`. Consumes the fetched weights rather
    /// than copying them: full-size weights are hundreds of MB.
    pub(super) fn load<B: Backend>(self, dev: &B::Device, precision: Precision) -> anyhow::Result<Models<B>> {
        let CheckedModels { labels, label_meta, images, image_meta } = self;
        Ok(Models::new(
            DdpmModel::from_parts(label_meta, labels.weights, &labels.uri, dev)?.with_precision(precision),
            SpadeModel::from_parts(image_meta, images.weights, &images.uri, dev)?.for_inference(precision),
        ))
    }
}
