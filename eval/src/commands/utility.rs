//! `labelgen-eval utility`: does generated data help a segmentation model? Trains the same
//! network on real data with and without a share of a run's samples and compares IoU on
//! the real test split (see [`crate::utility`]).

use std::path::PathBuf;
use std::process::ExitCode;

use worker::args::{DataArgs, DeviceArg};

use crate::utility::{Budget, Mix, UtilityOptions};

/// Train a segmentation network on real data with and without a run's samples and compare
/// IoU on the real test split (the "utility" of generated data).
///
/// For each seed, trains the same BiSeNet V2-style network (a) on the real training split
/// and (b) on the training split with --replace F of it replaced by (or --add F of its size
/// added from) samples of the run's manifest.jsonl, then evaluates both on the real test
/// split, which is never trained on. Reports per-class IoU and mIoU as mean ± standard
/// deviation over the seeds, whether the difference of the mIoU means exceeds the
/// seed-to-seed spread (|Δ| > sd_a + sd_b), and the paired estimate: both arms of a seed
/// start from the same initialisation, and the mean of the per-seed differences comes with
/// a 95% Student-t interval.
///
/// No leaks: the run's run.json names its models (and pins their digests: a model
/// retrained in place since is refused); every test stem must be among the held-out stems
/// in each model's test_stems.txt, or the command stops and names them. A run directory
/// without run.json (samples assembled by hand) is evaluated unchecked, with a warning,
/// and report.md says so.
///
/// The real split: the stems listed in --test-stems FILE (e.g. the test_stems.txt a
/// `worker train` wrote next to its model, so that the test images were seen by none of
/// the generators) when given, else the hash split of --test-fraction.
///
/// The run's samples used are the same for every seed (a seeded pick from the manifest);
/// with --replace, which real samples give way differs per seed. They are fetched once,
/// resized to --size and kept under OUT/synthetic/ (images/, labels/), with the further
/// picks --consistency-samples asks for (scored, never trained on).
///
/// Writes OUT/report.json (settings, every run's confusion matrix and IoUs, the summary),
/// OUT/report.md (a table: rows baseline and with synthetic, columns the classes and
/// mIoU, cells "mean ± sd" in %), OUT/iou.png (per class and mIoU: baseline solid,
/// synthetic light, whiskers ± sd; 0-100 %) and prints the table. An earlier run's report
/// files in OUT are removed once the options pass their check, so a run that fails after
/// that leaves none.
///
/// Example: labelgen-eval utility --real data/aihub --test-stems models/spade/test_stems.txt --synthetic s3://bucket/runs/ddpm-7 --replace 0.1 --seeds 3 --epochs 30 --size 512 --out out/eval/utility-ddpm-7
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The real dataset directory (images/ + labels/, see --mask).
    #[arg(long, value_name = "DIR")]
    pub real: PathBuf,

    #[command(flatten)]
    pub dataset: DataArgs,

    /// The run whose samples are mixed in: its directory holding manifest.jsonl, as a
    /// local path, file:///absolute/path or s3://bucket/prefix/RUN.
    #[arg(long, value_name = "RUN_URI")]
    pub synthetic: String,

    /// Replace this share of the real training split by run samples (the default, 0.1,
    /// when neither --replace nor --add is given).
    #[arg(long, value_name = "F", conflicts_with = "add")]
    pub replace: Option<f64>,

    /// Add this many run samples per real training sample (1.0 doubles the training set).
    #[arg(long, value_name = "F")]
    pub add: Option<f64>,

    /// How many run samples the image–label consistency and KID score: the ones mixed in
    /// plus further seeded picks up to N (at most the run's size; 0: only the ones mixed
    /// in). Only the mixed-in ones are ever trained on.
    #[arg(long, value_name = "N", default_value_t = crate::utility::DEFAULT_CONSISTENCY_SAMPLES)]
    pub consistency_samples: usize,

    /// The held-out test stems, one a line (a test_stems.txt): overrides --test-fraction.
    #[arg(long, value_name = "FILE")]
    pub test_stems: Option<PathBuf>,

    /// Training runs per arm (seeds --seed, --seed + 1, …). Each seed trains both arms
    /// from the same initialisation; the report gives the mean paired difference with a
    /// 95% interval, which needs at least 2 (5 by default: the paper's effects are
    /// fractions of a point).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub seeds: usize,

    /// The first seed.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,

    /// Passes over the training set (the mixed arm's; see --budget for the baseline's).
    #[arg(long, value_name = "E", default_value_t = 20)]
    pub epochs: usize,

    /// steps: the baseline trains as many optimizer steps as the mixed arm (with --add it
    /// runs more epochs over its smaller set), so a gain is the data's and not longer
    /// training's. epochs: both arms run --epochs passes (with --add the mixed arm takes
    /// more steps). The same for --replace, where both sets are the same size.
    #[arg(long, value_enum, default_value_t = Budget::Steps)]
    pub budget: Budget,

    /// Side the pairs are resized to. Shrinking: images averaged (a triangle filter at
    /// non-integer factors), labels by the most frequent label of each block; growing:
    /// nearest for both.
    #[arg(long, value_name = "S", default_value_t = 512)]
    pub size: u32,

    /// Network width C (detail branch C, C, 2C; BiSeNet V2: 64).
    #[arg(long, value_name = "W", default_value_t = 32)]
    pub width: usize,

    /// Training batch size (images per step).
    #[arg(long, value_name = "B", default_value_t = 8)]
    pub batch: usize,

    /// Adam learning rate (decays "poly" to 0 over the run).
    #[arg(long, value_name = "LR", default_value_t = 1e-3)]
    pub lr: f64,

    /// Output directory (created if missing; files of the same names are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    #[command(flatten)]
    pub device: DeviceArg,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let outcome = crate::utility::run(&options(&args)?, args.device.device)?;
    print!("{}", outcome.markdown);
    println!("\nwrote {}, report.md and iou.png", outcome.json.display());
    Ok(ExitCode::SUCCESS)
}

/// The experiment the flags describe, checked.
fn options(args: &Args) -> anyhow::Result<UtilityOptions> {
    let mix = match (args.replace, args.add) {
        (Some(f), None) => Mix::Replace(f),
        (None, Some(f)) => Mix::Add(f),
        (None, None) => Mix::Replace(0.1),
        (Some(_), Some(_)) => anyhow::bail!("--replace and --add: give one"),
    };
    let opts = UtilityOptions {
        real: args.real.clone(),
        dataset: args.dataset.options(false),
        classes: args.dataset.classes.table()?,
        synthetic: args.synthetic.clone(),
        mix,
        consistency_samples: args.consistency_samples,
        test_stems: args.test_stems.clone(),
        seeds: args.seeds,
        seed: args.seed,
        epochs: args.epochs,
        budget: args.budget,
        size: args.size,
        width: args.width,
        batch: args.batch,
        lr: args.lr,
        out: args.out.clone(),
    };
    opts.check()?;
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use shared::spec::DeviceChoice;

    use super::{options, Mix};
    use crate::cli::{Cli, Command};

    fn args(a: &[&str]) -> super::Args {
        let cli = Cli::try_parse_from(["labelgen-eval", "utility"].iter().chain(a)).unwrap();
        let Command::Utility(x) = cli.command else { panic!("not utility") };
        x
    }

    #[test]
    fn eval_utility_flags_parse() {
        let a = args(&["--real", "r", "--synthetic", "s3://b/run", "--out", "o"]);
        assert_eq!((a.replace, a.add, a.seeds, a.dataset.test_fraction), (None, None, 5, 0.1));
        assert_eq!(options(&a).unwrap().mix, Mix::Replace(0.1));
        let flags = "--real r --synthetic s --out o --add 1.0 --seeds 2 --epochs 4 --size 64 --width 8 --batch 2 --lr 0.01 --test-stems t.txt --device cpu";
        let a = args(&flags.split(' ').collect::<Vec<_>>());
        assert_eq!(options(&a).unwrap().mix, Mix::Add(1.0));
        assert_eq!((a.epochs, a.size, a.width, a.batch, a.test_stems.as_deref()), (4, 64, 8, 2, Some(std::path::Path::new("t.txt"))));
        assert_eq!(a.device.device, DeviceChoice::Cpu);
        assert!(Cli::try_parse_from(["labelgen-eval", "utility", "--real", "r", "--synthetic", "s", "--out", "o", "--add", "1", "--replace", "0.1"]).is_err());
        assert!(options(&args(&["--real", "r", "--synthetic", "s", "--out", "o", "--replace", "1.0"])).is_err());
        assert!(options(&args(&["--real", "r", "--synthetic", "s", "--out", "o", "--seeds", "0"])).is_err());
    }
}
