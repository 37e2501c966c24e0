//! `worker train spade`: trains the SPADE image generator on a dataset directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use shared::dataset::DatasetPairs;

use crate::args::{DataArgs, DeviceArg};
use crate::spade::run::DatasetRun;
use crate::spade::{default_n_up, NormKind, SpadeDiscriminatorConfig, SpadeFitOptions, SpadeGeneratorConfig, SpadeInput, SpadeTrainSettings};

/// Train the SPADE image generator (label map → RGB image) on DIR/images + DIR/labels.
///
/// DIR/images/NAME.png and DIR/labels/NAME.png pair up by file stem; every pair is checked
/// (both decode, same size, mask values in the class table: see --mask and
/// --unknown-codes, square) before training starts. The train split is trained on; the
/// test split's stems (see --test-fraction) go to --out/test_stems.txt.
///
/// Writes to --out: `model.json` and `generator.mpk` (the artifact `worker synthesize`
/// and the pipeline load), `checkpoint/` (both networks and both optimisers; `--resume`
/// continues from it), `previews/step-N.png` (rows of label | generated | real),
/// `test_stems.txt` and `split.json` (the split's settings, which a `--resume` must
/// share).
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

    /// Image side; pairs are resized to it (images by area, or a triangle filter for a
    /// non-integer factor; labels by the mode of each block; nearest when growing).
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

    /// Where the generator's first feature map comes from.
    ///
    /// label: the label map downsampled to the first map's size → conv 3×3, with the
    /// noise broadcast over it as extra channels (NVlabs' default; at 512 about 2.4M
    /// parameters for this layer).
    ///
    /// noise: noise → a linear layer (at 512: 67M parameters; what older models have).
    #[arg(long, value_name = "KIND", default_value = "label", value_parser = PossibleValuesParser::new(SpadeInput::NAMES).map(|s| s.parse::<SpadeInput>().expect("a listed value")))]
    pub input: SpadeInput,

    /// Length of the noise vector (per-sample variety).
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub z_dim: usize,

    /// Parameter-free norm inside SPADE: instance or batch.
    #[arg(long, value_name = "KIND", default_value = "instance", value_parser = parse_norm)]
    pub norm: NormKind,

    /// Image–label pairs per training step (with --device cuda:all, the whole batch, split over the GPUs).
    #[arg(long, value_name = "B", default_value_t = 4)]
    pub batch: usize,

    /// Passes over the data (default when neither --epochs nor --steps: 10).
    #[arg(long, value_name = "N", conflicts_with = "steps")]
    pub epochs: Option<u64>,

    /// Total training steps (one batch each; includes a resumed checkpoint's).
    #[arg(long, value_name = "N")]
    pub steps: Option<u64>,

    /// Generator learning rate (Adam; TTUR, as in SPADE: the discriminator's is 4×).
    #[arg(long, value_name = "LR", default_value_t = 1e-4)]
    pub lr_g: f64,

    /// Discriminator learning rate (Adam).
    #[arg(long, value_name = "LR", default_value_t = 4e-4)]
    pub lr_d: f64,

    /// Checkpoint and preview every N steps (0: only at the end).
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub checkpoint_every: u64,

    /// Continue from --out/checkpoint (same architecture needed).
    #[arg(long)]
    pub resume: bool,

    /// Start from step 0 although --out/checkpoint holds a checkpoint (replaced at the
    /// first save). Without it or --resume, such an --out is refused.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,

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

    /// Compute precision of training: f32, or bf16 / f16 (mixed precision: forward and
    /// backward of both networks in half precision; f32 parameters, optimisers and
    /// running states). For GPUs; on the CPU it is slower. f16 has no loss scaling.
    #[arg(long, value_name = "P", default_value = "f32")]
    pub precision: shared::spec::Precision,

    #[command(flatten)]
    pub device: DeviceArg,
}

fn parse_norm(s: &str) -> Result<NormKind, String> {
    match s {
        "instance" => Ok(NormKind::Instance),
        "batch" => Ok(NormKind::Batch),
        _ => Err(format!("{s:?}: expected instance or batch")),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::args::at_least_one(&[("--batch", args.batch as u64)])?;
    for (flag, lr) in [("--lr-g", args.lr_g), ("--lr-d", args.lr_d)] {
        if !(lr > 0.0 && lr.is_finite()) {
            anyhow::bail!("{flag} {lr}: must be positive");
        }
    }
    let classes = args.dataset.classes.table()?;
    let k = classes.len();
    let n_up = args.n_up.unwrap_or_else(|| default_n_up(args.size));
    let g_config = SpadeGeneratorConfig::new(k, args.size)
        .with_ngf(args.ngf)
        .with_n_up(n_up)
        .with_spade_hidden(args.spade_hidden.unwrap_or((2 * args.ngf).min(128)))
        .with_norm(args.norm)
        .with_input(args.input)
        .with_z_dim(args.z_dim);
    g_config.validate().map_err(|e| anyhow::anyhow!("--size {} --ngf {} --n-up {n_up}: {e}", args.size, args.ngf))?;
    let d_config = SpadeDiscriminatorConfig::new(k).with_ndf(args.ndf.unwrap_or(args.ngf));
    d_config.validate().map_err(|e| anyhow::anyhow!("--ndf: {e}"))?;

    crate::sync_store::check_fresh_start(&args.out, crate::spade::CHECKPOINT_DIR, args.resume, args.overwrite)?;
    let dataset = args.dataset.open(&args.data, classes.clone(), false)?;
    let digest = dataset.digest(false).context("hashing the training data")?;
    let n = dataset.train.len() as u64;
    let steps = match (args.steps, args.epochs) {
        (Some(s), _) => s,
        (None, e) => e.unwrap_or(10) * n.div_ceil(args.batch as u64),
    };
    anyhow::ensure!(steps > 0, "--steps / --epochs give 0 training steps; expected at least 1");
    anyhow::ensure!(args.vgg_weight > 0.0 && args.vgg_weight.is_finite(), "--vgg-weight {}: must be positive", args.vgg_weight);
    tracing::info!(train_pairs = n, steps, size = args.size, ngf = args.ngf, n_up, batch = args.batch, "training SPADE into {}", args.out);

    let run = DatasetRun {
        g_config,
        d_config,
        settings: SpadeTrainSettings { lr_g: args.lr_g, lr_d: args.lr_d, batch: args.batch, seed: args.seed, vgg_weight: args.vgg_weight, ..SpadeTrainSettings::default() },
        vgg: args.vgg,
        opts: SpadeFitOptions {
            out: args.out.clone(),
            steps,
            checkpoint_every: args.checkpoint_every,
            resume: args.resume,
            classes,
            data_digest: digest,
            test_fraction: Some(dataset.options.test_fraction),
            precision: args.precision,
        },
        pairs: DatasetPairs { dataset, size: args.size as u32 },
    };
    let step = crate::backend::dispatch_train(args.device.device, run)?;
    println!("trained SPADE for {step} steps; model at {} (model.json, generator.mpk); previews under {}/previews", args.out, args.out);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use shared::dataset::{MaskKind, UnknownCodes};

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

    #[test]
    fn spade_train_device_and_norm_flags() {
        let a = spade_args(&["--data", "d", "--out", "o", "--device", "cpu", "--norm", "batch"]);
        assert_eq!((a.device.device, a.norm), (shared::spec::DeviceChoice::Cpu, crate::spade::NormKind::Batch));
        assert!(Cli::try_parse_from(["worker", "train", "spade", "--data", "d", "--out", "o", "--cpu"]).is_err(), "--cpu is gone: --device cpu");
        assert!(Cli::try_parse_from(["worker", "train", "spade", "--data", "d", "--out", "o", "--norm", "group"]).is_err());
        // The first map comes from the label map unless told otherwise.
        assert_eq!(
            (spade_args(&["--data", "d", "--out", "o"]).input, spade_args(&["--data", "d", "--out", "o", "--input", "noise"]).input),
            (crate::spade::SpadeInput::Label, crate::spade::SpadeInput::Noise)
        );
        assert!(Cli::try_parse_from(["worker", "train", "spade", "--data", "d", "--out", "o", "--input", "vae"]).is_err());
        assert!(Cli::try_parse_from(["worker", "train", "spade", "--data", "d", "--out", "o", "--vgg-weight", "5"]).is_err(), "--vgg-weight needs --vgg");
    }

    /// Settings that cannot train are refused before any step, naming the flag: a
    /// learning rate that is not positive (Adam would run and learn nothing, or diverge)
    /// and a step count of 0 (it used to "finish" with an untrained artifact).
    #[test]
    fn spade_train_refuses_settings_that_cannot_train() {
        let dir = std::env::temp_dir().join(format!("spade-flags-{}", rand::random::<u64>()));
        let data = dir.join("data");
        shared::procedural::write_dataset(&data, 4, 16, 1, &shared::procedural::ClassShares::default(), |_| {}).unwrap();
        let (data, out) = (data.display().to_string(), dir.join("out").display().to_string());
        let base = ["--data", data.as_str(), "--out", out.as_str(), "--size", "16", "--ngf", "4"];
        for (extra, expected) in [
            (&["--lr-g", "0"][..], "--lr-g 0: must be positive"),
            (&["--lr-d=-0.001"][..], "--lr-d -0.001: must be positive"),
            (&["--lr-g", "NaN"][..], "--lr-g NaN: must be positive"),
            (&["--steps", "0"][..], "give 0 training steps"),
            (&["--epochs", "0"][..], "give 0 training steps"),
        ] {
            let args: Vec<&str> = base.iter().chain(extra).copied().collect();
            let err = super::run(spade_args(&args)).unwrap_err().to_string();
            assert!(err.contains(expected), "{extra:?}: {err}");
        }
        assert!(!dir.join("out").join(crate::spade::CHECKPOINT_DIR).exists(), "nothing trained, nothing written");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
