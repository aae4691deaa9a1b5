"""Check numpy_rnnlm.py against torch_rnnlm.py on a tiny model; exit 1 on a mismatch.

Both models start from the same weights and see the same ids and dropout
masks. Two training windows run back to back (state carried): the first with
variational masks and a gradient norm above the clip threshold, the second
with standard masks and no clipping. After each, the loss, the gradient norm
before clipping, every gradient after clipping, every updated parameter and
the final h and c must agree. Then both score one short split with the
evaluation layout (padded streams), and the NLL sums and token counts must
agree. The whole check runs in float64, where only rounding separates the
two, and again in float32. Last, the NumPy model must reproduce the PyTorch
fixture of the Rust tests, rnnlm/tests/fixtures/tiny_lstm.safetensors.

Usage: .venv/bin/python bench-suite/reference/check_numpy_vs_torch.py
"""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file

import corpus
import numpy_rnnlm
import torch_rnnlm

VOCAB, HIDDEN, LAYERS, BATCH, STEPS = 13, 8, 2, 3, 5
DROPOUT = 0.3
# Below the first window's gradient norm (about 0.2 at these sizes), so clipping runs.
CLIP = 0.1
LR = 1.0
EVAL_TOKENS, EVAL_BATCH = 37, 4

FIXTURE = Path(__file__).resolve().parents[2] / "rnnlm" / "tests" / "fixtures" / "tiny_lstm.safetensors"

# (rtol, atol) per dtype. Float64 differences come only from summation
# order. Float32 ones measured about 1e-7 relative here, and 1e-4 leaves
# room for other BLAS builds.
TOLERANCES = {np.float64: (1e-9, 1e-12), np.float32: (1e-4, 1e-6)}


def options():
    return SimpleNamespace(
        hidden=HIDDEN, layers=LAYERS, dropout=DROPOUT, dropout_mode="variational",
        init="uniform", init_range=0.5, clip=CLIP, seed=0,
    )


def copy_torch_weights(torch_model, numpy_model):
    """Set the NumPy model's parameters from the PyTorch model's, converting layouts."""
    params = iter(numpy_model.params)
    next(params)[...] = torch_model.encoder.weight.detach().numpy()
    for lstm in torch_model.rnn:
        next(params)[...] = lstm.weight_ih_l0.detach().numpy().T
        next(params)[...] = lstm.weight_hh_l0.detach().numpy().T
        next(params)[...] = (lstm.bias_ih_l0 + lstm.bias_hh_l0).detach().numpy()
    next(params)[...] = torch_model.decoder.bias.detach().numpy()


def torch_in_numpy_layout(torch_model, grads):
    """Return the model's parameters (or gradients) as (name, array) pairs in NumPy's order.

    The NumPy model's single bias is bias_ih + bias_hh, and its gradient is
    bias_ih's (torch_rnnlm freezes bias_hh, so it has none).
    """
    def value(tensor):
        return (tensor.grad if grads else tensor).detach().numpy()

    pairs = [("encoder.weight", value(torch_model.encoder.weight))]
    for layer, lstm in enumerate(torch_model.rnn):
        bias = lstm.bias_ih_l0.grad if grads else lstm.bias_ih_l0 + lstm.bias_hh_l0
        pairs += [
            (f"rnn.{layer}.weight_ih^T", value(lstm.weight_ih_l0).T),
            (f"rnn.{layer}.weight_hh^T", value(lstm.weight_hh_l0).T),
            (f"rnn.{layer}.bias", bias.detach().numpy()),
        ]
    pairs.append(("decoder.bias", value(torch_model.decoder.bias)))
    return pairs


class Comparison:
    def __init__(self, dtype):
        self.dtype = dtype
        self.rtol, self.atol = TOLERANCES[dtype]
        self.failures = 0

    def check(self, description, expected, actual):
        expected = np.asarray(expected, dtype=np.float64)
        actual = np.asarray(actual, dtype=np.float64)
        if expected.shape != actual.shape:
            print(f"FAIL {description}: shape {actual.shape}, expected {expected.shape}")
            self.failures += 1
            return
        diff = float(np.max(np.abs(expected - actual))) if expected.size else 0.0
        ok = np.allclose(actual, expected, rtol=self.rtol, atol=self.atol)
        print(f"{'ok  ' if ok else 'FAIL'} {description}: max abs diff {diff:.3e}")
        self.failures += not ok

    def require(self, description, condition):
        print(f"{'ok  ' if condition else 'FAIL'} {description}")
        self.failures += not condition


def compare_window(comparison, label, torch_trainer, numpy_trainer, inputs, targets, masks):
    torch_loss, torch_norm = torch_trainer.train_window(inputs, targets, LR, masks)
    numpy_loss, numpy_norm = numpy_trainer.train_window(inputs, targets, LR, masks)
    comparison.check(f"{label} loss", torch_loss, numpy_loss)
    comparison.check(f"{label} gradient norm", torch_norm, numpy_norm)

    torch_model = torch_trainer.model
    numpy_model = numpy_trainer.model
    for layer, lstm in enumerate(torch_model.rnn):
        comparison.require(f"{label} torch bias_hh of layer {layer} still zero",
                           not torch.any(lstm.bias_hh_l0))
    for (name, expected), actual in zip(torch_in_numpy_layout(torch_model, True), numpy_model.grads):
        comparison.check(f"{label} grad {name}", expected, actual)
    for (name, expected), actual in zip(torch_in_numpy_layout(torch_model, False), numpy_model.params):
        comparison.check(f"{label} updated {name}", expected, actual)
    for layer, ((h, c), lstm) in enumerate(zip(torch_trainer.state, numpy_model.lstms)):
        comparison.check(f"{label} h of layer {layer}", h[0].numpy(), lstm.h)
        comparison.check(f"{label} c of layer {layer}", c[0].numpy(), lstm.c)
    return torch_norm


def run_check(dtype):
    print(f"--- {np.dtype(dtype).name}")
    comparison = Comparison(dtype)
    args = options()
    torch_trainer = torch_rnnlm.build_trainer(args, VOCAB, getattr(torch, np.dtype(dtype).name))
    numpy_trainer = numpy_rnnlm.build_trainer(args, VOCAB, dtype)
    copy_torch_weights(torch_trainer.model, numpy_trainer.model)

    rng = np.random.default_rng(7)
    streams = rng.integers(0, VOCAB, size=(BATCH, 2 * STEPS + 1), dtype=np.int64)
    windows = list(corpus.train_windows(streams, STEPS))
    keep = 1.0 - DROPOUT

    variational = [(rng.random((BATCH, 1, HIDDEN)) < keep) / keep for _ in range(LAYERS + 1)]
    norm = compare_window(comparison, "window 1", torch_trainer, numpy_trainer, *windows[0],
                          [mask.astype(dtype) for mask in variational])
    comparison.require(f"window 1 gradient norm {norm:.3f} > clip {CLIP}, so clipping ran",
                       norm > CLIP)

    torch_trainer.clip = numpy_trainer.clip = 1e6
    standard = [(rng.random((BATCH, STEPS, HIDDEN)) < keep) / keep for _ in range(LAYERS + 1)]
    compare_window(comparison, "window 2", torch_trainer, numpy_trainer, *windows[1],
                   [mask.astype(dtype) for mask in standard])

    split = rng.integers(0, VOCAB, size=EVAL_TOKENS, dtype=np.int64)
    inputs, targets = corpus.eval_streams(split, EVAL_BATCH, eos=0)
    totals = []
    for trainer in (torch_trainer, numpy_trainer):
        trainer.reset_state()
        nll_sum, count = 0.0, 0
        for window in corpus.eval_windows(inputs, targets, STEPS):
            nll, predicted = trainer.eval_window(*window)
            nll_sum += nll
            count += predicted
        totals.append((nll_sum, count))
    comparison.check("evaluation NLL sum", totals[0][0], totals[1][0])
    comparison.require(f"evaluation counts {totals[0][1]} and {totals[1][1]} both {EVAL_TOKENS}",
                       totals[0][1] == totals[1][1] == EVAL_TOKENS)
    return comparison.failures


def check_mask_draws():
    """Check the masks each implementation draws itself: shape, values, keep rate."""
    print("--- dropout masks")
    comparison = Comparison(np.float64)
    keep = 1.0 - DROPOUT
    steps, batch, hidden = 6, 50, 40

    drop = numpy_rnnlm.TimeDropout(DROPOUT, True, np.random.default_rng(3))
    numpy_mask = drop.forward(np.ones((batch, steps, hidden), dtype=np.float32))
    comparison.require("numpy variational mask equal at every step",
                       bool(np.all(numpy_mask == numpy_mask[:, :1, :])))
    drop = numpy_rnnlm.TimeDropout(DROPOUT, False, np.random.default_rng(3))
    numpy_standard = drop.forward(np.ones((batch, steps, hidden), dtype=np.float32))
    comparison.require("numpy standard mask differs between steps",
                       bool(np.any(numpy_standard != numpy_standard[:, :1, :])))

    model = torch_rnnlm.RNNModel(VOCAB, hidden, LAYERS, DROPOUT, "variational")
    torch_masks = [mask.numpy() for mask in model.draw_masks(steps, batch)]
    comparison.require(f"torch variational masks are (1, B, H) x {LAYERS + 1}",
                       [mask.shape for mask in torch_masks] == [(1, batch, hidden)] * (LAYERS + 1))
    model.dropout_mode = "standard"
    torch_standard = model.draw_masks(steps, batch)[0].numpy()
    comparison.require("torch standard mask is (T, B, H)", torch_standard.shape == (steps, batch, hidden))

    # 2000 draws per mask: the kept fraction has a standard deviation of about 0.01.
    for name, mask in (("numpy", numpy_mask[:, 0, :]), ("torch", torch_masks[0])):
        kept_values = mask[mask != 0]
        comparison.require(f"{name} mask values are 0 and 1/(1-p)",
                           np.allclose(kept_values, 1 / keep, rtol=1e-6, atol=0))
        comparison.require(f"{name} kept fraction {np.mean(mask > 0):.3f} within 0.05 of {keep}",
                           abs(np.mean(mask > 0) - keep) < 0.05)
    return comparison.failures


def check_fixture():
    """Check the Rust tests' PyTorch fixture against the NumPy model in float64.

    This also checks the layout conversion the Rust model relies on: a single
    bias equal to bias_ih + bias_hh, whose gradient is grad.rnn.bias_ih.
    """
    print(f"--- {FIXTURE.name}")
    tensors = load_file(FIXTURE)
    config = json.loads(safe_open(FIXTURE, "np").metadata()["fixture"])
    comparison = Comparison(np.float64)
    # The fixture is float32 rounded from float64, so agreement is limited to
    # float32 rounding of values up to about 2.5 (the loss).
    comparison.rtol, comparison.atol = 1e-6, 1e-7

    model = numpy_rnnlm.BetterRnnlm(config["vocab"], config["hidden"], config["layers"], 0.0, True,
                                    "uniform", 0.1, np.random.default_rng(0), np.float64)
    params = iter(model.params)
    next(params)[...] = tensors["encoder.weight"]
    for layer in range(config["layers"]):
        next(params)[...] = tensors[f"rnn.weight_ih_l{layer}"].T
        next(params)[...] = tensors[f"rnn.weight_hh_l{layer}"].T
        next(params)[...] = (tensors[f"rnn.bias_ih_l{layer}"].astype(np.float64)
                             + tensors[f"rnn.bias_hh_l{layer}"])
    next(params)[...] = tensors["decoder.bias"]

    logits = model.predict(tensors["input_ids"], train=False)
    model.reset_state()
    loss = model.forward(tensors["input_ids"], tensors["target_ids"], train=False)
    model.backward()

    comparison.check("fixture logits", tensors["logits"], logits)
    comparison.check("fixture loss", tensors["loss"], loss)
    comparison.check("fixture h_n", tensors["h_n"], np.stack([lstm.h for lstm in model.lstms]))
    comparison.check("fixture c_n", tensors["c_n"], np.stack([lstm.c for lstm in model.lstms]))
    grads = iter(model.grads)
    comparison.check("fixture grad.encoder.weight", tensors["grad.encoder.weight"], next(grads))
    for layer in range(config["layers"]):
        comparison.check(f"fixture grad.rnn.weight_ih_l{layer}",
                         tensors[f"grad.rnn.weight_ih_l{layer}"].T, next(grads))
        comparison.check(f"fixture grad.rnn.weight_hh_l{layer}",
                         tensors[f"grad.rnn.weight_hh_l{layer}"].T, next(grads))
        bias_grad = next(grads)
        comparison.check(f"fixture grad.rnn.bias_ih_l{layer}", tensors[f"grad.rnn.bias_ih_l{layer}"], bias_grad)
        comparison.check(f"fixture grad.rnn.bias_hh_l{layer}", tensors[f"grad.rnn.bias_hh_l{layer}"], bias_grad)
    comparison.check("fixture grad.decoder.bias", tensors["grad.decoder.bias"], next(grads))
    return comparison.failures


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    failures = check_mask_draws()
    failures += sum(run_check(dtype) for dtype in (np.float64, np.float32))
    failures += check_fixture()
    if failures:
        print(f"{failures} checks failed")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
