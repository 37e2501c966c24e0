//! `worker train ddpm`: trains the DDPM label-map generator on a dataset's labels.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::args::{DeviceArg, List};
use crate::ddpm::train::run::DatasetRun;
use crate::ddpm::train::{DdpmTrainConfig, TrainData};
use crate::ddpm::{Encoding, Objective, ScheduleKind, UNetConfig};

/// Train the DDPM label-map generator (Adam, EMA weights).
///
/// With the default one-hot encoding the network predicts the clean map x0 (cross-entropy
/// on its class logits); with --encoding gray it predicts the noise ε (MSE). --objective
/// picks either.
///
/// Reads DIR/labels/*.png (see --mask), resized to --size (by the mode of each block when
/// shrinking, nearest when growing); every label file is
/// checked before training starts. The train split is trained on; the test split's file
/// stems (see --test-fraction) are written to OUT/test_stems.txt and the split settings to
/// OUT/split.json (a --resume must split the same way). Every tile must be square. Writes checkpoints (raw
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
    /// Batch size (with --device cuda:all, the whole batch, split over the GPUs).
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
    /// Start from step 0 although OUT/checkpoint/ holds a checkpoint (replaced at the first
    /// save). Without it or --resume, such an OUT is refused.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Seed of the initial weights and of the batch, timestep and noise draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Samples in each preview grid (0: no previews).
    #[arg(long, default_value_t = 16)]
    pub preview_count: usize,
    /// Do not flip training maps at random.
    #[arg(long)]
    pub no_flip: bool,
    /// Compute precision of training: f32, or bf16 / f16 (mixed precision: forward and
    /// backward in half precision, f32 master weights, optimizer and EMA). For GPUs; on
    /// the CPU it is slower. f16 has no loss scaling: prefer bf16.
    #[arg(long, value_name = "P", default_value = "f32")]
    pub precision: shared::spec::Precision,
    #[command(flatten)]
    pub device: DeviceArg,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::args::at_least_one(&[("--steps", args.steps), ("--batch", args.batch as u64), ("--timesteps", args.timesteps as u64)])?;
    if !(args.clip >= 0.0 && args.clip.is_finite()) {
        anyhow::bail!("--clip {}: must be 0 (no clipping) or a positive gradient-norm limit", args.clip);
    }
    if args.lr.is_nan() || args.lr <= 0.0 {
        anyhow::bail!("--lr {}: must be positive", args.lr);
    }
    crate::sync_store::check_fresh_start(&args.out, crate::ddpm::train::checkpoint::DIR, args.resume, args.overwrite)?;
    let ds = args.dataset.open(&args.data, args.dataset.classes.table()?, true)?;
    let data = TrainData::from_dataset(&ds, args.size).with_context(|| format!("reading --data {}", args.data.display()))?;
    let cfg = args.config(data.classes.len())?;
    let out = &args.out;
    let done = crate::backend::dispatch_train(args.device.device, DatasetRun { cfg: &cfg, data: &data, dataset: &ds, out })?;
    println!("trained {} steps in {:.1} s ({:.2} steps/s); final loss {:.4}; model written to {out}", done.steps, done.seconds, done.steps_per_sec(), done.final_loss);
    Ok(ExitCode::SUCCESS)
}

impl Args {
    /// The training config of the flags, for `k` classes.
    fn config(&self, k: usize) -> anyhow::Result<DdpmTrainConfig> {
        let channels = self.encoding.channels(k);
        let unet = UNetConfig::new(channels, self.base_channels, self.channel_mult.0.clone(), self.res_blocks, self.attention.0.clone(), self.dropout, self.size as usize)
            .with_groups(self.groups);
        unet.validate().map_err(|e| anyhow::anyhow!("the UNet flags (--base-channels, --channel-mult, --res-blocks, --attention, --dropout, --groups, --size): {e}"))?;
        Ok(DdpmTrainConfig {
            unet,
            encoding: self.encoding,
            objective: self.objective(),
            schedule: self.schedule,
            timesteps: self.timesteps,
            steps: self.steps,
            batch: self.batch,
            lr: self.lr,
            ema_decay: self.ema,
            clip: (self.clip > 0.0).then_some(self.clip),
            checkpoint_every: self.checkpoint_every,
            resume: self.resume,
            seed: self.seed,
            preview_count: self.preview_count,
            flip: !self.no_flip,
            precision: self.precision,
        })
    }

    /// --objective, or the encoding's default: x0 for onehot, eps for gray.
    fn objective(&self) -> Objective {
        self.objective.unwrap_or(match self.encoding {
            Encoding::OneHot => Objective::X0,
            Encoding::Gray => Objective::Eps,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use shared::dataset::{MaskKind, UnknownCodes};

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
        assert_eq!(ddpm_args(&[]).unwrap().config(8).unwrap().precision, shared::spec::Precision::F32);
        assert_eq!(ddpm_args(&["--precision", "bf16"]).unwrap().config(8).unwrap().precision, shared::spec::Precision::Bf16);
        // Values that cannot train are refused naming the one flag, before the data is read.
        for (flags, want) in [
            (&["--batch", "0"][..], "--batch 0: must be at least 1"),
            (&["--timesteps", "0"][..], "--timesteps 0: must be at least 1"),
            (&["--clip=-1"][..], "--clip -1: must be 0 (no clipping) or a positive"),
        ] {
            let e = super::run(ddpm_args(flags).unwrap()).unwrap_err().to_string();
            assert!(e.starts_with(want), "{flags:?}: {e}");
        }
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
        assert!(o.labels_only && o.mask == MaskKind::Palette && o.unknown == UnknownCodes::Ignore && o.split_group.is_none());
        let o = ddpm_args(&["--split-group", r"^(.*)_\d+$"]).unwrap().dataset.options(true);
        assert_eq!(o.split_group.as_deref(), Some(r"^(.*)_\d+$"));
        let e = ddpm_args(&["--split-group", "(x"]).err().unwrap().to_string();
        assert!(e.contains("--split-group") && e.contains("is not a regular expression"), "{e}");
        for bad in [&["--test-fraction", "1"][..], &["--test-fraction=-0.1"], &["--test-fraction", "x"], &["--mask", "rgb"], &["--unknown-codes", "skip"]] {
            let e = ddpm_args(bad).err().unwrap_or_else(|| panic!("{bad:?} accepted")).to_string();
            assert!(e.contains(bad[0].split('=').next().unwrap()), "{bad:?}: {e}");
        }
        let e = ddpm_args(&["--mask", "rgb"]).err().unwrap().to_string();
        assert!(e.contains("codes") && e.contains("palette"), "the error lists the choices: {e}");
    }

    /// A dataset with its own class table (`--classes`): trained with it, and model.json
    /// records it (a run spec with the same `[classes]` can then use the model). Without
    /// it the codes are refused by name; ignored, a set without one class pixel is refused
    /// with the hint; a file without a `[classes]` table is named.
    #[test]
    fn ddpm_trains_on_a_dataset_with_its_own_class_table() {
        let dir = std::env::temp_dir().join(format!("labelgen-train-classes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data/labels")).unwrap();
        let table_text = "[run]\ncount = 1\n[classes]\nignore_code = 255\n\
            [[classes.classes]]\nname = \"water\"\ncode = 1\ncolor = [0, 0, 255]\n\
            [[classes.classes]]\nname = \"land\"\ncode = 2\ncolor = [0, 255, 0]\n\
            [[classes.classes]]\nname = \"urban\"\ncode = 7\ncolor = [255, 0, 0]\n";
        let table = shared::ClassTable::from_toml(table_text, "test").unwrap();
        assert_eq!(table.len(), 3);
        let classes_file = dir.join("classes.toml");
        std::fs::write(&classes_file, table_text).unwrap();
        for i in 0..4u8 {
            let mut map = shared::LabelMap::new(8, 8, i % 3);
            map.set(0, 0, shared::IGNORE_INDEX);
            std::fs::write(dir.join(format!("data/labels/t{i}.png")), map.to_png(&table)).unwrap();
        }
        let out = dir.join("model");
        let args = |extra: &[&str]| {
            let flags = ["--steps", "1", "--batch", "2", "--size", "8", "--base-channels", "8", "--channel-mult", "1,2", "--res-blocks", "1", "--attention", "none"];
            let more = ["--groups", "4", "--preview-count", "0", "--test-fraction", "0", "--device", "cpu", "--overwrite"];
            let mut a = ddpm_args(&flags.iter().chain(&more).chain(extra).copied().collect::<Vec<_>>()).unwrap();
            a.data = dir.join("data");
            a.out = out.display().to_string();
            a
        };
        super::run(args(&["--classes", classes_file.to_str().unwrap()])).unwrap();
        let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("model.json")).unwrap()).unwrap();
        assert_eq!(meta["classes"], serde_json::to_value(&table).unwrap());

        let e = format!("{:#}", super::run(args(&[])).unwrap_err());
        assert!(e.contains("t0.png") && e.contains("code 1: 63") && e.contains("valid codes: 10 building") && e.contains("--classes FILE"), "{e}");
        let e = format!("{:#}", super::run(args(&["--unknown-codes", "ignore"])).unwrap_err());
        assert!(e.contains("no label pixel of the training split holds a class") && e.contains("--classes FILE"), "{e}");
        std::fs::write(&classes_file, "[run]\ncount = 1\n").unwrap();
        let e = format!("{:#}", super::run(args(&["--classes", classes_file.to_str().unwrap()])).unwrap_err());
        assert!(e.contains("--classes") && e.contains("classes.toml") && e.contains("expected a [classes] table"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ddpm_train_objective_and_device_flags() {
        assert_eq!(ddpm_args(&[]).unwrap().objective(), crate::ddpm::Objective::X0, "onehot defaults to x0");
        assert_eq!(ddpm_args(&["--encoding", "gray"]).unwrap().objective(), crate::ddpm::Objective::Eps, "gray defaults to eps");
        assert_eq!(ddpm_args(&["--objective", "eps"]).unwrap().objective(), crate::ddpm::Objective::Eps);
        assert_eq!(ddpm_args(&["--device", "cpu"]).unwrap().device.device, shared::spec::DeviceChoice::Cpu);
        assert!(ddpm_args(&["--cpu"]).is_err(), "--cpu is gone: --device cpu");
        let e = ddpm_args(&["--channel-mult", "1,2,2,2,2,2", "--size", "8"]).unwrap().config(8).unwrap_err().to_string();
        assert!(e.contains("--channel-mult"), "{e}");
    }
}
