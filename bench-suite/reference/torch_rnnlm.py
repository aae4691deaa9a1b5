"""PyTorch reference of the rnnlm model, for throughput and accuracy comparisons.

The model: an embedding E of (V, H); L stacked LSTM layers of size H
(torch.nn.LSTM, gate order i, f, g, o); logits = y E^T + b_out with the
decoder weight tied to E. Dropout is inverted and sits at L + 1 sites: the
embedding output, between layers, and before the output projection. The
default variational mode draws one (B, H) mask per site per window and
shares it across the window's T steps. Standard mode draws a fresh mask for
every element of every step. Training is SGD on the mean cross-entropy, with the gradient
clipped to a global L2 norm (the tied matrix counted once, its embedding and
projection gradients summed).

Each layer is its own single-layer nn.LSTM because nn.LSTM's built-in dropout
between layers draws per element and step, which is not variational. Each
layer's bias_hh stays frozen at zero, so bias_ih is the layer's one bias b of
the model: with both trainable, SGD would move their sum twice as fast and
the clipping norm would count the bias gradient twice.

Usage (prints one JSON line):
    .venv/bin/python bench-suite/reference/torch_rnnlm.py --mode train --threads 2
One epoch of the default recipe, printing the validation perplexity:
    .venv/bin/python bench-suite/reference/torch_rnnlm.py --epochs 1 --data DIR --threads 2
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

import corpus
import driver


class RNNModel(nn.Module):
    """Embedding, stacked LSTM layers and the tied output projection.

    Tensors are sequence-first: ids are (T, B) and logits (T, B, V).
    """

    def __init__(self, vocab, hidden, layers, dropout, dropout_mode):
        super().__init__()
        self.hidden = hidden
        self.dropout = dropout
        self.dropout_mode = dropout_mode
        self.encoder = nn.Embedding(vocab, hidden)
        self.rnn = nn.ModuleList(nn.LSTM(hidden, hidden) for _ in range(layers))
        self.decoder = nn.Linear(hidden, vocab)
        self.decoder.weight = self.encoder.weight
        for lstm in self.rnn:
            lstm.bias_hh_l0.requires_grad_(False)

    def init_weights(self, scheme, init_range):
        """Initialise with the book's scheme or with U(-r, r) for every weight; biases 0."""
        with torch.no_grad():
            for lstm in self.rnn:
                if scheme == "book":
                    lstm.weight_ih_l0.normal_(0.0, 1.0 / math.sqrt(lstm.input_size))
                    lstm.weight_hh_l0.normal_(0.0, 1.0 / math.sqrt(self.hidden))
                else:
                    lstm.weight_ih_l0.uniform_(-init_range, init_range)
                    lstm.weight_hh_l0.uniform_(-init_range, init_range)
                lstm.bias_ih_l0.zero_()
                lstm.bias_hh_l0.zero_()
            if scheme == "book":
                self.encoder.weight.normal_(0.0, 0.01)
            else:
                self.encoder.weight.uniform_(-init_range, init_range)
            self.decoder.bias.zero_()

    def zero_state(self, batch):
        """Zero (h, c) for every layer, each of shape (1, B, H)."""
        weight = self.encoder.weight
        return [
            (weight.new_zeros(1, batch, self.hidden), weight.new_zeros(1, batch, self.hidden))
            for _ in self.rnn
        ]

    def draw_masks(self, steps, batch):
        """Draw one inverted-dropout mask per site: (1, B, H) variational, (T, B, H) standard."""
        keep = 1.0 - self.dropout
        rows = 1 if self.dropout_mode == "variational" else steps
        weight = self.encoder.weight
        return [
            weight.new_empty(rows, batch, self.hidden).bernoulli_(keep).div_(keep)
            for _ in range(len(self.rnn) + 1)
        ]

    def forward(self, ids, state, masks=None):
        """Return logits (T, B, V) and the new state for ids (T, B).

        In training mode with dropout > 0, masks are drawn here unless given.
        """
        if masks is None and self.training and self.dropout > 0.0:
            masks = self.draw_masks(*ids.shape)

        x = self.encoder(ids)
        new_state = []
        for layer, lstm in enumerate(self.rnn):
            if masks is not None:
                x = x * masks[layer]
            x, layer_state = lstm(x, state[layer])
            new_state.append(layer_state)

        if masks is not None:
            x = x * masks[-1]
        return self.decoder(x), new_state


class TorchTrainer:
    """The trainer interface of driver.py around an RNNModel.

    Ids come in batch-major (B, T) numpy arrays, as the driver uses, and are
    transposed to the model's sequence-first layout here.
    """

    def __init__(self, model, clip):
        self.model = model
        self.clip = clip
        self.params = [param for param in model.parameters() if param.requires_grad]
        self.state = None

    def reset_state(self):
        self.state = None

    def _state_for(self, batch):
        if self.state is None:
            self.state = self.model.zero_state(batch)
        return self.state

    def train_window(self, inputs, targets, lr, masks=None):
        """Train on one window; `masks` (batch-major, (B, 1, H) or (B, T, H)) replaces the draws."""
        ids = torch.from_numpy(inputs.T.copy())
        labels = torch.from_numpy(targets.T.copy()).reshape(-1)
        if masks is not None:
            dtype = self.model.encoder.weight.dtype
            masks = [torch.from_numpy(mask).to(dtype).transpose(0, 1) for mask in masks]

        self.model.train()
        self.model.zero_grad(set_to_none=True)
        logits, state = self.model(ids, self._state_for(ids.shape[1]), masks)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.params, self.clip)
        with torch.no_grad():
            for param in self.params:
                param.add_(param.grad, alpha=-lr)

        self.state = [(h.detach(), c.detach()) for h, c in state]
        return loss.item(), grad_norm.item()

    def eval_window(self, inputs, targets):
        ids = torch.from_numpy(inputs.T.copy())
        labels = torch.from_numpy(targets.T.copy()).reshape(-1)

        self.model.eval()
        with torch.no_grad():
            logits, self.state = self.model(ids, self._state_for(ids.shape[1]))
            nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels,
                                  ignore_index=corpus.IGNORE, reduction="sum")
        return nll.item(), int((labels != corpus.IGNORE).sum())

    def snapshot(self):
        return {name: tensor.clone() for name, tensor in self.model.state_dict().items()}

    def restore(self, snapshot):
        self.model.load_state_dict(snapshot)


def build_trainer(args, vocab, dtype=torch.float32):
    """Build a trainer from parsed options, seeding torch with `args.seed`."""
    torch.manual_seed(args.seed)
    model = RNNModel(vocab, args.hidden, args.layers, args.dropout, args.dropout_mode).to(dtype)
    model.init_weights(args.init, args.init_range)
    return TorchTrainer(model, args.clip)


def main():
    args = driver.parse_args("PyTorch")
    torch.set_num_threads(args.threads)
    driver.run("pytorch", args, build_trainer)


if __name__ == "__main__":
    main()
