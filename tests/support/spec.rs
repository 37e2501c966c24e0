//! Run specs for tests, written to temporary files.

use std::path::{Path, PathBuf};

/// A `procedural` run spec.
pub struct SpecBuilder {
    pub count: u64,
    pub shard_size: u64,
    pub seed: u64,
    pub url: String,
    pub format: &'static str,
    pub size: u32,
    pub batch: usize,
    pub max_attempts: u32,
    pub lease_seconds: u64,
    /// `pipeline.kind`.
    pub kind: &'static str,
    /// TOML appended after the `[pipeline]` table (model tables of `ddpm-spade`).
    pub pipeline_extra: String,
}

/// Location of a committed demo model (`ddpm` or `spade`) under `models/demo/`.
pub fn demo_model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("models/demo").join(name).canonicalize().expect("the demo models are committed under models/demo/")
}

/// `[pipeline.labels]` and `[pipeline.images]` tables naming two model locations.
pub fn model_tables(labels: &str, images: &str) -> String {
    format!("\n[pipeline.labels]\nmodel = \"{labels}\"\nsampler = \"ddim\"\nsteps = 20\n\n[pipeline.images]\nmodel = \"{images}\"\n")
}

impl SpecBuilder {
    pub fn new(url: &str) -> Self {
        SpecBuilder {
            count: 20,
            shard_size: 6,
            seed: 11,
            url: url.to_string(),
            format: "png",
            size: 32,
            batch: 2,
            max_attempts: 3,
            lease_seconds: 2,
            kind: "procedural",
            pipeline_extra: String::new(),
        }
    }

    /// A `ddpm-spade` spec using the committed demo models (64×64 images from 32×32 label
    /// maps, DDIM with 20 steps to keep CPU tests short).
    pub fn ddpm_spade(url: &str) -> Self {
        let mut s = SpecBuilder::new(url);
        s.kind = "ddpm-spade";
        s.size = 64;
        s.batch = 4;
        s.pipeline_extra = model_tables(demo_model("ddpm").to_str().unwrap(), demo_model("spade").to_str().unwrap());
        s
    }

    pub fn text(&self) -> String {
        format!(
            "[run]\ncount = {}\nshard_size = {}\nseed = {}\nmax_attempts = {}\nlease_seconds = {}\nretry_backoff_seconds = 0.2\n\n[output]\nurl = \"{}\"\nformat = \"{}\"\n\n[pipeline]\nkind = \"{}\"\nimage_size = {}\nbatch_size = {}\n{}",
            self.count, self.shard_size, self.seed, self.max_attempts, self.lease_seconds, self.url, self.format, self.kind, self.size, self.batch, self.pipeline_extra
        )
    }

    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, self.text()).unwrap();
        p
    }
}

/// A fresh temporary directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("labelgen-it-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
