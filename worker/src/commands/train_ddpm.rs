//! `worker train ddpm`: trains the DDPM label-map generator on a dataset's labels.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::ddpm::train::{recent_loss, train, TrainConfig, TrainData, TrainEvent};
use crate::ddpm::{Encoding, ScheduleKind, UNetConfig};

/// Train the DDPM label-map generator (ε-prediction, MSE, Adam, EMA weights).
///
/// Reads DIR/labels/*.png (8-bit AI Hub codes), nearest-resized to --size. Writes
/// checkpoints (raw and EMA weights, optimizer state, step) to OUT/checkpoint/, a preview
/// grid of samples to OUT/previews/step-N.png at each checkpoint, and the final artifact
/// (EMA weights, model.json) to OUT. The defaults are a small model for a quick CPU run; Ho
/// et al.'s CIFAR model is --base-channels 128 --channel-mult 1,2,2,2 --res-blocks 2
/// --attention 16 --groups 32 --batch 128 --steps 800000.
///
/// Example: worker train ddpm --data /tmp/proc --out /tmp/ddpm-model --size 32 --steps 2000
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dataset directory (labels/ is read; images/ is not needed).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
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
    /// Train on the CPU even when built with CUDA.
    #[arg(long)]
    pub cpu: bool,
}

/// A comma-separated list of numbers, e.g. `1,2,2`; `none` or an empty string is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List(pub Vec<usize>);

impl std::str::FromStr for List {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() || s == "none" {
            return Ok(List(Vec::new()));
        }
        s.split(',').map(|p| p.trim().parse::<usize>().map_err(|e| format!("{p:?} in {s:?}: {e}"))).collect::<Result<_, _>>().map(List)
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.steps == 0 || args.batch == 0 {
        anyhow::bail!("--steps and --batch must be at least 1");
    }
    if !(args.lr > 0.0) {
        anyhow::bail!("--lr {}: must be positive", args.lr);
    }
    let data = TrainData::from_dir(&args.data, args.size).with_context(|| format!("reading --data {}", args.data.display()))?;
    let channels = args.encoding.channels(data.classes.len());
    let unet = UNetConfig::new(channels, args.base_channels, args.channel_mult.0.clone(), args.res_blocks, args.attention.0.clone(), args.dropout, args.size as usize)
        .with_groups(args.groups);
    unet.validate().map_err(|e| anyhow::anyhow!("the UNet flags (--base-channels, --channel-mult, --res-blocks, --attention, --dropout, --groups, --size): {e}"))?;
    let cfg = TrainConfig {
        unet,
        encoding: args.encoding,
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
    #[cfg(feature = "cuda")]
    if !args.cpu {
        return run_on::<crate::backend::GpuTrain>(&cfg, &data, &args.out, &Default::default());
    }
    run_on::<crate::backend::CpuTrain>(&cfg, &data, &args.out, &Default::default())
}

fn run_on<B: burn::tensor::backend::AutodiffBackend>(cfg: &TrainConfig, data: &TrainData, out: &str, device: &B::Device) -> anyhow::Result<ExitCode> {
    let bar = ProgressBar::with_draw_target(Some(cfg.steps), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} steps  loss {msg}  {per_sec}  ETA {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    tracing::info!(
        "training on {} maps of {}×{}: {} parameters, encoding {}, {} schedule, T = {}",
        data.maps.len(),
        cfg.unet.image_size,
        cfg.unet.image_size,
        {
            use burn::module::Module;
            cfg.unet.init::<B>(device).num_params()
        },
        cfg.encoding,
        cfg.schedule,
        cfg.timesteps
    );
    let start = Instant::now();
    let mut recent: Vec<f32> = Vec::new();
    let mut first_step = 0;
    let mut last_log = Instant::now();
    let outcome = train::<B>(cfg, data, Some(out), device, &mut |e| match e {
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
    println!(
        "trained {done} steps in {secs:.1} s ({:.2} steps/s); final loss {:.4}; model written to {out}",
        done as f64 / secs.max(1e-9),
        recent_loss(&outcome.losses)
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

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
}
