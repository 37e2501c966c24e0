//! `worker procedural`: writes a procedural land-cover dataset on this machine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use shared::procedural::{write_dataset, ClassShares};
use shared::ClassTable;

/// Write a procedural land-cover dataset: DIR/images, DIR/labels, DIR/previews.
///
/// DIR/images holds RGB PNGs, DIR/labels 8-bit gray PNGs of raw AI Hub codes 10…80 and
/// DIR/previews image | colourised label, one file each per tile, named 000000.png,
/// 000001.png, …
///
/// Tiles have a road network, buildings and parking lots along the roads, street trees,
/// forest blobs, paddies and dry fields in rows of plots, and bare land, rendered with
/// per-class textures and shadows. The same --seed, --size and --shares always give
/// byte-identical files, whatever --threads.
///
/// Example: worker procedural --count 100 --size 512 --seed 1 --out /tmp/proc1 --shares building=0.2,forest=0.1
#[derive(Debug, clap::Args)]
pub struct ProceduralArgs {
    /// Number of tiles to write.
    #[arg(long, value_name = "N")]
    pub count: u64,

    /// Tile side in pixels (tiles are square). Features are sized for 512 and scale with
    /// the tile, so a 256 tile looks like a 512 tile shrunk.
    #[arg(long, value_name = "S", default_value_t = 512)]
    pub size: u32,

    /// Run seed. Tile i is a pure function of (seed, i, size, shares).
    #[arg(long, value_name = "X", default_value_t = 0)]
    pub seed: u64,

    /// Output directory (created if missing; files of the same names are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Class shares of the pixels, on average over tiles: `class=share,…` with class
    /// names building, parking_lot, road, street_trees, paddy, dry_field, forest,
    /// bare_land. Listed classes get their share; unlisted ones split the rest in the
    /// default proportions; listing all 8 gives weights that are normalised.
    /// Default: building=0.12,parking_lot=0.06,road=0.12,street_trees=0.05,paddy=0.18,dry_field=0.15,forest=0.22,bare_land=0.10
    #[arg(long, value_name = "CLASS=SHARE,…", value_parser = parse_shares)]
    pub shares: Option<ClassShares>,

    /// Worker threads (default: one per core).
    #[arg(long, value_name = "T")]
    pub threads: Option<usize>,
}

fn parse_shares(s: &str) -> Result<ClassShares, String> {
    ClassShares::parse(s).map_err(|e| e.to_string())
}

pub fn run(args: ProceduralArgs) -> anyhow::Result<ExitCode> {
    if args.count == 0 {
        anyhow::bail!("--count {}: must be at least 1", args.count);
    }
    if !(16..=8192).contains(&args.size) {
        anyhow::bail!("--size {}: must be between 16 and 8192 pixels", args.size);
    }
    if args.threads == Some(0) {
        anyhow::bail!("--threads 0: must be at least 1 (leave it out for one thread per core)");
    }
    let shares = args.shares.unwrap_or_default();
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(t) = args.threads {
        pool = pool.num_threads(t);
    }
    let pool = pool.build().context("starting the worker threads")?;

    let bar = shared::progress::bar(args.count, "tiles");
    let start = Instant::now();
    let summary = pool
        .install(|| write_dataset(&args.out, args.count, args.size, args.seed, &shares, |_| bar.inc(1)))
        .with_context(|| format!("writing the dataset to --out {}", args.out.display()))?;
    bar.finish_and_clear();

    let secs = start.elapsed().as_secs_f64();
    let classes = ClassTable::ai_hub();
    let wanted = shares.normalized();
    let got: Vec<String> = summary.shares().iter().zip(&classes.classes).zip(wanted).map(|((s, c), w)| format!("{} {:.1}% (asked {:.1}%)", c.name, s * 100.0, w * 100.0)).collect();
    println!(
        "wrote {} tiles of {}x{} to {} in {:.1} s ({:.1} tiles/s, {} threads); class shares: {}",
        summary.count,
        summary.size,
        summary.size,
        args.out.display(),
        secs,
        summary.count as f64 / secs.max(1e-9),
        pool.current_num_threads(),
        got.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
