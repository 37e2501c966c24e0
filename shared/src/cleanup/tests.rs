//! Tests of the whole cleanup (the parts have their own beside them).

use super::*;
use crate::procedural::{generate_labels, ClassShares};

const K: usize = 8;

/// The settings most of these tests were written for: radius 1, islands under 16 pixels,
/// no resize (so output pixels are the map's own).
const MAP_PX: CleanupOptions = CleanupOptions { open_radius: 1, min_island: 16, ramps: true, out_size: None };

/// A clean 64×64 map: four large rectangles of classes 0, 2, 5, 6 and a 10×10 ignore
/// hole inside the class-6 one; nothing is narrower than 5 pixels.
fn rectangles() -> LabelMap {
    let mut m = LabelMap::new(64, 64, 0);
    for y in 0..64 {
        for x in 0..64 {
            let v = match (x < 24, x < 40, y < 32) {
                (true, _, true) => 0,
                (false, _, true) => 2,
                (_, true, false) => 5,
                (_, false, false) if (48..58).contains(&x) && (40..50).contains(&y) => IGNORE_INDEX,
                (_, false, false) => 6,
            };
            m.set(x, y, v);
        }
    }
    m
}

/// `map` with a fraction `rate` of its pixels replaced by a random class or, one time in
/// nine, by [`UNKNOWN_INDEX`].
fn salt(map: &LabelMap, seed: u64, rate: f64) -> LabelMap {
    let mut m = map.clone();
    for (i, v) in m.data.iter_mut().enumerate() {
        let r = crate::mix64(seed ^ crate::mix64(i as u64 + 1));
        if (r % 1_000_000) as f64 / 1e6 < rate {
            let pick = (r >> 32) % (K as u64 + 1);
            *v = if pick == K as u64 { UNKNOWN_INDEX } else { pick as u8 };
        }
    }
    m
}

fn noisy_procedural(seed: u64, size: u32) -> LabelMap {
    salt(&generate_labels(seed, size, &ClassShares::default()), seed.wrapping_mul(31) + 7, 0.05)
}

fn assert_valid(m: &LabelMap, what: &str) {
    if let Some((i, v)) = m.data.iter().enumerate().find(|&(_, &v)| v as usize >= K && v != IGNORE_INDEX) {
        panic!("{what}: pixel {i} holds {v}, not a class index or ignore");
    }
}

#[test]
fn cleanup_outputs_only_class_indices_or_ignore() {
    let classes = ClassTable::ai_hub();
    for seed in 0..6u64 {
        // Arbitrary bytes as codes: mostly unknown, some classes, some ignore.
        let codes: Vec<u8> = (0..48 * 40).map(|i| (crate::mix64(seed * 10_000 + i) % 256) as u8).collect();
        let raw = decode_raw(&codes, 48, 40, &classes);
        assert!(raw.data.contains(&UNKNOWN_INDEX));
        let (out, report) = cleanup(&raw, K, &MAP_PX);
        assert_valid(&out, &format!("random codes, seed {seed}"));
        assert_eq!(report.unknown_fixed, raw.data.iter().filter(|&&v| v == UNKNOWN_INDEX).count() as u64);

        let (out, _) = cleanup(&noisy_procedural(seed, 64), K, &MAP_PX);
        assert_valid(&out, &format!("noisy procedural, seed {seed}"));
        // Values >= k that are not ignore are treated as unknown too.
        let mut odd = rectangles();
        odd.data[100] = 200;
        odd.data[101] = K as u8;
        let (out, report) = cleanup(&odd, K, &MAP_PX);
        assert_valid(&out, "values >= k");
        assert_eq!((report.unknown_fixed, out), (2, rectangles()));
    }
}

#[test]
fn cleanup_leaves_a_clean_map_unchanged() {
    let clean = rectangles();
    for opts in [MAP_PX, CleanupOptions { open_radius: 2, min_island: 64, ..MAP_PX }, CleanupOptions { open_radius: 0, ramps: false, ..MAP_PX }] {
        let (out, report) = cleanup(&clean, K, &opts);
        assert_eq!(out, clean, "{opts:?}");
        assert_eq!(report, CleanupReport::default(), "{opts:?}");
    }
}

#[test]
fn cleanup_twice_equals_cleanup_once() {
    let opts = MAP_PX;
    for seed in 0..8u64 {
        for size in [64, 128] {
            let (once, first) = cleanup(&noisy_procedural(seed, size), K, &opts);
            assert!(first.pixels_changed > 0);
            let (twice, again) = cleanup(&once, K, &opts);
            assert!(once == twice, "seed {seed} size {size}: second cleanup changed {} pixels", again.pixels_changed);
            assert_eq!(again.pixels_changed, 0);
        }
    }
}

#[test]
fn cleanup_leaves_no_island_on_noisy_maps() {
    for seed in 0..6u64 {
        for size in [64, 128] {
            let noisy = noisy_procedural(seed, size);
            assert!(island_count(&noisy, K, 16) > 20, "the test map should be noisy");
            for (r, min_island, ramps) in [(1, 16, true), (0, 16, false), (2, 40, true), (0, 4, true)] {
                let opts = CleanupOptions { open_radius: r, min_island, ramps, out_size: None };
                let (out, report) = cleanup(&noisy, K, &opts);
                let small: Vec<Component> = components(&out, K).into_iter().filter(|c| c.size < min_island).collect();
                assert!(small.is_empty(), "seed {seed} size {size} {opts:?}: islands left {small:?}");
                assert_eq!(report.islands_left, 0);
                assert!(report.islands_removed > 0);
            }
        }
    }
    // Pure salt-and-pepper noise: every pixel random.
    for seed in 0..4u64 {
        let noise = salt(&LabelMap::new(64, 64, 0), seed, 1.0);
        let (out, _) = cleanup(&noise, K, &MAP_PX);
        assert_eq!(island_count(&out, K, 16), 0, "seed {seed}");
        assert_valid(&out, "pure noise");
    }
}

#[test]
fn cleanup_removes_planted_islands_and_ramps_and_nothing_else() {
    let base = rectangles();
    let mut planted = base.clone();
    let mut plant = |x0: u32, y0: u32, w: u32, h: u32, v: u8| -> u64 {
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                assert_ne!(planted.get(x, y), v);
                planted.set(x, y, v);
            }
        }
        (w * h) as u64
    };
    // Islands (4), each at least 3 pixels from any edge between regions.
    let mut island_px = plant(8, 8, 2, 2, 4); // in class 0
    island_px += plant(40, 12, 1, 1, 1); // in class 2
    island_px += plant(10, 45, 3, 3, 7); // in class 5
    island_px += plant(45, 56, 2, 1, 3); // in class 6
                                         // Ramps (a class whose gray level lies between its flanks'): a 1-pixel strip of
                                         // class 1 on the class-0 side of the 0 | 2 edge (a 1-pixel seam holds no trace of
                                         // where the edge was, so the fill's tie goes to the lower class, 0); a 2-pixel
                                         // strip of class 3 across the 0 / 5 edge.
    let mut ramp_px = plant(23, 4, 1, 24, 1);
    ramp_px += plant(4, 31, 16, 2, 3);
    // Not a ramp: a 2-pixel strip of class 1 across the 5 | 6 edge (1 is not between 5
    // and 6 in gray order; a thin road between two fields looks like this).
    let strip_px = plant(39, 36, 2, 24, 1);
    let planted = planted;

    // The default opening (3×3) removes the 2-pixel strip all the same.
    let (out, report) = cleanup(&planted, K, &MAP_PX);
    assert!(out == base, "{} pixels differ from the map before planting", out.data.iter().zip(&base.data).filter(|(a, b)| a != b).count());
    assert_eq!(report.pixels_changed, island_px + ramp_px + strip_px);
    assert_eq!(report.islands_removed, 4);
    assert_eq!(report.ramp_pixels_fixed, ramp_px);
    assert_eq!(report.unknown_fixed, 0);

    // Without the opening, the island and ramp rules remove islands and ramps; the strip
    // that is no ramp stays.
    let no_open = CleanupOptions { open_radius: 0, ..MAP_PX };
    let (out, report) = cleanup(&planted, K, &no_open);
    let mut want = base.clone();
    for y in 36..60 {
        for x in 39..41 {
            want.set(x, y, 1);
        }
    }
    assert!(out == want, "{} pixels differ", out.data.iter().zip(&want.data).filter(|(a, b)| a != b).count());
    assert_eq!(report.ramp_pixels_fixed, ramp_px);
    // … and without the ramp rule the strips (too big to be islands) stay.
    let (out, report) = cleanup(&planted, K, &CleanupOptions { ramps: false, ..no_open });
    assert_eq!(out.get(23, 10), 1);
    assert_eq!(report.pixels_changed, island_px);
}

#[test]
fn cleanup_replaces_unknown_codes() {
    let classes = ClassTable::ai_hub();
    // Codes: 30 (road) everywhere, 100 (ignore) in the top-left 4×4, a 6×6 blob of 37 and
    // a few scattered 255 (neither a class nor the ignore code).
    let mut codes = vec![30u8; 32 * 32];
    for y in 0..32 {
        for x in 0..32 {
            if x < 4 && y < 4 {
                codes[y * 32 + x] = 100;
            }
            if (20..26).contains(&x) && (10..16).contains(&y) {
                codes[y * 32 + x] = 37;
            }
        }
    }
    for i in [100, 700, 1000] {
        codes[i] = 255;
    }
    let raw = decode_raw(&codes, 32, 32, &classes);
    assert_eq!(raw.get(0, 0), IGNORE_INDEX);
    assert_eq!(raw.get(21, 11), UNKNOWN_INDEX);
    assert_eq!(raw.data[700], UNKNOWN_INDEX);
    assert_eq!(raw.get(31, 31), 2);
    // The strict decoder refuses such a map.
    assert!(LabelMap::from_codes(32, 32, &codes, &classes, "mem").is_err());

    let (out, report) = cleanup(&raw, K, &MAP_PX);
    let mut want = LabelMap::new(32, 32, 2);
    for y in 0..4 {
        for x in 0..4 {
            want.set(x, y, IGNORE_INDEX);
        }
    }
    assert_eq!(out, want);
    assert_eq!((report.unknown_fixed, report.pixels_changed), (39, 39));
}

#[test]
fn cleanup_uses_ignore_only_where_no_class_is_around() {
    // A 3×3 speck of class 1 inside a 9×9 ignore block inside class 0, and a 2×2 speck of
    // class 3 touching both the ignore block and class 0.
    let mut m = LabelMap::new(32, 32, 0);
    for y in 4..13 {
        for x in 4..13 {
            m.set(x, y, IGNORE_INDEX);
        }
    }
    let ignore_before: Vec<usize> = (0..m.data.len()).filter(|&i| m.data[i] == IGNORE_INDEX).collect();
    for y in 7..10 {
        for x in 7..10 {
            m.set(x, y, 1);
        }
    }
    for (x, y) in [(13, 10), (14, 10), (13, 11), (14, 11)] {
        m.set(x, y, 3); // just right of the ignore block
    }
    let (out, report) = cleanup(&m, K, &MAP_PX);
    for y in 0..32 {
        for x in 0..32 {
            let v = out.get(x, y);
            let inside = (4..13).contains(&x) && (4..13).contains(&y);
            assert_eq!(v, if inside { IGNORE_INDEX } else { 0 }, "({x}, {y})");
        }
    }
    assert!(ignore_before.iter().all(|&i| out.data[i] == IGNORE_INDEX));
    assert_eq!(report.islands_removed, 2);
}

#[test]
fn cleanup_keeps_a_lone_small_component_and_terminates_on_tiny_maps() {
    let m = LabelMap::new(3, 3, 2);
    let (out, report) = cleanup(&m, K, &MAP_PX);
    assert_eq!(out, m);
    assert_eq!(report.islands_left, 1);
    // Tiny and all small components: the largest absorbs the rest.
    let m = LabelMap { width: 3, height: 2, data: vec![0, 0, 1, 0, 2, 1] };
    let (out, report) = cleanup(&m, K, &MAP_PX);
    assert_eq!(components(&out, K).len(), 1);
    assert_eq!(report.islands_left, 1);
    // Empty and all-unknown maps; an empty map asked to come out at a size is all ignore.
    let (out, _) = cleanup(&LabelMap::new(0, 0, 0), K, &MAP_PX);
    assert!(out.data.is_empty());
    for empty in [LabelMap::new(0, 0, 0), LabelMap::new(5, 0, 0)] {
        let (out, _) = cleanup(&empty, K, &CleanupOptions { out_size: Some(8), ..MAP_PX });
        assert_eq!(out, LabelMap::new(8, 8, IGNORE_INDEX));
    }
    // Every class pixel marked (the opening finds no 3×3 window of one class) and one
    // ignore pixel: the largest component still stays, and the ignore pixel too (it used
    // to turn the whole map to ignore).
    let mut m = LabelMap::new(3, 3, 2);
    m.set(0, 0, IGNORE_INDEX);
    assert_eq!(cleanup(&m, K, &MAP_PX).0, m);
    let (out, report) = cleanup(&LabelMap::new(5, 5, UNKNOWN_INDEX), K, &MAP_PX);
    assert_eq!(out, LabelMap::new(5, 5, IGNORE_INDEX));
    assert_eq!(report.unknown_fixed, 25);
}

#[test]
fn cleanup_upscale_is_exact_nearest_neighbour() {
    let noisy = noisy_procedural(3, 64);
    for size in [512u32, 100, 64, 32] {
        // Output-pixel settings become map-pixel ones before the cleanup runs.
        let opts = CleanupOptions { open_radius: 8, min_island: 16 * 64, out_size: Some(size), ..MAP_PX };
        let (small, report) = cleanup(&noisy, K, &opts.scaled(64, 64));
        let (big, big_report) = cleanup(&noisy, K, &opts);
        assert_eq!(big_report, report, "the report is at the input resolution");
        assert_eq!((big.width, big.height), (size, size));
        // The source pixel under each output pixel's centre when growing (64 → 100 too);
        // each 2×2 block's first when shrinking.
        let src = |i: u32| if size > 64 { ((2 * i + 1) * 64 / (2 * size)).min(63) } else { i * 64 / size };
        for y in 0..size {
            for x in 0..size {
                let (sx, sy) = (src(x), src(y));
                assert_eq!(big.get(x, y), small.get(sx, sy), "size {size} ({x}, {y})");
            }
        }
    }
    // 64 → 512: every 8×8 block is one value.
    let (big, _) = cleanup(&noisy, K, &CleanupOptions { out_size: Some(512), ..MAP_PX });
    for y in 0..512 {
        for x in 0..512 {
            assert_eq!(big.get(x, y), big.get(x / 8 * 8, y / 8 * 8));
        }
    }
}

/// A map pixel of a non-square map going to a square covers a non-square block: the
/// island size follows its area and the radius its shorter side.
#[test]
fn cleanup_scales_by_each_side_of_a_non_square_map() {
    let opts = CleanupOptions { open_radius: 16, min_island: 256, out_size: Some(512), ..MAP_PX };
    // 64×32 → 512: a map pixel is 8 × 16 output pixels (128 px).
    assert_eq!(opts.scaled(64, 32), CleanupOptions { open_radius: 1, min_island: 2, ramps: true, out_size: None });
    assert_eq!(opts.scaled(32, 64), opts.scaled(64, 32));
    assert_eq!(opts.scaled(512, 512), CleanupOptions { out_size: None, ..opts });
    assert_eq!(opts.scaled(512, 256), CleanupOptions { open_radius: 8, min_island: 128, ramps: true, out_size: None });
    // Without a resize the settings stay as they are, square or not.
    let kept = CleanupOptions { out_size: None, ..opts };
    assert_eq!((kept.scaled(64, 32), kept.scaled(32, 64)), (kept, kept));
}

#[test]
fn cleanup_decode_raw_png_names_the_file_and_the_problem() {
    let classes = ClassTable::ai_hub();
    let rgb = crate::label::encode_png(2, 2, png::ColorType::Rgb, &[0; 12]);
    let err = decode_raw_png(&rgb, &classes, "maps/a.png").unwrap_err().to_string();
    assert!(err.contains("maps/a.png") && err.contains("grayscale"), "{err}");
    let err = decode_raw_png(b"not a png", &classes, "maps/b.png").unwrap_err().to_string();
    assert!(err.contains("maps/b.png") && err.contains("PNG"), "{err}");
    let gray = encode_raw_png(&[10, 11], 2, 1);
    let m = decode_raw_png(&gray, &classes, "maps/c.png").unwrap();
    assert_eq!(m.data, vec![0, UNKNOWN_INDEX]);
}

#[test]
fn cleanup_statistics_helpers_agree() {
    let clean = rectangles();
    assert_eq!(components(&clean, K).len(), 4);
    assert_eq!(island_count(&clean, K, 16), 0);
    assert_eq!(ramp_pixel_share(&clean, K), 0.0);
    // Ramps are not guaranteed gone where a seam sits at a junction of three regions that
    // the fill cannot make wide enough, but few are left.
    let (mut before, mut after) = (0.0, 0.0);
    for seed in 0..10 {
        let noisy = noisy_procedural(seed, 64);
        before += ramp_pixel_share(&noisy, K);
        after += ramp_pixel_share(&cleanup(&noisy, K, &MAP_PX).0, K);
    }
    assert!(before > 0.05 && after < before / 20.0, "ramp share before {before}, after {after} (sums over 10 maps)");
}

/// Timing in the current profile: `cargo test -p shared cleanup_timing -- --ignored --nocapture`.
#[test]
#[ignore]
fn cleanup_timing() {
    for (size, reps) in [(64u32, 50u32), (512, 5)] {
        let maps: Vec<LabelMap> = (0..reps as u64).map(|s| noisy_procedural(s, size)).collect();
        let start = std::time::Instant::now();
        let mut passes = 0;
        for m in &maps {
            passes += cleanup(m, K, &MAP_PX).1.passes;
        }
        let ms = start.elapsed().as_secs_f64() * 1000.0 / reps as f64;
        println!("cleanup {size}x{size} (procedural + 5% salt): {ms:.2} ms/map, {:.1} passes/map", passes as f64 / reps as f64);
    }
}

/// Fills the rectangle `[x0, x1) × [y0, y1)` of `m` with `v`.
fn fill(m: &mut LabelMap, x0: u32, x1: u32, y0: u32, y1: u32, v: u8) {
    for y in y0..y1 {
        for x in x0..x1 {
            m.set(x, y, v);
        }
    }
}

/// Whether every pixel of the rectangle holds `v`.
fn all_of(m: &LabelMap, x0: u32, x1: u32, y0: u32, y1: u32, v: u8) -> bool {
    (y0..y1).all(|y| (x0..x1).all(|x| m.get(x, y) == v))
}

/// Default settings on a real-like 512×512 map: 6-px roads and 12×12 buildings stay;
/// specks and a ramp seam go.
#[test]
fn cleanup_defaults_keep_real_roads_and_buildings_at_512() {
    let mut m = LabelMap::new(512, 512, 5);
    fill(&mut m, 0, 512, 100, 106, 2); // a 6-px road across
    fill(&mut m, 300, 306, 0, 512, 2); // and one down
    for (x, y) in [(40, 40), (150, 300), (400, 420)] {
        fill(&mut m, x, x + 12, y, y + 12, 0); // 12×12 buildings
    }
    let base = m.clone();
    // Specks: 9×9 of forest, 3×3 of bare land, single pixels of trees.
    fill(&mut m, 200, 209, 200, 209, 6);
    fill(&mut m, 450, 453, 50, 53, 7);
    for (x, y) in [(20, 400), (480, 480), (250, 30)] {
        m.set(x, y, 3);
    }
    // A ramp: 2 px of parking lot (1) between a building (0) and the road (2).
    fill(&mut m, 286, 298, 200, 212, 0);
    fill(&mut m, 298, 300, 200, 212, 1);
    let (out, report) = cleanup(&m, K, &CleanupOptions::default());
    for (x, y) in [(40, 40), (150, 300), (400, 420), (286, 200)] {
        assert!(all_of(&out, x, x + 12, y, y + 12, 0), "the building at ({x}, {y}) was damaged");
    }
    assert!(all_of(&out, 0, 512, 100, 106, 2) && all_of(&out, 300, 306, 0, 512, 2), "a road was damaged");
    let counts = out.class_counts(K);
    assert_eq!((counts[1], counts[3], counts[6], counts[7]), (0, 0, 0, 0), "specks or the ramp stayed: {counts:?}");
    assert_eq!(island_count(&out, K, DEFAULT_MIN_ISLAND), 0);
    assert!(report.islands_removed >= 5 && report.ramp_pixels_fixed > 0, "{report:?}");
    // Elsewhere nothing moved.
    let moved = out.data.iter().zip(&base.data).enumerate().filter(|&(i, (a, b))| a != b && !(286..300).contains(&(i as u32 % 512))).count();
    assert_eq!(moved, 0);
}

/// Default settings on a 64×64 model map upscaled to 512, as the pipeline and
/// `worker cleanup --size 512` do: a one-pixel road becomes 8 px wide, a 2×2 building
/// 16×16; a single-pixel speck (64 output px) and a ramp seam still go.
#[test]
fn cleanup_defaults_at_64_upscaled_to_512_keep_thin_roads_and_small_buildings() {
    let mut m = LabelMap::new(64, 64, 5);
    fill(&mut m, 0, 64, 20, 21, 2); // a one-pixel road
    fill(&mut m, 40, 42, 40, 42, 0); // a 2×2 building
    m.set(10, 50, 4); // a speck
    fill(&mut m, 5, 15, 30, 36, 0); // building | 2 px of parking lot | street trees: a ramp
    fill(&mut m, 15, 17, 30, 36, 1);
    fill(&mut m, 17, 27, 30, 36, 3);
    let opts = CleanupOptions { out_size: Some(512), ..Default::default() };
    assert_eq!(opts.scaled(64, 64), CleanupOptions { open_radius: 0, min_island: 2, ramps: true, out_size: None });
    let (out, _) = cleanup(&m, K, &opts);
    assert_eq!((out.width, out.height), (512, 512));
    assert!(all_of(&out, 0, 512, 160, 168, 2), "the road is 8 px wide at 512");
    assert!(all_of(&out, 320, 336, 320, 336, 0), "the building is 16×16 at 512");
    let counts = out.class_counts(K);
    assert_eq!((counts[1], counts[4]), (0, 0), "the ramp or the speck stayed: {counts:?}");
}
