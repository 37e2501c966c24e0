//! Segmentation metrics from a confusion matrix: per-class IoU, mIoU, pixel accuracy.

use serde::{Deserialize, Serialize};
use shared::LabelMap;

/// `K × K` pixel counts, row = true class, column = predicted class. Pixels whose truth is
/// not a class (`>= K`, e.g. [`shared::IGNORE_INDEX`]) are skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    pub k: usize,
    /// Row-major, `counts[truth * k + prediction]`.
    pub counts: Vec<u64>,
    /// Pixels skipped because their truth was ignore.
    pub ignored: u64,
}

impl ConfusionMatrix {
    pub fn new(k: usize) -> Self {
        ConfusionMatrix { k, counts: vec![0; k * k], ignored: 0 }
    }

    pub fn get(&self, truth: usize, prediction: usize) -> u64 {
        self.counts[truth * self.k + prediction]
    }

    /// Adds one pixel pair; a truth `>= K` is counted as ignored.
    ///
    /// # Panics
    /// If a labelled pixel's prediction is not a class.
    pub fn add_pixel(&mut self, truth: u8, prediction: u8) {
        let (t, p) = (truth as usize, prediction as usize);
        if t >= self.k {
            self.ignored += 1;
            return;
        }
        assert!(p < self.k, "prediction {p} is not one of {} classes", self.k);
        self.counts[t * self.k + p] += 1;
    }

    /// Adds a map pair.
    ///
    /// # Panics
    /// If the maps differ in size.
    pub fn add(&mut self, truth: &LabelMap, prediction: &LabelMap) {
        assert_eq!((truth.width, truth.height), (prediction.width, prediction.height), "truth and prediction differ in size");
        for (&t, &p) in truth.data.iter().zip(&prediction.data) {
            self.add_pixel(t, p);
        }
    }

    pub fn merge(&mut self, other: &ConfusionMatrix) {
        assert_eq!(self.k, other.k);
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.ignored += other.ignored;
    }

    /// Labelled pixels counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// IoU of class `c`: TP / (TP + FP + FN); `None` when the truth has no pixel of the
    /// class. The classes averaged are then those of the truth alone, the same for every
    /// network scored on one test set: a class a network predicts but the truth lacks does
    /// not enter its mean as a 0 that another network's mean does not hold (its pixels
    /// still lower the IoU of the true classes they were taken from).
    pub fn iou(&self, c: usize) -> Option<f64> {
        let tp = self.get(c, c);
        let row: u64 = (0..self.k).map(|p| self.get(c, p)).sum();
        let col: u64 = (0..self.k).map(|t| self.get(t, c)).sum();
        (row > 0).then(|| tp as f64 / (row + col - tp) as f64)
    }

    /// Per-class IoU.
    pub fn ious(&self) -> Vec<Option<f64>> {
        (0..self.k).map(|c| self.iou(c)).collect()
    }

    /// Mean IoU over the classes of the truth ([`Self::iou`]); `None` if it has none.
    pub fn miou(&self) -> Option<f64> {
        let v: Vec<f64> = self.ious().into_iter().flatten().collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    /// Correct labelled pixels over labelled pixels; `None` with no labelled pixel.
    pub fn pixel_accuracy(&self) -> Option<f64> {
        let total = self.total();
        (total > 0).then(|| (0..self.k).map(|c| self.get(c, c)).sum::<u64>() as f64 / total as f64)
    }

    /// Pixels of each true class.
    pub fn truth_counts(&self) -> Vec<u64> {
        (0..self.k).map(|t| (0..self.k).map(|p| self.get(t, p)).sum()).collect()
    }
}

/// The confusion matrix of predicting `class` everywhere.
pub fn constant_prediction(truth: &[LabelMap], k: usize, class: u8) -> ConfusionMatrix {
    let mut m = ConfusionMatrix::new(k);
    for t in truth {
        for &v in &t.data {
            m.add_pixel(v, class);
        }
    }
    m
}

/// The most frequent class of `maps` (ignore pixels not counted; ties: the lower index).
pub fn majority_class(maps: &[LabelMap], k: usize) -> u8 {
    let mut counts = vec![0u64; k];
    for m in maps {
        for (c, n) in m.class_counts(k).into_iter().enumerate() {
            counts[c] += n;
        }
    }
    let mut best = 0;
    for c in 1..k {
        if counts[c] > counts[best] {
            best = c;
        }
    }
    best as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::IGNORE_INDEX;

    fn map(data: Vec<u8>) -> LabelMap {
        LabelMap { width: data.len() as u32, height: 1, data }
    }

    /// 3 classes; class 2 is in neither truth nor prediction; two ignore pixels.
    ///
    /// truth      0 0 0 1 1 I I
    /// prediction 0 0 1 1 0 2 0
    ///
    /// Confusion (row truth): [[2, 1, 0], [1, 1, 0], [0, 0, 0]]; ignored 2 (their
    /// predictions, even class 2, count nowhere).
    /// IoU 0 = 2 / (3 + 3 - 2) = 0.5; IoU 1 = 1 / (2 + 2 - 1) = 1/3; IoU 2 undefined.
    /// mIoU = (0.5 + 1/3) / 2; pixel accuracy = 3/5.
    #[test]
    fn seg_metrics_hand_computed() {
        let i = IGNORE_INDEX;
        let mut m = ConfusionMatrix::new(3);
        m.add(&map(vec![0, 0, 0, 1, 1, i, i]), &map(vec![0, 0, 1, 1, 0, 2, 0]));
        assert_eq!(m.counts, vec![2, 1, 0, 1, 1, 0, 0, 0, 0]);
        assert_eq!((m.ignored, m.total()), (2, 5));
        let ious = m.ious();
        assert!((ious[0].unwrap() - 0.5).abs() < 1e-12);
        assert!((ious[1].unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(ious[2], None, "a class absent from truth and prediction has no IoU");
        assert!((m.miou().unwrap() - (0.5 + 1.0 / 3.0) / 2.0).abs() < 1e-12);
        assert!((m.pixel_accuracy().unwrap() - 0.6).abs() < 1e-12);

        // A class predicted but absent from the truth has no IoU and stays out of the mean
        // (so networks scored on one test set average the same classes); its pixel still
        // costs the true class it was taken from.
        let mut m2 = ConfusionMatrix::new(3);
        m2.add(&map(vec![0, 0]), &map(vec![0, 2]));
        assert_eq!(m2.ious(), vec![Some(0.5), None, None]);
        assert!((m2.miou().unwrap() - 0.5).abs() < 1e-12);

        // Merging is adding.
        let mut sum = m.clone();
        sum.merge(&m2);
        assert_eq!(sum.counts, vec![3, 1, 1, 1, 1, 0, 0, 0, 0]);
        assert_eq!(sum.ignored, 2);

        // Nothing labelled: nothing defined.
        let mut e = ConfusionMatrix::new(2);
        e.add(&map(vec![i, i]), &map(vec![0, 1]));
        assert_eq!((e.miou(), e.pixel_accuracy(), e.ignored), (None, None, 2));
    }

    #[test]
    fn seg_majority_baseline() {
        let truth = vec![map(vec![1, 1, 0, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX])];
        assert_eq!(majority_class(&truth, 3), 1);
        let m = constant_prediction(&truth, 3, 1);
        // IoU 0 = 0, IoU 1 = 2/3, class 2 undefined.
        assert_eq!(m.ious(), vec![Some(0.0), Some(2.0 / 3.0), None]);
    }
}
