//! `worker synthesize`: paints an image for every label map in a directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use burn::tensor::backend::Backend;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shared::{sample_seed, LabelMap};

use crate::spade::SpadeModel;

/// Paint one image per label map with a trained SPADE generator.
///
/// Reads LABELS/*.png (or LABELS/labels/*.png): 8-bit grayscale raw class codes, resized
/// nearest to the model's size; writes OUT/NAME.png. Image i (in file-name order) uses the
/// noise seed sample_seed(--seed, i), so the same inputs give the same images.
///
/// Example: worker synthesize --model /tmp/spade-model --labels /tmp/labels --out /tmp/images
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model location (directory, file:// or s3:// URI holding model.json).
    #[arg(long, value_name = "URI")]
    pub model: String,

    /// Directory of label PNGs.
    #[arg(long, value_name = "DIR")]
    pub labels: PathBuf,

    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,

    /// Label maps per forward pass.
    #[arg(long, value_name = "B", default_value_t = 8)]
    pub batch: usize,

    /// Run on the CPU even in a CUDA build (a CUDA build uses the GPU when an NVIDIA driver
    /// is present, else the CPU with a warning).
    #[arg(long)]
    pub cpu: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    #[cfg(feature = "cuda")]
    if crate::device::use_cuda(args.cpu) {
        return synthesize::<crate::backend::Gpu>(args, &Default::default());
    }
    synthesize::<crate::backend::Cpu>(args, &crate::backend::CpuDevice::default())
}

fn synthesize<B: Backend>(args: Args, device: &B::Device) -> anyhow::Result<ExitCode> {
    if args.batch == 0 {
        anyhow::bail!("--batch 0: must be at least 1");
    }
    let model = SpadeModel::<B>::load(&args.model, device).with_context(|| format!("--model {}", args.model))?;
    let dir = if args.labels.join("labels").is_dir() { args.labels.join("labels") } else { args.labels.clone() };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("--labels {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    files.sort();
    if files.is_empty() {
        anyhow::bail!("--labels {}: no .png label maps found", dir.display());
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating --out {}", args.out.display()))?;
    let size = model.size();

    let bar = ProgressBar::with_draw_target(Some(files.len() as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} images  {per_sec}  ETA {eta}").expect("a valid template").progress_chars("=> "),
    );
    let start = std::time::Instant::now();
    for (c, chunk) in files.chunks(args.batch).enumerate() {
        let mut labels = Vec::with_capacity(chunk.len());
        for p in chunk {
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            let map = LabelMap::from_png(&bytes, model.classes(), &p.display().to_string())?;
            labels.push(if map.width == size && map.height == size { map } else { map.resize_nearest(size, size) });
        }
        let seeds: Vec<u64> = (0..chunk.len()).map(|i| sample_seed(args.seed, (c * args.batch + i) as u64)).collect();
        for (img, p) in model.synthesize(&labels, &seeds).into_iter().zip(chunk) {
            let out = args.out.join(p.file_name().expect("a file name"));
            std::fs::write(&out, img.to_png()).with_context(|| format!("writing {}", out.display()))?;
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    println!("painted {} images of {size}x{size} into {} in {secs:.1} s ({:.2} images/s)", files.len(), args.out.display(), files.len() as f64 / secs.max(1e-9));
    Ok(ExitCode::SUCCESS)
}
