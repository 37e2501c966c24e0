//! `worker synthesize`: paints an image for every label map in a directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use burn::tensor::backend::Backend;

use crate::args::DeviceArg;
use crate::backend::OnBackend;
use crate::device::Resolved;
use crate::spade::synthesize_dir::{label_files, synthesize_files, Painted};
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

    /// Seed of the generator's noise: the same seed and label maps give the same images.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,

    /// Label maps per forward pass.
    #[arg(long, value_name = "B", default_value_t = 8)]
    pub batch: usize,

    #[command(flatten)]
    pub device: DeviceArg,

    #[command(flatten)]
    pub precision: crate::args::PrecisionArg,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.batch == 0 {
        anyhow::bail!("--batch 0: must be at least 1");
    }
    let files = label_files(&args.labels).context("--labels")?;
    let done = crate::backend::dispatch(args.device.device, Paint { args: &args, files: &files })?;
    println!("painted {} images of {}x{} into {} in {:.1} s ({:.2} images/s)", done.count, done.size, done.size, args.out.display(), done.seconds, done.images_per_sec());
    Ok(ExitCode::SUCCESS)
}

/// Loads --model on the chosen backend and paints `files` into --out.
struct Paint<'a> {
    args: &'a Args,
    files: &'a [PathBuf],
}

impl OnBackend for Paint<'_> {
    type Output = Painted;
    fn run<B: Backend>(self, device: B::Device, _: Resolved) -> anyhow::Result<Painted> {
        let args = self.args;
        let model = SpadeModel::<B>::load(&args.model, &device).with_context(|| format!("--model {}", args.model))?.for_inference(args.precision.precision);
        synthesize_files(&model, self.files, args.seed, args.batch, &args.out)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    #[test]
    fn synthesize_cli_parses() {
        let cli = Cli::try_parse_from(["worker", "synthesize", "--model", "m", "--labels", "l", "--out", "o", "--device", "cpu"]).unwrap();
        let Some(Command::Synthesize(a)) = cli.command else { panic!("not synthesize") };
        assert_eq!((a.seed, a.batch, a.device.device, a.precision.precision), (0, 8, shared::spec::DeviceChoice::Cpu, shared::spec::Precision::F32));
        let cli = Cli::try_parse_from(["worker", "synthesize", "--model", "m", "--labels", "l", "--out", "o", "--precision", "bf16"]).unwrap();
        let Some(Command::Synthesize(a)) = cli.command else { panic!("not synthesize") };
        assert_eq!(a.precision.precision, shared::spec::Precision::Bf16);
        assert!(Cli::try_parse_from(["worker", "synthesize", "--model", "m", "--labels", "l", "--out", "o", "--cpu"]).is_err());
    }
}
