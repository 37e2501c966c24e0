use super::*;
use shared::cleanup::island_count;
use shared::procedural::{generate_labels, ClassShares};
use shared::IGNORE_INDEX;

const X: u8 = IGNORE_INDEX;

fn map(width: u32, height: u32, data: Vec<u8>) -> LabelMap {
    assert_eq!(data.len(), (width * height) as usize);
    LabelMap { width, height, data }
}

fn stats_of(k: usize, opts: StatsOptions, maps: &[LabelMap]) -> LabelStats {
    let mut s = LabelStats::new(k, opts);
    for m in maps {
        s.add(m);
    }
    s
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn stats_of_a_set_against_itself_have_zero_distances() {
    let maps: Vec<LabelMap> = (0..6).map(|i| generate_labels(100 + i, 48, &ClassShares::default())).collect();
    let a = stats_of(8, StatsOptions::default(), &maps);
    // The same maps in another order, split across two partial sums.
    let mut b = stats_of(8, StatsOptions::default(), &[maps[5].clone(), maps[3].clone(), maps[1].clone()]);
    b.merge(&stats_of(8, StatsOptions::default(), &[maps[0].clone(), maps[4].clone(), maps[2].clone()]));
    assert_eq!(a, b);
    let d = compare(&a, &b);
    assert_eq!((d.share_tv, d.component_size_tv, d.adjacency_tv), (0.0, 0.0, 0.0));
    assert!(d.share_diff.iter().all(|&x| x == 0.0));
    assert_eq!(d.islands_per_map[0], d.islands_per_map[1]);
    assert_eq!(d.ramp_share[0], d.ramp_share[1]);
    assert!(a.pixels == 6 * 48 * 48 && a.components.iter().sum::<u64>() > 8, "{a:?}");

    // A different set is at a positive distance.
    let other: Vec<LabelMap> = (0..6).map(|i| generate_labels(200 + i, 48, &ClassShares::new([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]).unwrap())).collect();
    let d = compare(&a, &stats_of(8, StatsOptions::default(), &other));
    assert!(d.share_tv > 0.1 && d.adjacency_tv > 0.1 && d.component_size_tv > 0.0, "{d:?}");
}

#[test]
fn stats_count_planted_islands_exactly() {
    // 32×32 of class 0 with: three single pixels of class 1, a 2×2 block of class 2 (4 px),
    // a 4×4 block of class 1 (16 px, not an island at min_island 16) and two diagonal
    // pixels of class 3 (one 8-connected component, two 4-connected ones).
    let mut m = LabelMap::new(32, 32, 0);
    for (x, y) in [(3, 3), (20, 5), (10, 28)] {
        m.set(x, y, 1);
    }
    for (x, y) in [(25, 25), (26, 25), (25, 26), (26, 26)] {
        m.set(x, y, 2);
    }
    for y in 12..16 {
        for x in 12..16 {
            m.set(x, y, 1);
        }
    }
    m.set(5, 20, 3);
    m.set(6, 21, 3);

    let s = stats_of(4, StatsOptions { min_island: 16, connectivity: Connectivity::Eight }, std::slice::from_ref(&m));
    assert_eq!(s.islands, vec![0, 3, 1, 1]);
    assert_eq!(s.island_count(), 5);
    assert_eq!(s.island_count() as usize, island_count(&m, 4, 16), "8-connected islands are cleanup's islands");
    assert_eq!(s.components, vec![1, 4, 1, 1]);
    // Sizes 1, 1, 1 (bin 0) and 16 (bin 4) of class 1; 4 (bin 2) of class 2; 2 (bin 1) of 3.
    assert_eq!(&s.component_bins[1][..5], &[3, 0, 0, 0, 1]);
    assert_eq!(&s.component_bins[2][..3], &[0, 0, 1]);
    assert_eq!(&s.component_bins[3][..2], &[0, 1]);
    assert_eq!(s.component_bins[0][size_bin(1024 - 3 - 4 - 16 - 2)], 1);

    let four = stats_of(4, StatsOptions { min_island: 16, connectivity: Connectivity::Four }, std::slice::from_ref(&m));
    assert_eq!(four.islands, vec![0, 3, 1, 2]);
    assert_eq!(stats_of(4, StatsOptions { min_island: 17, connectivity: Connectivity::Eight }, std::slice::from_ref(&m)).islands, vec![0, 4, 1, 1]);
    assert_eq!(stats_of(4, StatsOptions { min_island: 0, connectivity: Connectivity::Eight }, std::slice::from_ref(&m)).island_count(), 0);

    // Two maps: per map mean; islands make a clean map's set differ.
    let clean = LabelMap::new(32, 32, 0);
    let both = stats_of(4, StatsOptions::default(), &[m.clone(), clean.clone()]);
    assert!(close(both.islands_per_map(), 2.5));
    let d = compare(&stats_of(4, StatsOptions::default(), &[clean.clone(), clean]), &both);
    assert_eq!(d.islands_per_map, [0.0, 2.5]);
    assert!(d.component_size_tv > 0.0 && d.share_tv > 0.0);
}

#[test]
fn stats_adjacency_of_a_two_class_map_is_hand_computed() {
    // 0 0 1
    // 0 1 1
    // Horizontal pairs: (0,0) (0,1) | (0,1) (1,1): 2 borders; vertical: (0,0) (0,1) (1,1):
    // 1 border. 3 bordering pairs, each counted as (0,1) and (1,0).
    let s = stats_of(2, StatsOptions::default(), &[map(3, 2, vec![0, 0, 1, 0, 1, 1])]);
    assert_eq!(s.adjacency, vec![0, 3, 3, 0]);
    assert_eq!(s.adjacency_shares(), vec![0.0, 0.5, 0.5, 0.0]);

    // Three classes: 0 1 / 2 2 → pairs (0,1) 1, (0,2) 1, (1,2) 1, (2,2) none.
    //     0 1 2
    //     0 . 1 2
    //     1 1 . 1
    //     2 2 1 .   of 6 ordered counts → 1/6 each off the diagonal.
    let s = stats_of(3, StatsOptions::default(), &[map(2, 2, vec![0, 1, 2, 2])]);
    assert_eq!(s.adjacency, vec![0, 1, 1, 1, 0, 1, 1, 1, 0]);
    // 0 0 0 / 0 1 0 / 0 0 2: class 1 borders 0 four times, class 2 borders 0 twice.
    let s = stats_of(3, StatsOptions::default(), &[map(3, 3, vec![0, 0, 0, 0, 1, 0, 0, 0, 2])]);
    assert_eq!(s.adjacency, vec![0, 4, 2, 4, 0, 0, 2, 0, 0]);
    let a = s.adjacency_shares();
    assert!(close(a[1], 4.0 / 12.0) && close(a[2], 2.0 / 12.0) && close(a[6], 2.0 / 12.0), "{a:?}");

    // TV between the two 3-class matrices: |1/6 - 1/3| twice, |1/6 - 1/6| twice,
    // |1/6 - 0| twice → ½ (2/6 + 0 + 2/6) = 1/3.
    let t = stats_of(3, StatsOptions::default(), &[map(2, 2, vec![0, 1, 2, 2])]);
    assert!(close(compare(&t, &s).adjacency_tv, 1.0 / 3.0));
}

#[test]
fn stats_share_tv_is_hand_computed() {
    // Real: 2 px of 0, 2 px of 1 → [½, ½, 0]. Synthetic: 1, 1, 2 px → [¼, ¼, ½].
    // TV = ½ (¼ + ¼ + ½) = ½.
    let real = stats_of(3, StatsOptions::default(), &[map(2, 2, vec![0, 0, 1, 1])]);
    let synthetic = stats_of(3, StatsOptions::default(), &[map(4, 1, vec![0, 1, 2, 2])]);
    assert_eq!(real.class_shares(), vec![0.5, 0.5, 0.0]);
    let d = compare(&real, &synthetic);
    assert!(close(d.share_tv, 0.5), "{d:?}");
    assert_eq!(d.share_diff, vec![-0.25, -0.25, 0.5]);
    assert_eq!(tv(&[1.0, 0.0], &[0.0, 1.0]), 1.0);
    // Class 2: only the synthetic set has it → TV 1 for that class.
    assert_eq!(d.component_size_tv_per_class[2], Some(1.0));
}

#[test]
fn stats_leave_ignore_pixels_out() {
    // 0 0 X
    // X 1 1
    // 0 X 1
    let m = map(3, 3, vec![0, 0, X, X, 1, 1, 0, X, 1]);
    let s = stats_of(2, StatsOptions { min_island: 3, connectivity: Connectivity::Eight }, std::slice::from_ref(&m));
    assert_eq!((s.pixels, s.ignore_pixels, s.class_pixels.clone()), (6, 3, vec![3, 3]));
    assert_eq!(s.class_shares(), vec![0.5, 0.5]);
    // Only the vertical pair (1,0)-(1,1) borders; every pair with an ignore pixel is skipped.
    assert_eq!(s.adjacency, vec![0, 1, 1, 0]);
    // Class 0: {(0,0),(1,0)} and {(0,2)} (ignore pixels split it); class 1: one of 3.
    assert_eq!(s.components, vec![2, 1]);
    assert_eq!(s.islands, vec![2, 0]);
    assert_eq!(s.ramp_pixels, 0);

    // Any value >= k counts as ignore: the same map with 2 instead of 255 (k = 2) gives the
    // same statistics.
    let twos = map(3, 3, m.data.iter().map(|&v| if v == X { 2 } else { v }).collect());
    assert_eq!(stats_of(2, StatsOptions { min_island: 3, connectivity: Connectivity::Eight }, &[twos]), s);
    // A map of ignore pixels only: no class pixels, components or borders.
    let all_ignore = stats_of(2, StatsOptions::default(), &[map(2, 2, vec![X; 4])]);
    assert_eq!((all_ignore.pixels, all_ignore.components.clone(), all_ignore.adjacency.clone()), (0, vec![0, 0], vec![0; 4]));
    assert_eq!(all_ignore.class_shares(), vec![0.0, 0.0]);

    // Ramp share is over class pixels: 0 1 2 2 with one ignore pixel appended.
    let r = stats_of(3, StatsOptions::default(), &[map(5, 1, vec![0, 1, 2, 2, X])]);
    assert_eq!(r.ramp_pixels, 1);
    assert!(close(r.ramp_share(), 1.0 / 4.0));
}

#[test]
fn stats_serialise_counts_and_normalised_figures() {
    let s = stats_of(2, StatsOptions::default(), &[map(3, 2, vec![0, 0, 1, 0, 1, 1])]);
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["maps"], 1);
    assert_eq!(v["class_shares"], serde_json::json!([0.5, 0.5]));
    assert_eq!(v["adjacency_pairs"], serde_json::json!([[0, 3], [3, 0]]));
    assert_eq!(v["adjacency"], serde_json::json!([[0.0, 0.5], [0.5, 0.0]]));
    assert_eq!(v["connectivity"], 8);
    // Both classes have one 3-pixel component (8-connected): bin 1 is the highest in use.
    assert_eq!(v["size_bin_min"], serde_json::json!([1, 2]));
    assert_eq!(v["component_bins"], serde_json::json!([[0, 1], [0, 1]]));
    assert_eq!(v["sizes"], serde_json::json!([{"width": 3, "height": 2, "maps": 1}]));
    assert_eq!(s.most_common_size(), Some((3, 2)));
}
