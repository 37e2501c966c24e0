//! Flag groups shared by several commands (of `worker` and `labelgen-eval`): how a
//! dataset directory is read ([`DataArgs`]) and its class table ([`ClassesArg`]), where
//! models run ([`DeviceArg`]), and comma-separated number lists ([`List`]).

use anyhow::Context;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use shared::dataset::{Dataset, DatasetOptions, MaskKind, UnknownCodes, DEFAULT_TEST_FRACTION};
use shared::spec::DeviceChoice;
use shared::ClassTable;

/// `--device`: where a command's models run. One flag for every model command.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct DeviceArg {
    /// Where the models run: auto (CUDA when an NVIDIA driver is present in a CUDA build,
    /// else the CPU with a warning), cpu, cuda or cuda:N. `worker train ddpm|spade` also
    /// take cuda:all (data parallel: every GPU computes a share of each batch); other
    /// model commands take one device.
    #[arg(long, env = "LABELGEN_DEVICE", value_name = "DEVICE", default_value = "auto")]
    pub device: DeviceChoice,
}

/// `--label-batch`, `--image-batch`, `--no-overlap`: how this worker fits a run's models
/// into its device's memory. They lower the run's `pipeline.labels.batch_size` and
/// `pipeline.images.batch_size` (never raise them: a job hands the pipeline the run's
/// batch of samples per call, and a larger batch would be padded on every call) and turn
/// `pipeline.overlap` off, in this process only. Samples depend on their index alone, so
/// they are the same (on the CPU label maps bit for bit and images to float rounding; on a
/// GPU another batch shape may pick other kernels, and over the DDPM's many steps that may
/// change more than near-tie pixels: unmeasured), and a GPU short of memory can serve a
/// run already under way (those keys are part of the run's digest: changing them in the
/// spec makes another run).
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct FitArgs {
    /// Label maps per DDPM batch on this worker, at most the run's: the largest divisor of
    /// the run's samples per call up to N, so full calls are not padded [default: the run's].
    #[arg(long, env = "LABELGEN_LABEL_BATCH", value_name = "N", help_heading = "Device memory", value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub label_batch: Option<u64>,
    /// Images per SPADE batch on this worker, at most the run's: the largest divisor of
    /// the run's samples per call up to N [default: the run's].
    #[arg(long, env = "LABELGEN_IMAGE_BATCH", value_name = "N", help_heading = "Device memory", value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub image_batch: Option<u64>,
    /// Run the two models one after the other on this worker (one model's activations in
    /// memory at a time) whatever the run's pipeline.overlap says.
    #[arg(long, env = "LABELGEN_NO_OVERLAP", help_heading = "Device memory")]
    pub no_overlap: bool,
}

impl FitArgs {
    /// Whether any is set.
    pub fn any(&self) -> bool {
        self.label_batch.is_some() || self.image_batch.is_some() || self.no_overlap
    }

    /// `spec` as this worker runs it: each model's batch the largest divisor of the run's
    /// call size (samples per pipeline call, [`shared::spec::PipelineSection::generate_batch`])
    /// that is at most both the one set here and the run's own, overlap off if asked (the
    /// stored spec and its digest are left alone).
    pub fn apply(&self, spec: &shared::spec::RunSpec) -> shared::spec::RunSpec {
        // A job hands the pipeline the run's calls: a batch that divides the call size is
        // never padded.
        let call = spec.pipeline.generate_batch(spec.run.shard_size);
        let fit = |n: u64, run: usize| (1..=run.min(n as usize)).rev().find(|d| call.is_multiple_of(*d)).unwrap_or(1);
        let (run_labels, run_images) = (spec.pipeline.label_batch(), spec.pipeline.image_batch());
        let mut spec = spec.clone();
        if let (Some(n), Some(l)) = (self.label_batch, spec.pipeline.labels.as_mut()) {
            l.batch_size = Some(fit(n, run_labels));
        }
        if let (Some(n), Some(i)) = (self.image_batch, spec.pipeline.images.as_mut()) {
            i.batch_size = Some(fit(n, run_images));
        }
        if self.no_overlap {
            spec.pipeline.overlap = false;
        }
        spec
    }
}

/// `--precision`: the float precision of an inference command's forward passes (as
/// `pipeline.precision` for a run; see `crate::precision`).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct PrecisionArg {
    /// f32, bf16 or f16: weights cast once at load; norm statistics and softmax stay f32.
    /// Half precision is for GPUs (tensor cores); on the CPU it is slower than f32.
    #[arg(long, value_name = "P", default_value = "f32")]
    pub precision: shared::spec::Precision,
}

/// How the training commands read a dataset directory: the class table, the mask format,
/// unknown mask values and the held-out test split (`worker train ddpm`, `worker train
/// spade`, `labelgen-eval utility`).
#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    #[command(flatten)]
    pub classes: ClassesArg,

    /// How label PNGs encode classes.
    ///
    /// codes: 8-bit grayscale, one raw class code a pixel: the AI Hub codes 10 building,
    /// 20 parking lot, 30 road, 40 street trees, 50 paddy, 60 dry field, 70 forest,
    /// 80 bare land, and 100 for "ignore" (what `worker procedural` writes); or an indexed
    /// PNG whose palette indices are the codes (Pascal VOC style). Other tables: --classes.
    ///
    /// palette: RGB (or RGBA, or indexed), each pixel its class's preview colour (the
    /// colours of the previews `worker procedural` writes), black for "ignore".
    #[arg(long, value_name = "KIND", help_heading = "Dataset", default_value = "codes", value_parser = PossibleValuesParser::new(MaskKind::NAMES).map(|s| s.parse::<MaskKind>().expect("a listed value")))]
    pub mask: MaskKind,

    /// What a mask value outside the class table does.
    ///
    /// error: stop before any training, naming the file, the value, its first pixel and
    /// the valid values.
    ///
    /// ignore: treat such pixels as "ignore" (not trained on) and report how many there
    /// were.
    #[arg(long, value_name = "MODE", help_heading = "Dataset", default_value = "error", value_parser = PossibleValuesParser::new(UnknownCodes::NAMES).map(|s| s.parse::<UnknownCodes>().expect("a listed value")))]
    pub unknown_codes: UnknownCodes,

    /// Share of the files held out for testing, 0 ≤ F < 1 (0: train on all).
    ///
    /// A file is held out when the first 8 bytes of sha256(file stem), read as a fraction
    /// of 2^64, are below F: the split depends on the file name alone, so adding files never
    /// moves others between the splits. `worker train ddpm|spade` write the held-out stems
    /// to OUT/test_stems.txt (one a line, sorted) so a later evaluation can use exactly them.
    #[arg(long, value_name = "F", help_heading = "Dataset", default_value_t = DEFAULT_TEST_FRACTION, value_parser = parse_fraction)]
    pub test_fraction: f64,

    /// Split by group (region, scene) rather than by file: a regular expression whose first
    /// capture group (else its whole match) names each file stem's group.
    ///
    /// Every file of a group lands on the same side (the hash above is taken of the group),
    /// so neighbouring tiles of one scene are never split between training and testing.
    /// E.g. '^(.*)_\d+$' groups by the stem without its last _NUMBER, '^[^_]+' by the part
    /// before the first _. A stem the pattern names no group in is an error naming the
    /// file. Give the same pattern and fraction to every command that reads the set.
    #[arg(long, value_name = "REGEX", help_heading = "Dataset", value_parser = parse_split_group)]
    pub split_group: Option<String>,
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let f: f64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if !(0.0..1.0).contains(&f) {
        return Err(format!("{s}: must be at least 0 and below 1 (the share of files held out for testing)"));
    }
    Ok(f)
}

fn parse_split_group(s: &str) -> Result<String, String> {
    shared::dataset::SplitGroups::new(Some(s)).map(|_| s.to_string()).map_err(|e| e.to_string())
}

impl DataArgs {
    pub fn options(&self, labels_only: bool) -> DatasetOptions {
        DatasetOptions { mask: self.mask, unknown: self.unknown_codes, test_fraction: self.test_fraction, split_group: self.split_group.clone(), labels_only }
    }

    /// Opens and checks `--data` (every file read once) with `classes` and logs what it
    /// found. A dataset without a pixel of any class is refused.
    pub fn open(&self, dir: &std::path::Path, classes: ClassTable, labels_only: bool) -> anyhow::Result<Dataset> {
        let ds = Dataset::open_with(dir, classes, &self.options(labels_only)).with_context(|| format!("--data {}", dir.display()))?;
        ds.require_class_pixels().with_context(|| format!("--data {}", dir.display()))?;
        // Training reads every tile resized to a square side.
        ds.require_square().with_context(|| format!("--data {}", dir.display()))?;
        tracing::info!("--data {}: {}", dir.display(), ds.summary);
        if ds.summary.unknown_pixels > 0 {
            tracing::warn!(
                "{} pixels in {} label files hold values outside the class table (--unknown-codes ignore): the DDPM's loss leaves them out; SPADE sees them as no class (an all-zero one-hot) and still learns to paint the image pixels under them",
                ds.summary.unknown_pixels,
                ds.summary.unknown_files
            );
        }
        Ok(ds)
    }
}

/// Refuses a count flag given as 0, naming the first such: `--steps 0: must be at least 1`.
pub fn at_least_one(flags: &[(&str, u64)]) -> anyhow::Result<()> {
    match flags.iter().find(|(_, v)| *v == 0) {
        Some((flag, _)) => anyhow::bail!("{flag} 0: must be at least 1"),
        None => Ok(()),
    }
}

/// `--classes FILE`: the class table of a dataset's label maps (`worker train ddpm|spade`,
/// `worker cleanup`, `labelgen-eval utility|labels`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClassesArg {
    /// The labels' class table: a TOML file with a `[classes]` table, as in a run spec (a
    /// run spec that has one will do). Default: the AI Hub land-cover table (codes 10 …
    /// 80, ignore 100).
    ///
    /// Trained models record it in model.json, and a run's spec must have the same table
    /// (`[classes]`) to use them.
    #[arg(long, value_name = "FILE", help_heading = "Dataset")]
    pub classes: Option<std::path::PathBuf>,
}

impl ClassesArg {
    /// The table `--classes` names, else the AI Hub table.
    pub fn table(&self) -> anyhow::Result<ClassTable> {
        match &self.classes {
            Some(path) => Ok(ClassTable::from_toml_file(path).context("--classes")?),
            None => Ok(ClassTable::ai_hub()),
        }
    }
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
