//! `contact_sheet.png`: the first samples of a run as (colourised label | image) pairs, so
//! a user can see what a run made without opening hundreds of files.

use std::collections::HashMap;

use crate::classes::ClassTable;
use crate::error::{Error, Result};
use crate::label::{LabelMap, RgbImage};
use crate::manifest::ManifestLine;
use crate::storage::Store;

/// Samples shown.
pub const CONTACT_SAMPLES: usize = 16;
/// Pairs per row.
const PAIRS_PER_ROW: usize = 4;
/// Tiles are shrunk (nearest) to at most this side.
const MAX_TILE: u32 = 128;

/// Builds the contact sheet PNG from the first manifest lines.
pub async fn contact_sheet(store: &Store, lines: &[ManifestLine], classes: &ClassTable) -> Result<Vec<u8>> {
    let lines = &lines[..lines.len().min(CONTACT_SAMPLES)];
    // Manifest paths (plain files or `SHARD.tar#MEMBER`), read by the same reader the label
    // statistics use; each tar is fetched once.
    let paths: Vec<String> = lines.iter().flat_map(|l| [l.image.clone(), l.label.clone()]).collect();
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    crate::manifest::read_files::<Error>(store, &paths, |origin, bytes| {
        files.insert(origin.to_string(), bytes);
        Ok(())
    })
    .await?;
    let file = |path: &str| files.get(&store.describe(path)).ok_or_else(|| Error::format(store.describe(path), "listed in the manifest but not read"));
    let mut tiles = Vec::with_capacity(lines.len() * 2);
    for line in lines {
        let image = RgbImage::decode(file(&line.image)?, &line.image)?;
        let label = LabelMap::from_png(file(&line.label)?, classes, &line.label)?.colorize(classes);
        let side = image.width.min(MAX_TILE);
        let fits = |img: &RgbImage| img.width == side && img.height == side;
        // Nearest for the label's colours (filtering would blend classes at borders).
        tiles.push(if fits(&label) { label } else { label.resize_nearest(side, side) });
        tiles.push(if fits(&image) { image } else { crate::dataset::resize_rgb(&image, side, side) });
    }
    Ok(crate::dataset::grid(&tiles, PAIRS_PER_ROW * 2).to_png())
}
