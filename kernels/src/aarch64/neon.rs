//! TODO: placeholder that forwards to the scalar twins until the intrinsics land.

use crate::{activation, dropout, embedding, lstm, softmax, vector};

pub(crate) fn exp_in_place(x: &mut [f32]) {
    activation::scalar::exp_in_place(x)
}
pub(crate) fn tanh_in_place(x: &mut [f32]) {
    activation::scalar::tanh_in_place(x)
}
pub(crate) fn sigmoid_in_place(x: &mut [f32]) {
    activation::scalar::sigmoid_in_place(x)
}
pub(crate) fn lstm_forward_row(
    hidden: usize,
    gates: &mut [f32],
    bias: &[f32],
    c_prev: &[f32],
    c: &mut [f32],
    h: &mut [f32],
    tanh_c: &mut [f32],
) {
    lstm::scalar::forward_row(hidden, 0, gates, bias, c_prev, c, h, tanh_c)
}
pub(crate) fn lstm_backward_row(
    hidden: usize,
    gates: &[f32],
    c_prev: &[f32],
    tanh_c: &[f32],
    dh: &[f32],
    dc: &mut [f32],
    dgates: &mut [f32],
) {
    lstm::scalar::backward_row(hidden, 0, gates, c_prev, tanh_c, dh, dc, dgates)
}
pub(crate) fn softmax_row_max_sum(row: &[f32]) -> (f32, f32) {
    softmax::scalar::row_max_sum(row)
}
pub(crate) fn softmax_row_gradient(row: &mut [f32], target: usize, max: f32, sum: f32, scale: f32) {
    softmax::scalar::row_gradient(row, target, max, sum, scale)
}
pub(crate) fn mul_in_place(x: &mut [f32], y: &[f32]) {
    dropout::scalar::mul_in_place(x, y)
}
pub(crate) fn add_in_place(dst: &mut [f32], src: &[f32]) {
    embedding::scalar::add_in_place(dst, src)
}
pub(crate) fn sgd_update(params: &mut [f32], grads: &[f32], lr: f32) {
    vector::scalar::sgd_update(params, grads, lr)
}
pub(crate) fn sum_squares(x: &[f32]) -> f64 {
    vector::scalar::sum_squares(x)
}
pub(crate) fn scale_in_place(x: &mut [f32], factor: f32) {
    vector::scalar::scale_in_place(x, factor)
}
