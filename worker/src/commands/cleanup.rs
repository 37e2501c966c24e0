//! `worker cleanup`: cleans a directory of raw label maps ([`shared::cleanup::directory`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use shared::cleanup::directory::{clean_dir, list_pngs, REPORT_FILE};
use shared::cleanup::CleanupOptions;

/// Clean up generated label maps: replace unknown codes, thin strips, "ramp" seams and
/// small islands, then optionally upscale.
///
/// Reads every `*.png` in --in: 8-bit grayscale PNGs of raw class codes, by default the
/// AI Hub table's (10 building, 20 parking lot, 30 road, 40 street trees, 50 paddy, 60 dry
/// field, 70 forest, 80 bare land, 100 ignore), else those of --classes FILE. Any other
/// value — what a model with the gray encoding produces between two class levels — is
/// "unknown" and gets replaced.
///
/// Each map goes through passes of: mark (unknown pixels; pixels the per-class opening
/// removes; ramp strips of at most 2 pixels of one class between two others whose gray
/// levels (class order) lie on either side of its own; 8-connected
/// components under --min-island-px output pixels), then fill every marked pixel with the most
/// frequent label among its unmarked 8-neighbours, fronts growing inward (ties: the lower
/// class index; ignore only where no class is reachable). Passes repeat until the map
/// settles and no component under --min-island-px is left (a map holding a single component
/// keeps it). The result is deterministic, and cleaning it again at the map's own size
/// with the same settings changes nothing.
///
/// Writes, for each input NAME.png:
///   OUT/NAME.png            the cleaned map (same format: raw codes, 8-bit gray)
///   OUT/previews/NAME.png   before | after, colourised (unknown pixels magenta)
/// and OUT/cleanup.json: the options, a report per map and totals. Files are written to a
/// temporary name and renamed, so a reader never sees half a file.
///
/// Example: worker cleanup --in samples/raw --out samples/clean --size 512
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Directory of raw label PNGs (every *.png directly inside it is read).
    #[arg(long = "in", value_name = "DIR")]
    pub input: PathBuf,

    /// Output directory (created if missing; files of the same names are replaced). Must
    /// not be --in, whose raw maps would be overwritten.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Upscale the cleaned maps to S × S pixels, nearest neighbour (e.g. 512 for the image
    /// generator). Default: keep each map's size.
    #[arg(long, value_name = "S")]
    pub size: Option<u32>,

    /// Radius R, in output pixels (after --size), of the opening's square structuring
    /// element, (2R+1) × (2R+1): features narrower than 2R+1 output pixels are replaced. 0
    /// turns the opening off. Converted to each map's own pixels (R · map / S, rounded
    /// down), so a 64×64 map going to 512 is opened with R / 8: the default 2 turns the
    /// opening off there (the narrowest feature such a map holds is 8 output pixels wide).
    /// The pipeline's default.
    #[arg(long, value_name = "R", default_value_t = shared::cleanup::DEFAULT_OPEN_RADIUS)]
    pub open_radius_px: u32,

    /// Components (8-connected) with fewer output pixels than this are merged into their
    /// surroundings (converted like --open-radius-px, rounded up: 100 at 64 → 512 is 2 map
    /// pixels). 0 or 1 turns the island rule off. The pipeline's default.
    #[arg(long, value_name = "PX", default_value_t = shared::cleanup::DEFAULT_MIN_ISLAND)]
    pub min_island_px: u32,

    /// Keep ramp strips (seams of a third class, at most 2 pixels wide, where two classes
    /// meet and its gray level lies between theirs) unless another rule removes them.
    #[arg(long)]
    pub no_ramps: bool,

    #[command(flatten)]
    pub classes: crate::args::ClassesArg,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let opts = options(&args)?;
    let classes = args.classes.table()?;
    let files = list_pngs(&args.input).context("--in")?;
    let bar = shared::progress::bar(files.len() as u64, "maps");
    let start = Instant::now();
    let report = clean_dir(&args.input, &args.out, &files, &classes, &opts, || bar.inc(1))?;
    bar.finish_and_clear();
    if report.totals.unknown_fixed * 2 > report.pixels {
        tracing::warn!(
            "{} of {} pixels were codes outside the class table and were replaced: are these maps of another table (--classes FILE)?",
            report.totals.unknown_fixed,
            report.pixels
        );
    }

    let t = &report.totals;
    println!(
        "cleaned {} maps from {} into {} in {:.1} s: {} islands removed, {} pixels changed ({:.2}%), {} unknown pixels fixed, {} ramp pixels fixed; report in {}",
        report.count,
        args.input.display(),
        args.out.display(),
        start.elapsed().as_secs_f64(),
        t.islands_removed,
        t.pixels_changed,
        report.changed_percent(),
        t.unknown_fixed,
        t.ramp_pixels_fixed,
        args.out.join(REPORT_FILE).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The cleanup options of the flags; refuses sizes out of range and --out equal to --in.
fn options(args: &Args) -> anyhow::Result<CleanupOptions> {
    if let Some(s) = args.size {
        if !(1..=8192).contains(&s) {
            anyhow::bail!("--size {s}: must be between 1 and 8192 pixels");
        }
    }
    if args.open_radius_px > 64 {
        anyhow::bail!("--open-radius-px {}: at most 64 (2 is usual)", args.open_radius_px);
    }
    let same = match (args.input.canonicalize(), args.out.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        anyhow::bail!("--out {}: must differ from --in (the raw maps would be overwritten)", args.out.display());
    }
    Ok(CleanupOptions { open_radius: args.open_radius_px, min_island: args.min_island_px, ramps: !args.no_ramps, out_size: args.size })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn args(extra: &[&str]) -> super::Args {
        let cli = Cli::try_parse_from(["worker", "cleanup", "--in", "raw", "--out", "clean"].iter().chain(extra)).unwrap();
        let Some(Command::Cleanup(a)) = cli.command else { panic!("not cleanup") };
        a
    }

    #[test]
    fn cleanup_cli_parses_into_options() {
        let o = super::options(&args(&[])).unwrap();
        // The pipeline's defaults ([pipeline.cleanup]), in output pixels.
        let d = shared::spec::CleanupSection::default();
        assert_eq!((o.open_radius, o.min_island, o.ramps, o.out_size), (d.open_radius_px, d.min_island_px, true, None));
        let o = super::options(&args(&["--size", "512", "--open-radius-px", "2", "--min-island-px", "48", "--no-ramps"])).unwrap();
        assert_eq!((o.open_radius, o.min_island, o.ramps, o.out_size), (2, 48, false, Some(512)));
    }

    #[test]
    fn cleanup_cli_errors_name_the_flag() {
        let e = super::options(&args(&["--size", "0"])).unwrap_err().to_string();
        assert!(e.contains("--size 0"), "{e}");
        let e = super::options(&args(&["--open-radius-px", "65"])).unwrap_err().to_string();
        assert!(e.contains("--open-radius-px 65"), "{e}");
        let dir = std::env::temp_dir().join(format!("labelgen-cleanup-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut same = args(&[]);
        (same.input, same.out) = (dir.clone(), dir.join("."));
        let e = super::options(&same).unwrap_err().to_string();
        assert!(e.contains("must differ from --in"), "{e}");
        let e = format!("{:#}", super::run(super::Args { input: dir.join("missing"), ..args(&[]) }).unwrap_err());
        assert!(e.starts_with("--in: ") && e.contains("missing"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
