//! `worker train spade`: trains the SPADE image generator on a dataset directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shared::dataset::DatasetPairs;
use shared::ClassTable;

use crate::args::{write_test_stems, DataArgs};

use crate::spade::{default_n_up, fit, FitOptions, NormKind, SpadeDiscriminatorConfig, SpadeGeneratorConfig, TrainSettings};

/// Train the SPADE image generator (label map → RGB image) on DIR/images + DIR/labels.
///
/// DIR/images/NAME.png and DIR/labels/NAME.png pair up by file stem; every pair is checked
/// (both decode, same size, mask values in the class table: see --mask and
/// --unknown-codes) before training starts. The train split is trained on; the test
/// split's stems (see --test-fraction) go to --out/test_stems.txt.
///
/// Writes to --out: `model.json` and `generator.mpk` (the artifact `worker synthesize`
/// and the pipeline load), `checkpoint/` (both networks and both optimisers; `--resume`
/// continues from it), `previews/step-N.png` (rows of label | generated | real) and
/// `test_stems.txt`.
///
/// Example: worker train spade --data /tmp/spade-data --out /tmp/spade-model --size 64 --ngf 16 --steps 2000
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dataset directory (labels/ of class masks, see --mask; images/ of RGB PNGs).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,

    #[command(flatten)]
    pub dataset: DataArgs,

    /// Artifact location: a directory, file:///path or s3://bucket/prefix.
    #[arg(long, value_name = "URI")]
    pub out: String,

    /// Image side; pairs are resized to it (images by area, labels nearest).
    #[arg(long, value_name = "S", default_value_t = 64)]
    pub size: usize,

    /// Generator base channels (the paper: 64).
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub ngf: usize,

    /// Discriminator base channels (default: --ngf; the paper: 64).
    #[arg(long, value_name = "N")]
    pub ndf: Option<usize>,

    /// Upsamplings in the generator (default: up to 5, keeping the first map ≥ 4×4).
    #[arg(long, value_name = "N")]
    pub n_up: Option<usize>,

    /// Hidden channels of each SPADE layer (default: 2·ngf, at most 128; the paper: 128).
    #[arg(long, value_name = "N")]
    pub spade_hidden: Option<usize>,

    /// Parameter-free norm inside SPADE: instance or batch.
    #[arg(long, value_name = "KIND", default_value = "instance", value_parser = parse_norm)]
    pub norm: NormKind,

    #[arg(long, value_name = "B", default_value_t = 4)]
    pub batch: usize,

    /// Passes over the data (default when neither --epochs nor --steps: 10).
    #[arg(long, value_name = "N", conflicts_with = "steps")]
    pub epochs: Option<u64>,

    /// Total training steps (one batch each; includes a resumed checkpoint's).
    #[arg(long, value_name = "N")]
    pub steps: Option<u64>,

    #[arg(long, value_name = "LR", default_value_t = 1e-4)]
    pub lr_g: f64,

    #[arg(long, value_name = "LR", default_value_t = 4e-4)]
    pub lr_d: f64,

    /// Checkpoint and preview every N steps (0: only at the end).
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub checkpoint_every: u64,

    /// Continue from --out/checkpoint (same architecture needed).
    #[arg(long)]
    pub resume: bool,

    /// Seed of the data order and the noise.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,

    /// torchvision's ImageNet VGG19 weights, as a local file (vgg19-dcbb9e9d.pth, or a
    /// .safetensors with the same keys): turns on the VGG perceptual loss (L1 between
    /// VGG19 features of generated and real images at relu1_1 … relu5_1). Without it the
    /// loss is off; labelgen downloads nothing.
    #[arg(long, value_name = "PATH")]
    pub vgg: Option<PathBuf>,

    /// Weight of the VGG perceptual loss (with --vgg).
    #[arg(long, value_name = "W", default_value_t = 10.0, requires = "vgg")]
    pub vgg_weight: f64,

    /// Train on the CPU even in a CUDA build (a CUDA build uses the GPU when an NVIDIA
    /// driver is present, else the CPU with a warning).
    #[arg(long)]
    pub cpu: bool,
}

fn parse_norm(s: &str) -> Result<NormKind, String> {
    match s {
        "instance" => Ok(NormKind::Instance),
        "batch" => Ok(NormKind::Batch),
        _ => Err(format!("{s:?}: expected instance or batch")),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    #[cfg(feature = "cuda")]
    if crate::device::use_cuda(args.cpu) {
        return train::<crate::backend::GpuTrain>(args, &Default::default());
    }
    train::<crate::backend::CpuTrain>(args, &crate::backend::CpuDevice::default())
}

fn train<B: AutodiffBackend>(args: Args, device: &B::Device) -> anyhow::Result<ExitCode> {
    if args.batch == 0 {
        anyhow::bail!("--batch 0: must be at least 1");
    }
    let classes = ClassTable::ai_hub();
    let k = classes.len();
    let n_up = args.n_up.unwrap_or_else(|| default_n_up(args.size));
    let g_config =
        SpadeGeneratorConfig::new(k, args.size).with_ngf(args.ngf).with_n_up(n_up).with_spade_hidden(args.spade_hidden.unwrap_or((2 * args.ngf).min(128))).with_norm(args.norm);
    g_config.validate().map_err(|e| anyhow::anyhow!("--size {} --ngf {} --n-up {n_up}: {e}", args.size, args.ngf))?;
    let d_config = SpadeDiscriminatorConfig::new(k).with_ndf(args.ndf.unwrap_or(args.ngf));
    d_config.validate().map_err(|e| anyhow::anyhow!("--ndf: {e}"))?;

    let dataset = args.dataset.open(&args.data, classes.clone(), false)?;
    let digest = dataset.digest(false).context("hashing the training data")?;
    let n = dataset.train.len() as u64;
    let steps = match (args.steps, args.epochs) {
        (Some(s), _) => s,
        (None, e) => e.unwrap_or(10) * n.div_ceil(args.batch as u64),
    };
    anyhow::ensure!(args.vgg_weight > 0.0 && args.vgg_weight.is_finite(), "--vgg-weight {}: must be positive", args.vgg_weight);
    let vgg = match &args.vgg {
        Some(path) => {
            let vgg = crate::spade::vgg::Vgg19::<B>::load(path, device)?;
            tracing::info!(weight = args.vgg_weight, "VGG loss on (VGG19 from {})", path.display());
            Some(vgg)
        }
        None => {
            tracing::info!("VGG loss off (no --vgg weights)");
            None
        }
    };
    tracing::info!(train_pairs = n, steps, size = args.size, ngf = args.ngf, n_up, batch = args.batch, "training SPADE into {}", args.out);

    let settings = TrainSettings { lr_g: args.lr_g, lr_d: args.lr_d, batch: args.batch, seed: args.seed, vgg_weight: args.vgg_weight, ..TrainSettings::default() };
    let opts = FitOptions {
        out: args.out.clone(),
        steps,
        checkpoint_every: args.checkpoint_every,
        resume: args.resume,
        classes,
        data_digest: digest,
        test_fraction: Some(dataset.options.test_fraction),
    };
    write_test_stems(&args.out, &dataset)?;
    let pairs = DatasetPairs { dataset, size: args.size as u32 };

    let bar = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} steps  {msg}  ETA {eta}").expect("a valid template").progress_chars("=> "));
    // Without a terminal the bar is hidden: log a line every 30 s instead.
    let mut last_log = std::time::Instant::now();
    let trainer = fit::<B>(g_config, d_config, settings, vgg, &pairs, &opts, device, |p| {
        let vgg = if p.losses.g_vgg > 0.0 { format!(", vgg {:.3}", p.losses.g_vgg) } else { String::new() };
        let msg = format!("G {:.3} (feat {:.3}{vgg})  D {:.3}  {:.1} img/s", p.smoothed.g_gan, p.smoothed.g_feat, p.smoothed.d, p.images_per_sec);
        if bar.is_hidden() && (last_log.elapsed().as_secs() >= 30 || p.step == p.steps) {
            last_log = std::time::Instant::now();
            tracing::info!("step {}/{}: {msg}", p.step, p.steps);
        }
        bar.set_position(p.step);
        bar.set_message(msg);
    })?;
    bar.finish_and_clear();
    println!("trained SPADE for {} steps; model at {} (model.json, generator.mpk); previews under {}/previews", trainer.step, args.out, args.out);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use shared::dataset::{is_test_stem, MaskKind, UnknownCodes, TEST_STEMS_FILE};

    use crate::cli::{Cli, Command, TrainCommand};

    fn spade_args(args: &[&str]) -> super::Args {
        let cli = Cli::try_parse_from(["worker", "train", "spade"].iter().chain(args)).unwrap();
        let Some(Command::Train(TrainCommand::Spade(a))) = cli.command else { panic!("not train spade") };
        a
    }

    #[test]
    fn spade_train_dataset_flags_parse() {
        let a = spade_args(&["--data", "d", "--out", "o"]);
        assert_eq!((a.dataset.mask, a.dataset.unknown_codes, a.dataset.test_fraction), (MaskKind::Codes, UnknownCodes::Error, 0.1));
        let a = spade_args(&["--data", "d", "--out", "o", "--mask", "palette", "--unknown-codes", "ignore", "--test-fraction", "0.25"]);
        assert_eq!((a.dataset.mask, a.dataset.unknown_codes, a.dataset.test_fraction), (MaskKind::Palette, UnknownCodes::Ignore, 0.25));
        assert!(!a.dataset.options(false).labels_only);
        assert!(Cli::try_parse_from(["worker", "train", "spade", "--data", "d", "--out", "o", "--test-fraction", "1.5"]).is_err());
    }

    /// One step on a procedural dataset: the artifact records the split and lists the test
    /// stems; a missing image stops the run before training, naming the file.
    #[test]
    fn spade_train_command_holds_out_the_test_split() {
        let dir = std::env::temp_dir().join(format!("labelgen-train-spade-split-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (data, out) = (dir.join("data"), dir.join("model"));
        shared::procedural::write_dataset(&data, 16, 16, 7, &shared::procedural::ClassShares::default(), |_| {}).unwrap();
        let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
        let args = || spade_args(&["--data", d, "--out", o, "--size", "16", "--ngf", "4", "--steps", "1", "--batch", "2", "--cpu", "--test-fraction", "0.4"]);
        super::run(args()).unwrap();
        let stems: Vec<String> = (0..16).map(shared::procedural::tile_name).collect();
        let want: Vec<&str> = stems.iter().filter(|s| is_test_stem(s, 0.4)).map(String::as_str).collect();
        assert!(!want.is_empty() && want.len() < 16, "{} of 16 held out", want.len());
        assert_eq!(std::fs::read_to_string(out.join(TEST_STEMS_FILE)).unwrap().lines().collect::<Vec<_>>(), want);
        let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("model.json")).unwrap()).unwrap();
        assert_eq!((meta["test_fraction"].as_f64(), meta["train_count"].as_u64()), (Some(0.4), Some(16 - want.len() as u64)));

        std::fs::remove_file(data.join("images/000005.png")).unwrap();
        let _ = std::fs::remove_dir_all(&out);
        let e = format!("{:#}", super::run(args()).unwrap_err());
        assert!(e.contains("images/000005.png") && e.contains("missing"), "{e}");
        assert!(!out.exists(), "nothing written");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
