//! The demo model's assets (`assets/`, made by `python/train_digits.py`): the trained model,
//! the logistic-regression digit classifier that judges its samples, and real digits to
//! check the classifier (and our reading of images) against.

use linear_dit::tensor_file::TensorFile;
use linear_dit::{ConfigOverrides, Tensor, Weights};
use std::path::PathBuf;

/// `assets/<name>`.
pub fn asset(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join(name)
}

/// The trained demo model (config and image layout in its metadata).
pub fn demo_weights() -> Weights {
    Weights::load(asset("digits.safetensors"), &ConfigOverrides::default()).expect("demo model")
}

/// Multinomial logistic regression over 16×16 images in [−1, 1]: `argmax(W x + b)`.
pub struct Classifier {
    weight: Tensor,
    bias: Tensor,
}

impl Classifier {
    pub fn load() -> Self {
        let file = TensorFile::open(asset("digits_classifier.safetensors")).expect("classifier");
        let read = |n: &str| Tensor::from_raw(n, &file.tensor(n).expect(n)).expect(n);
        Self {
            weight: read("weight"),
            bias: read("bias"),
        }
    }

    /// The predicted class of every image of `[n, 1, 16, 16]`.
    pub fn classify(&self, images: &Tensor) -> Vec<usize> {
        let (classes, features) = (self.weight.shape()[0], self.weight.shape()[1]);
        assert_eq!(images.data().len() % features, 0, "images are not 16×16");
        images
            .data()
            .chunks(features)
            .map(|x| {
                let logit = |k: usize| {
                    let w = &self.weight.data()[k * features..(k + 1) * features];
                    self.bias.data()[k] + w.iter().zip(x).map(|(a, b)| a * b).sum::<f32>()
                };
                (0..classes)
                    .max_by(|&i, &j| logit(i).total_cmp(&logit(j)))
                    .expect("at least one class")
            })
            .collect()
    }

    /// The fraction of `images` classified as `labels`.
    pub fn accuracy(&self, images: &Tensor, labels: &[usize]) -> f64 {
        let predicted = self.classify(images);
        assert_eq!(predicted.len(), labels.len());
        let correct = predicted.iter().zip(labels).filter(|(p, l)| p == l).count();
        correct as f64 / labels.len() as f64
    }
}

/// Real digits (`images` `[n, 1, 16, 16]`, `labels`), 10 per class.
pub fn real_digits() -> (Tensor, Vec<usize>) {
    let file = TensorFile::open(asset("digits_real.safetensors")).expect("real digits");
    let images = Tensor::from_raw("images", &file.tensor("images").unwrap()).unwrap();
    let labels = file.tensor("labels").unwrap().to_i64_vec("labels").unwrap();
    (images, labels.into_iter().map(|l| l as usize).collect())
}
