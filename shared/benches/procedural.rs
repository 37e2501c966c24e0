//! Procedural tiles per second at 512 × 512: label layout + rendering + PNG encoding of
//! both the image and the label, with one thread and with all threads. Prints figures;
//! asserts nothing.
//!
//! `cargo bench -p shared --bench procedural` (set `PROCEDURAL_BENCH_TILES` to change the
//! number of tiles per measurement, default 48).

use std::time::Instant;

use rayon::prelude::*;
use shared::procedural::{sample, ClassShares};
use shared::ClassTable;

fn tile(index: u64, shares: &ClassShares, classes: &ClassTable) -> usize {
    let (image, labels) = sample(1, index, 512, shares);
    image.to_png().len() + labels.to_png(classes).len()
}

fn measure(threads: usize, tiles: u64, shares: &ClassShares, classes: &ClassTable) -> f64 {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a rayon pool");
    pool.install(|| {
        // Warm-up.
        (0..threads as u64).into_par_iter().for_each(|i| {
            std::hint::black_box(tile(10_000 + i, shares, classes));
        });
        let start = Instant::now();
        let bytes: usize = (0..tiles).into_par_iter().map(|i| tile(i, shares, classes)).sum();
        let secs = start.elapsed().as_secs_f64();
        std::hint::black_box(bytes);
        tiles as f64 / secs
    })
}

fn main() {
    let tiles: u64 = std::env::var("PROCEDURAL_BENCH_TILES").ok().and_then(|v| v.parse().ok()).unwrap_or(48);
    let shares = ClassShares::default();
    let classes = ClassTable::ai_hub();
    let all = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let one = measure(1, tiles, &shares, &classes);
    println!("procedural 512x512 (labels + image + 2 PNGs), {tiles} tiles: 1 thread: {one:.2} tiles/s ({:.1} ms/tile)", 1000.0 / one);
    let many = measure(all, tiles, &shares, &classes);
    println!("procedural 512x512 (labels + image + 2 PNGs), {tiles} tiles: {all} threads: {many:.2} tiles/s (x{:.2})", many / one);
}
