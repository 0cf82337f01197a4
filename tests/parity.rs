//! The CPU backend against the float64 PyTorch reference (`python/reference.py`), on the
//! committed fixtures: relative Frobenius error ≤ 1e-5 for every flavor, with and without
//! classes, square and non-square grids, F32/BF16/F16 storage and Axon names.

mod common;

use common::{load_fixture, rel_error};
use linear_dit::{Device, Input, Model};

const TOLERANCE: f64 = 1e-5;

fn check(name: &str) {
    let f = load_fixture(name);
    let model = Model::new(&f.weights, Device::Cpu).unwrap();
    let mut input = Input::new(&f.x, &f.t).with_grid(f.grid);
    if let Some(y) = &f.y {
        input = input.with_labels(y);
    }
    let out = model.forward(&input).unwrap();
    assert_eq!(out.shape(), f.eps.shape(), "{name}: output shape");
    let err = rel_error(out.data(), f.eps.data());
    println!("{name}: relative error {err:.3e}");
    assert!(
        err <= TOLERANCE,
        "{name}: relative error {err:.3e} > {TOLERANCE:e}"
    );
}

#[test]
fn dit_unconditional() {
    check("dit_uncond");
}

#[test]
fn dit_with_classes_on_a_non_square_grid() {
    check("dit_class");
}

#[test]
fn dit_bf16_weights() {
    check("dit_bf16");
}

#[test]
fn edifice_unconditional() {
    check("edifice_uncond");
}

#[test]
fn edifice_with_classes_and_null_labels() {
    check("edifice_class");
}

#[test]
fn edifice_odd_hidden_size_f16_weights() {
    check("edifice_odd");
}

#[test]
fn edifice_axon_names_without_metadata() {
    check("edifice_axon");
}
