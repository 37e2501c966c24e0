//! `labelgen-eval labels`: label-quality statistics of a run's label maps against a real
//! dataset's (see [`crate::labels`] and [`crate::stats`]).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::labels::{evaluate, LabelOptions};
use crate::stats::Connectivity;

/// Compare a run's label maps with a real dataset's: class shares, component sizes,
/// class adjacency, islands, ramp edges; writes labels.json and plots.
///
/// Do the generated maps have the real class mix, the real sizes of fields and buildings,
/// the real neighbourhoods, and no more specks or seams than real masks?
///
/// Reads every label map of --real (DIR/labels/*.png, raw AI Hub codes, as `worker
/// procedural` writes and the AI Hub set ships) and every label map listed in the run's
/// manifest.jsonl (plain PNGs or WebDataset tar members), streaming them rather than
/// holding them, and measures on each set, over all its maps (ignore pixels, code 100,
/// take part in nothing):
///
/// - class shares: each class's share of the class pixels;
///
/// - component sizes: per class, how many connected components fall in each size bin 1,
///   2-3, 4-7, 8-15, … pixels (log2 bins);
///
/// - class adjacency: per pair of classes, the share of 4-neighbour pixel pairs that have
///   one class on one side and the other on the other side;
///
/// - islands: components under --min-island pixels, per map;
///
/// - ramp edges: pixels in seams (1-2 px) of a third class where two classes meet, the
///   mark of a gray-encoded model's rounding, as a share of the class pixels.
///
/// Distances are total variation (TV: half the L1 distance of two distributions; 0 the
/// same, 1 nothing in common): of the class shares, of the adjacency matrices, and of each
/// class's component-size histogram (their mean over the classes either set has).
///
/// Component sizes scale with resolution, so both sets are measured at one size: with
/// --size S both are resized to S × S (the most frequent label of each block when
/// shrinking, nearest when growing); without it, synthetic maps whose size differs from
/// the real maps' (their most common size) are resized to it, and labels.json says so.
///
/// Writes OUT/labels.json (both sets' counts and figures, the distances, notes),
/// OUT/shares.png (bar chart), OUT/adjacency.png (the two matrices as heat maps) and
/// OUT/components.png (size histograms per class; real solid, synthetic hatched), and
/// prints the distances.
///
/// Example: labelgen-eval labels --real data/aihub-val --synthetic s3://bucket/runs/ddpm-7 --out out/eval/ddpm-7
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The real dataset directory: DIR/labels/NAME.png, 8-bit gray PNGs of raw AI Hub codes
    /// (DIR/images is not needed).
    #[arg(long, value_name = "DIR")]
    pub real: PathBuf,

    /// The run to evaluate: its directory holding manifest.jsonl, as a local path,
    /// file:///absolute/path or s3://bucket/prefix/RUN (credentials from the AWS_*
    /// variables). Every label path in manifest.jsonl is read. A local directory without
    /// manifest.jsonl but with labels/*.png (`worker sample-labels` output) or *.png
    /// (`worker cleanup` output) is read as it is: that measures label maps before and
    /// after cleanup.
    #[arg(long, value_name = "RUN_URI")]
    pub synthetic: String,

    /// Output directory for labels.json and the plots (created if missing; files of the
    /// same names are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Components with fewer pixels than this count as islands (what `worker cleanup
    /// --min-island-px` removes; 0 or 1: none do). Counted after any resize.
    #[arg(long, value_name = "PX", default_value_t = 16)]
    pub min_island: u32,

    /// Resize both sets' maps to S × S (the most frequent label of each block when
    /// shrinking, nearest when growing) before measuring. Default: the real maps as they
    /// are, and the synthetic maps resized to the real maps' most common size where they
    /// differ.
    #[arg(long, value_name = "S")]
    pub size: Option<u32>,

    /// Component connectivity: 8 (pixels touching at a corner join, as in `worker
    /// cleanup`) or 4 (sides only). The adjacency always uses the 4 side neighbours.
    #[arg(long, value_name = "4|8", default_value_t = Connectivity::Eight)]
    pub connectivity: Connectivity,

    #[command(flatten)]
    pub classes: worker::args::ClassesArg,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let classes = args.classes.table()?;
    let opts = LabelOptions { real: args.real, synthetic: args.synthetic, out: args.out, min_island: args.min_island, size: args.size, connectivity: args.connectivity, classes };
    let e = evaluate(&opts)?;
    print!("{}", e.table);
    println!("wrote {} and {}", e.json.display(), e.plots.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};
    use crate::stats::Connectivity;

    fn args(a: &[&str]) -> super::Args {
        let cli = Cli::try_parse_from(["labelgen-eval", "labels"].iter().chain(a)).unwrap();
        let Command::Labels(x) = cli.command else { panic!("not labels") };
        x
    }

    #[test]
    fn eval_labels_flags_parse() {
        let a = args(&["--real", "r", "--synthetic", "s3://b/run", "--out", "o"]);
        assert_eq!((a.min_island, a.size, a.connectivity), (16, None, Connectivity::Eight));
        let a = args(&["--real", "r", "--synthetic", "s", "--out", "o", "--min-island", "4", "--size", "32", "--connectivity", "4"]);
        assert_eq!((a.min_island, a.size, a.connectivity, a.synthetic.as_str()), (4, Some(32), Connectivity::Four, "s"));
        assert!(Cli::try_parse_from(["labelgen-eval", "labels", "--real", "r", "--synthetic", "s", "--out", "o", "--connectivity", "6"]).is_err());
    }
}
