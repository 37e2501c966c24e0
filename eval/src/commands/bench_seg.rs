//! `labelgen-eval bench-seg`: the segmentation model's size and speed — parameters and GMAC per
//! image (convolutions) at each size and at full size, training and inference images/s on
//! procedural pairs. Prints a table; asserts nothing (see [`crate::bench`]).

use std::process::ExitCode;

use worker::args::DeviceArg;

use crate::bench::{bench_seg, BenchOptions};

/// The segmentation model's size and speed: parameters and GMAC per image at each --sizes
/// side and at --full-size, training and inference images/s on procedural pairs. Prints a
/// table; asserts nothing.
///
/// Example: labelgen-eval bench-seg --sizes 64,128 --width 8 --device cpu
#[derive(Debug, clap::Args)]
pub struct SegArgs {
    /// Image sides to time training and inference at, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,128")]
    pub sizes: Vec<u32>,
    /// Width of the timed model (the detail branch's first channel count; eval utility's
    /// --width).
    #[arg(long, default_value_t = 8)]
    pub width: usize,
    /// Widths whose size and cost are reported at --full-size (not timed).
    #[arg(long, value_delimiter = ',', default_value = "32,64")]
    pub full_widths: Vec<usize>,
    /// The image side of the full-size rows.
    #[arg(long, default_value_t = 512)]
    pub full_size: u32,
    /// Images per timed training and inference batch.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Timed training steps per size (after one untimed warm-up step).
    #[arg(long, default_value_t = 8)]
    pub steps: usize,
    #[command(flatten)]
    pub device: DeviceArg,
}

pub fn run(args: SegArgs) -> anyhow::Result<ExitCode> {
    let opts = BenchOptions { sizes: args.sizes, width: args.width, full_widths: args.full_widths, full_size: args.full_size, batch: args.batch, steps: args.steps };
    bench_seg(&opts, args.device.device, &mut std::io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn bench(a: &[&str]) -> super::SegArgs {
        let cli = Cli::try_parse_from(["labelgen-eval", "bench-seg"].iter().chain(a)).unwrap();
        let Command::BenchSeg(b) = cli.command else { panic!("not bench-seg") };
        b
    }

    /// The command runs end to end at toy sizes (figures are printed, not checked); a
    /// width the model refuses is an error that names the flag.
    #[test]
    fn bench_seg_runs_at_toy_sizes() {
        super::run(bench(&["--sizes", "16", "--steps", "1", "--batch", "2", "--width", "2", "--full-widths", "2", "--full-size", "32", "--device", "cpu"])).unwrap();
        let e = super::run(bench(&["--width", "1", "--full-widths", "2", "--device", "cpu"])).unwrap_err().to_string();
        assert!(e.contains("--width 1"), "{e}");
    }
}
