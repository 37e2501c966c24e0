//! `worker train ddpm`: trains the DDPM label-map generator on a dataset's labels.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shared::ClassTable;

use crate::args::{write_test_stems, List};
use crate::ddpm::train::{recent_loss, train_split, TrainConfig, TrainData, TrainEvent};
use crate::ddpm::{Encoding, Objective, ScheduleKind, UNetConfig};

/// Train the DDPM label-map generator (ε-prediction, MSE, Adam, EMA weights).
///
/// Reads DIR/labels/*.png (see --mask), nearest-resized to --size; every label file is
/// checked before training starts. The train split is trained on; the test split's file
/// stems (see --test-fraction) are written to OUT/test_stems.txt. Writes checkpoints (raw
/// and EMA weights, optimizer state, step) to OUT/checkpoint/, a preview grid of samples
/// to OUT/previews/step-N.png at each checkpoint, and the final artifact (EMA weights,
/// model.json) to OUT. The defaults are a small model for a quick CPU run; Ho et al.'s
/// CIFAR model is --base-channels 128 --channel-mult 1,2,2,2 --res-blocks 2 --attention 16
/// --groups 32 --batch 128 --steps 800000.
///
/// Example: worker train ddpm --data /tmp/proc --out /tmp/ddpm-model --size 32 --steps 2000
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dataset directory (labels/ is read; images/ is not needed).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,

    #[command(flatten)]
    pub dataset: crate::args::DataArgs,
    /// Artifact location: a path, file:// or s3:// URI.
    #[arg(long, value_name = "URI")]
    pub out: String,
    /// Side of the generated label maps (must be divisible by 2^(levels-1)).
    #[arg(long, default_value_t = 32)]
    pub size: u32,
    /// Total optimizer steps.
    #[arg(long, default_value_t = 2000)]
    pub steps: u64,
    /// Batch size.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    /// UNet channels at the top level.
    #[arg(long, default_value_t = 32)]
    pub base_channels: usize,
    /// Channel multiplier per level, comma-separated (one level per entry).
    #[arg(long, default_value = "1,2,2")]
    pub channel_mult: List,
    /// Res blocks per level.
    #[arg(long, default_value_t = 1)]
    pub res_blocks: usize,
    /// Resolutions with self-attention, comma-separated ("none" for none).
    #[arg(long, default_value = "8")]
    pub attention: List,
    /// Dropout in the res blocks.
    #[arg(long, default_value_t = 0.1)]
    pub dropout: f64,
    /// GroupNorm groups.
    #[arg(long, default_value_t = 8)]
    pub groups: usize,
    /// Label encoding: onehot (K channels, argmax) or gray (one channel, rounding).
    #[arg(long, default_value = "onehot")]
    pub encoding: Encoding,
    /// What the network predicts: x0 (class logits of the clean map, cross-entropy;
    /// onehot only) or eps (the noise, MSE loss; the DDPM paper's choice). Default: x0
    /// for onehot — it learns layouts in a few hundred steps where eps still makes
    /// speckle after thousands — and eps for gray.
    #[arg(long)]
    pub objective: Option<Objective>,
    /// β schedule: linear or cosine.
    #[arg(long, default_value = "linear")]
    pub schedule: ScheduleKind,
    /// Diffusion timesteps T.
    #[arg(long, default_value_t = 1000)]
    pub timesteps: usize,
    /// EMA decay of the weights (warmed up as min(decay, (1+step)/(10+step))).
    #[arg(long, default_value_t = 0.9999)]
    pub ema: f64,
    /// Global gradient-norm limit (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    /// Checkpoint and preview every N steps (0: only at the end).
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub checkpoint_every: u64,
    /// Continue from OUT/checkpoint/ if it exists.
    #[arg(long)]
    pub resume: bool,
    /// Seed of the batch, timestep and noise draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Samples in each preview grid (0: no previews).
    #[arg(long, default_value_t = 16)]
    pub preview_count: usize,
    /// Do not flip training maps at random.
    #[arg(long)]
    pub no_flip: bool,
    /// Train on the CPU even when built with CUDA (a CUDA build uses the GPU when an
    /// NVIDIA driver is present, else the CPU with a warning).
    #[arg(long)]
    pub cpu: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.steps == 0 || args.batch == 0 {
        anyhow::bail!("--steps and --batch must be at least 1");
    }
    if !(args.lr > 0.0) {
        anyhow::bail!("--lr {}: must be positive", args.lr);
    }
    let ds = args.dataset.open(&args.data, ClassTable::ai_hub(), true)?;
    let data = TrainData::from_dataset(&ds, args.size).with_context(|| format!("reading --data {}", args.data.display()))?;
    let test_fraction = Some(ds.options.test_fraction);
    let channels = args.encoding.channels(data.classes.len());
    let unet = UNetConfig::new(channels, args.base_channels, args.channel_mult.0.clone(), args.res_blocks, args.attention.0.clone(), args.dropout, args.size as usize)
        .with_groups(args.groups);
    unet.validate().map_err(|e| anyhow::anyhow!("the UNet flags (--base-channels, --channel-mult, --res-blocks, --attention, --dropout, --groups, --size): {e}"))?;
    let cfg = TrainConfig {
        unet,
        encoding: args.encoding,
        objective: args.objective.unwrap_or(match args.encoding {
            Encoding::OneHot => Objective::X0,
            Encoding::Gray => Objective::Eps,
        }),
        schedule: args.schedule,
        timesteps: args.timesteps,
        steps: args.steps,
        batch: args.batch,
        lr: args.lr,
        ema_decay: args.ema,
        clip: (args.clip > 0.0).then_some(args.clip),
        checkpoint_every: args.checkpoint_every,
        resume: args.resume,
        seed: args.seed,
        preview_count: args.preview_count,
        flip: !args.no_flip,
    };
    // Refuse a bad combination (e.g. --objective x0 with --encoding gray) before writing
    // anything under --out.
    cfg.validate(&data)?;
    write_test_stems(&args.out, &ds)?;
    #[cfg(feature = "cuda")]
    if crate::device::use_cuda(args.cpu) {
        return run_on::<crate::backend::GpuTrain>(&cfg, &data, test_fraction, &args.out, &Default::default());
    }
    run_on::<crate::backend::CpuTrain>(&cfg, &data, test_fraction, &args.out, &Default::default())
}

fn run_on<B: burn::tensor::backend::AutodiffBackend>(cfg: &TrainConfig, data: &TrainData, test_fraction: Option<f64>, out: &str, device: &B::Device) -> anyhow::Result<ExitCode> {
    let bar = ProgressBar::with_draw_target(Some(cfg.steps), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} steps  loss {msg}  {per_sec}  ETA {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    tracing::info!(
        "training on {} maps of {}×{}: {} parameters, encoding {}, objective {}, {} schedule, T = {}",
        data.maps.len(),
        cfg.unet.image_size,
        cfg.unet.image_size,
        {
            use burn::module::Module;
            cfg.unet.init::<B>(device).num_params()
        },
        cfg.encoding,
        cfg.objective,
        cfg.schedule,
        cfg.timesteps
    );
    let start = Instant::now();
    let mut recent: Vec<f32> = Vec::new();
    let mut first_step = 0;
    let mut last_log = Instant::now();
    let outcome = train_split::<B>(cfg, data, test_fraction, Some(out), device, &mut |e| match e {
        TrainEvent::Started { step, .. } => {
            first_step = step;
            bar.set_position(step);
            bar.reset_eta();
        }
        TrainEvent::Step { step, loss } => {
            recent.push(loss);
            if recent.len() > 50 {
                recent.remove(0);
            }
            let mean = recent.iter().sum::<f32>() / recent.len() as f32;
            bar.set_message(format!("{mean:.4}"));
            bar.set_position(step);
            // Without a terminal the bar is hidden: log a line every 30 s instead.
            if bar.is_hidden() && last_log.elapsed().as_secs() >= 30 {
                last_log = Instant::now();
                let rate = (step - first_step) as f64 / start.elapsed().as_secs_f64().max(1e-9);
                tracing::info!("step {step}/{}: loss {mean:.4} (mean of the last {}), {rate:.2} steps/s", cfg.steps, recent.len());
            }
        }
        TrainEvent::Checkpoint { step } => bar.println(format!("step {step}: checkpoint and preview written to {out}")),
    })?;
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let done = cfg.steps.saturating_sub(first_step);
    println!("trained {done} steps in {secs:.1} s ({:.2} steps/s); final loss {:.4}; model written to {out}", done as f64 / secs.max(1e-9), recent_loss(&outcome.losses));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use shared::dataset::{MaskKind, UnknownCodes, TEST_STEMS_FILE};
    use shared::ClassTable;

    use crate::cli::{Cli, Command, TrainCommand};

    #[test]
    fn ddpm_train_cli_parses() {
        let cli = Cli::try_parse_from(["worker", "train", "ddpm", "--data", "d", "--out", "o", "--channel-mult", "1,2,2,2", "--attention", "none", "--encoding", "gray"]).unwrap();
        let Some(Command::Train(TrainCommand::Ddpm(a))) = cli.command else { panic!("not train ddpm") };
        assert_eq!(a.channel_mult.0, vec![1, 2, 2, 2]);
        assert!(a.attention.0.is_empty());
        assert_eq!(a.encoding, crate::ddpm::Encoding::Gray);
        let cli = Cli::try_parse_from(["worker", "train", "ddpm", "--data", "d", "--out", "o"]).unwrap();
        let Some(Command::Train(TrainCommand::Ddpm(a))) = cli.command else { panic!("not train ddpm") };
        assert_eq!((a.channel_mult.0, a.attention.0, a.size), (vec![1, 2, 2], vec![8], 32));
        assert!(Cli::try_parse_from(["worker", "train", "ddpm", "--data", "d", "--out", "o", "--schedule", "quadratic"]).is_err());
    }

    fn ddpm_args(extra: &[&str]) -> Result<super::Args, clap::Error> {
        let cli = Cli::try_parse_from(["worker", "train", "ddpm", "--data", "d", "--out", "o"].iter().chain(extra))?;
        let Some(Command::Train(TrainCommand::Ddpm(a))) = cli.command else { panic!("not train ddpm") };
        Ok(a)
    }

    #[test]
    fn ddpm_train_dataset_flags_parse_and_check() {
        let a = ddpm_args(&[]).unwrap();
        assert_eq!((a.dataset.mask, a.dataset.unknown_codes, a.dataset.test_fraction), (MaskKind::Codes, UnknownCodes::Error, 0.1));
        let a = ddpm_args(&["--mask", "palette", "--unknown-codes", "ignore", "--test-fraction", "0"]).unwrap();
        assert_eq!((a.dataset.mask, a.dataset.unknown_codes, a.dataset.test_fraction), (MaskKind::Palette, UnknownCodes::Ignore, 0.0));
        let o = a.dataset.options(true);
        assert!(o.labels_only && o.mask == MaskKind::Palette && o.unknown == UnknownCodes::Ignore);
        for bad in [&["--test-fraction", "1"][..], &["--test-fraction=-0.1"], &["--test-fraction", "x"], &["--mask", "rgb"], &["--unknown-codes", "skip"]] {
            let e = ddpm_args(bad).err().unwrap_or_else(|| panic!("{bad:?} accepted")).to_string();
            assert!(e.contains(bad[0].split('=').next().unwrap()), "{bad:?}: {e}");
        }
        let e = ddpm_args(&["--mask", "rgb"]).err().unwrap().to_string();
        assert!(e.contains("codes") && e.contains("palette"), "the error lists the choices: {e}");
    }

    /// A tiny run on a procedural dataset: trains on the train split only and writes the
    /// test stems and the split into the artifact; bad data stops it before training.
    #[test]
    fn ddpm_train_command_holds_out_the_test_split() {
        let dir = std::env::temp_dir().join(format!("labelgen-train-ddpm-split-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (data, out) = (dir.join("data"), dir.join("model"));
        shared::procedural::write_dataset(&data, 24, 8, 5, &shared::procedural::ClassShares::default(), |_| {}).unwrap();
        let tiny = ["--size", "8", "--steps", "1", "--batch", "2", "--base-channels", "8", "--channel-mult", "1,2", "--attention", "none", "--groups", "4"];
        let args = |extra: &[&str]| {
            let mut v = vec!["--data", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--preview-count", "0", "--cpu", "--test-fraction", "0.3"];
            v.extend(tiny);
            v.extend(extra);
            let cli = Cli::try_parse_from(["worker", "train", "ddpm"].into_iter().chain(v)).unwrap();
            let Some(Command::Train(TrainCommand::Ddpm(a))) = cli.command else { panic!("not train ddpm") };
            a
        };
        super::run(args(&[])).unwrap();
        let stems: Vec<String> = (0..24).map(shared::procedural::tile_name).collect();
        let want: Vec<&String> = stems.iter().filter(|s| shared::dataset::is_test_stem(s, 0.3)).collect();
        assert!(!want.is_empty() && want.len() < 24, "{} of 24 held out", want.len());
        let text = std::fs::read_to_string(out.join(TEST_STEMS_FILE)).unwrap();
        assert_eq!(text.lines().collect::<Vec<_>>(), want.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("model.json")).unwrap()).unwrap();
        assert_eq!((meta["test_fraction"].as_f64(), meta["train_count"].as_u64()), (Some(0.3), Some(24 - want.len() as u64)));

        // An unknown code stops the run before training, naming the file and the code …
        // (`to_png` writes an index outside the table as code 0, which no class has.)
        let bad = data.join("labels/000003.png");
        let classes = ClassTable::ai_hub();
        let mut map = shared::LabelMap::from_png(&std::fs::read(&bad).unwrap(), &classes, "t").unwrap();
        map.set(1, 1, 200);
        std::fs::write(&bad, map.to_png(&classes)).unwrap();
        let _ = std::fs::remove_dir_all(&out);
        let e = format!("{:#}", super::run(args(&[])).unwrap_err());
        assert!(e.contains("labels/000003.png") && e.contains("pixel (1, 1)") && e.contains("code 0,"), "{e}");
        assert!(!out.join("model.json").exists(), "nothing trained");
        // … unless unknown codes are ignored.
        super::run(args(&["--unknown-codes", "ignore"])).unwrap();
        assert!(out.join("model.json").exists());
        let written: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("model.json")).unwrap()).unwrap();
        assert_eq!(written["objective"], "x0", "onehot defaults to the x0 objective");

        // x0 with gray is refused before anything is written under --out.
        let _ = std::fs::remove_dir_all(&out);
        let e = format!("{:#}", super::run(args(&["--unknown-codes", "ignore", "--encoding", "gray", "--objective", "x0"])).unwrap_err());
        assert!(e.contains("needs the onehot encoding"), "{e}");
        assert!(!out.exists(), "--out was created for a refused run");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
