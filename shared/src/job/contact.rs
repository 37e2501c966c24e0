//! `contact_sheet.png`: the first samples of a run as (colourised label | image) pairs, so
//! a user can see what a run made without opening hundreds of files.

use crate::classes::ClassTable;
use crate::error::{Error, Result};
use crate::job::record::ManifestLine;
use crate::label::{LabelMap, RgbImage};
use crate::storage::Store;

/// Samples shown.
pub const CONTACT_SAMPLES: usize = 16;
/// Pairs per row.
const PAIRS_PER_ROW: usize = 4;
/// Tiles are shrunk (nearest) to at most this side.
const MAX_TILE: u32 = 128;

/// Reads a sample file named as in the manifest: `data/…/KEY.png`, or for WebDataset
/// `data/…/SHARD.tar#KEY.png` (the member of a tar).
async fn read_sample_file(store: &Store, path: &str) -> Result<Vec<u8>> {
    let (object, member) = match path.split_once('#') {
        Some((tar, member)) => (tar, Some(member)),
        None => (path, None),
    };
    let bytes = store.get(object).await?.ok_or_else(|| Error::format(store.describe(object), "listed in the manifest but missing"))?;
    let Some(member) = member else { return Ok(bytes.to_vec()) };
    let mut archive = tar::Archive::new(std::io::Cursor::new(bytes));
    for entry in archive.entries().map_err(|e| Error::format(store.describe(object), format!("not a tar: {e}")))? {
        let mut entry = entry.map_err(|e| Error::format(store.describe(object), format!("bad tar entry: {e}")))?;
        if entry.path().ok().is_some_and(|p| p.to_string_lossy() == member) {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut out).map_err(|e| Error::format(store.describe(object), format!("reading {member}: {e}")))?;
            return Ok(out);
        }
    }
    Err(Error::format(store.describe(object), format!("has no member {member}")))
}

/// Builds the contact sheet PNG from the first manifest lines.
pub async fn contact_sheet(store: &Store, lines: &[ManifestLine], classes: &ClassTable) -> Result<Vec<u8>> {
    let mut tiles = Vec::with_capacity(lines.len() * 2);
    for line in lines.iter().take(CONTACT_SAMPLES) {
        let image = RgbImage::from_png(&read_sample_file(store, &line.image).await?, &line.image)?;
        let label = LabelMap::from_png(&read_sample_file(store, &line.label).await?, classes, &line.label)?.colorize(classes);
        let side = image.width.min(MAX_TILE);
        let shrink = |img: &RgbImage| if img.width == side && img.height == side { img.clone() } else { crate::dataset::resize_rgb(img, side, side) };
        tiles.push(shrink(&label));
        tiles.push(shrink(&image));
    }
    Ok(crate::dataset::grid(&tiles, PAIRS_PER_ROW * 2).to_png())
}
