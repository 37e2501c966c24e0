//! [`SegNet`]: the whole network, and [`SegNetConfig`].

use burn::module::Module;
use burn::prelude::*;

use super::aggregation::{aggregation, Aggregation};
use super::detail::{detail_branch, DetailBranch};
use super::head::{seg_head, SegHead};
use super::semantic::{semantic_branch, SemanticBranch};

/// A BiSeNet V2-style real-time segmentation network. `width` is the detail branch's first
/// channel count C (BiSeNet V2: 64); every other width follows from it (detail C, C, 2C;
/// semantic C/4 … 2C; aggregation 2C; head hidden 2C).
#[derive(Config, Debug, PartialEq)]
pub struct SegNetConfig {
    /// Classes K (logit channels).
    pub num_classes: usize,
    #[config(default = 32)]
    pub width: usize,
}

#[derive(Module, Debug)]
pub struct SegNet<B: Backend> {
    pub detail: DetailBranch<B>,
    pub semantic: SemanticBranch<B>,
    pub aggregation: Aggregation<B>,
    pub head: SegHead<B>,
}

impl SegNetConfig {
    /// Checks the class count and width.
    pub fn validate(&self) -> Result<(), String> {
        if self.num_classes < 2 || self.num_classes > 255 {
            return Err(format!("num_classes {}: must be between 2 and 255", self.num_classes));
        }
        if self.width < 2 {
            return Err(format!("width {}: must be at least 2", self.width));
        }
        Ok(())
    }

    /// # Panics
    /// If [`SegNetConfig::validate`] fails.
    pub fn init<B: Backend>(&self, device: &B::Device) -> SegNet<B> {
        if let Err(e) = self.validate() {
            panic!("SegNetConfig: {e}");
        }
        let c = 2 * self.width;
        assert_eq!(SemanticBranch::<B>::out_channels(self.width), c);
        SegNet {
            detail: detail_branch(3, self.width, device),
            semantic: semantic_branch(3, self.width, device),
            aggregation: aggregation(c, device),
            head: seg_head(c, c, self.num_classes, device),
        }
    }
}

impl<B: Backend> SegNet<B> {
    /// Images `[b, 3, h, w]` (any size; `[-1, 1]`) → logits `[b, K, h, w]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [_, _, h, w] = x.dims();
        let d = self.detail.forward(x.clone());
        let s = self.semantic.forward(x);
        self.head.forward(self.aggregation.forward(d, s), [h, w])
    }

    /// Images `[b, 3, h, w]` → one feature vector per image `[b, 2·width]`: the
    /// aggregation output (what the head classifies) averaged over its pixels. What
    /// `eval utility` measures the distance between image sets in.
    pub fn features(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let d = self.detail.forward(x.clone());
        let s = self.semantic.forward(x);
        let a = self.aggregation.forward(d, s);
        let [b, c, _, _] = a.dims();
        a.mean_dim(3).mean_dim(2).reshape([b, c])
    }
}
