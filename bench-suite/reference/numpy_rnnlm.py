"""NumPy reference of the rnnlm model, written layer by layer in the textbook style.

Every layer is a class with `params`, `grads`, `forward` and `backward`, and
the time layers work on batch-major arrays: ids are (N, T), activations
(N, T, D). The LSTM runs one `LSTM` cell object per step (gate order i, f, g,
o, with Wx (D, 4H), Wh (H, 4H) and one bias b (4H), the layout of the Rust
model), and `TimeLSTM` sums the cells' weight gradients. The output layer is a
`TimeAffine` whose weight is the transposed view of the embedding matrix, so
the two share storage and the model adds their gradients into one.

The model, recipe and command line are those of torch_rnnlm.py, and the
output JSON has "impl": "numpy". --threads sets OpenBLAS's thread count.
"""

import numpy as np
from threadpoolctl import threadpool_limits

import corpus
import driver


def sigmoid(x):
    # The tanh form cannot overflow, unlike 1 / (1 + exp(-x)) for x < -88 in float32.
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class TimeEmbedding:
    """Row lookup: ids (N, T) -> vectors (N, T, D) from W (V, D)."""

    def __init__(self, W):
        self.params = [W]
        self.grads = [np.zeros_like(W)]
        self.idx = None

    def forward(self, idx):
        self.idx = idx
        return self.params[0][idx]

    def backward(self, dout):
        dW = self.grads[0]
        dW[...] = 0
        np.add.at(dW, self.idx, dout)


class LSTM:
    """One LSTM step on x (N, D), h_prev (N, H), c_prev (N, H); gate order i, f, g, o."""

    def __init__(self, Wx, Wh, b):
        self.params = [Wx, Wh, b]
        self.grads = [None, None, None]
        self.cache = None

    def forward(self, x, h_prev, c_prev):
        Wx, Wh, b = self.params
        H = Wh.shape[0]

        A = x @ Wx + h_prev @ Wh + b
        i = sigmoid(A[:, :H])
        f = sigmoid(A[:, H : 2 * H])
        g = np.tanh(A[:, 2 * H : 3 * H])
        o = sigmoid(A[:, 3 * H :])

        c_next = f * c_prev + i * g
        tanh_c = np.tanh(c_next)
        h_next = o * tanh_c

        self.cache = (x, h_prev, c_prev, i, f, g, o, tanh_c)
        return h_next, c_next

    def backward(self, dh_next, dc_next):
        """Return dx, dh_prev, dc_prev and set grads to this step's dWx, dWh, db."""
        Wx, Wh, _ = self.params
        x, h_prev, c_prev, i, f, g, o, tanh_c = self.cache

        ds = dc_next + dh_next * o * (1.0 - tanh_c**2)
        dc_prev = ds * f

        di = ds * g * i * (1.0 - i)
        df = ds * c_prev * f * (1.0 - f)
        dg = ds * i * (1.0 - g**2)
        do = dh_next * tanh_c * o * (1.0 - o)
        dA = np.hstack((di, df, dg, do))

        self.grads = [x.T @ dA, h_prev.T @ dA, dA.sum(axis=0)]
        dx = dA @ Wx.T
        dh_prev = dA @ Wh.T
        return dx, dh_prev, dc_prev


class TimeLSTM:
    """LSTM over a window, xs (N, T, D) -> hs (N, T, H), carrying h and c to the next window.

    Backward truncates at the window start: no gradient flows into the state
    that came from the previous window.
    """

    def __init__(self, Wx, Wh, b):
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.layers = []
        self.h = None
        self.c = None

    def forward(self, xs):
        Wx, Wh, b = self.params
        N, T, _ = xs.shape
        H = Wh.shape[0]

        if self.h is None:
            self.h = np.zeros((N, H), dtype=xs.dtype)
            self.c = np.zeros((N, H), dtype=xs.dtype)

        hs = np.empty((N, T, H), dtype=xs.dtype)
        self.layers = []
        for t in range(T):
            layer = LSTM(Wx, Wh, b)
            self.h, self.c = layer.forward(xs[:, t, :], self.h, self.c)
            hs[:, t, :] = self.h
            self.layers.append(layer)
        return hs

    def backward(self, dhs):
        Wx, _, _ = self.params
        N, T, H = dhs.shape
        D = Wx.shape[0]

        dxs = np.empty((N, T, D), dtype=dhs.dtype)
        dh = np.zeros((N, H), dtype=dhs.dtype)
        dc = np.zeros((N, H), dtype=dhs.dtype)
        for grad in self.grads:
            grad[...] = 0

        for t in reversed(range(T)):
            layer = self.layers[t]
            dx, dh, dc = layer.backward(dhs[:, t, :] + dh, dc)
            dxs[:, t, :] = dx
            for total, grad in zip(self.grads, layer.grads):
                total += grad
        return dxs

    def reset_state(self):
        self.h = None
        self.c = None


class TimeDropout:
    """Inverted dropout on (N, T, D): kept units scaled by 1 / (1 - ratio), identity when not training.

    Variational mode draws one (N, 1, D) mask per window, shared by all T
    steps; standard mode draws (N, T, D). `fixed_mask`, when set, replaces
    the next draw (tests use it to feed the same mask to two models).
    """

    def __init__(self, ratio, variational, rng):
        self.ratio = ratio
        self.variational = variational
        self.rng = rng
        self.train_flg = True
        self.fixed_mask = None
        self.mask = None

    def forward(self, xs):
        if not self.train_flg or self.ratio == 0.0:
            self.mask = None
            return xs

        if self.fixed_mask is not None:
            self.mask = self.fixed_mask.astype(xs.dtype)
            self.fixed_mask = None
        else:
            N, T, D = xs.shape
            shape = (N, 1, D) if self.variational else (N, T, D)
            keep = self.rng.random(shape, dtype=xs.dtype) >= self.ratio
            self.mask = keep.astype(xs.dtype) / xs.dtype.type(1.0 - self.ratio)
        return xs * self.mask

    def backward(self, dout):
        return dout if self.mask is None else dout * self.mask


class TimeAffine:
    """xs (N, T, D) @ W (D, M) + b (M) -> (N, T, M)."""

    def __init__(self, W, b):
        self.params = [W, b]
        self.grads = [np.zeros_like(W), np.zeros_like(b)]
        self.x = None

    def forward(self, xs):
        W, b = self.params
        N, T, D = xs.shape
        self.x = xs.reshape(N * T, D)
        return (self.x @ W + b).reshape(N, T, -1)

    def backward(self, dout):
        W, _ = self.params
        N, T, M = dout.shape
        dout = dout.reshape(N * T, M)

        self.grads[0][...] = self.x.T @ dout
        self.grads[1][...] = dout.sum(axis=0)
        return (dout @ W.T).reshape(N, T, -1)


class TimeSoftmaxWithLoss:
    """Mean cross-entropy of logits (N, T, V) against targets (N, T).

    Targets equal to corpus.IGNORE count neither in the loss nor in the mean.
    `nll_sum` and `count` keep the total and the number of scored targets.
    """

    def __init__(self):
        self.cache = None
        self.nll_sum = 0.0
        self.count = 0

    def forward(self, xs, ts):
        N, T, V = xs.shape
        xs = xs.reshape(N * T, V)
        ts = ts.reshape(N * T)
        scored = ts != corpus.IGNORE
        rows = np.arange(N * T)
        safe_ts = np.where(scored, ts, 0)

        shifted = xs - xs.max(axis=1, keepdims=True)
        exps = np.exp(shifted)
        z = exps.sum(axis=1)
        nll = (np.log(z) - shifted[rows, safe_ts]) * scored

        self.count = int(scored.sum())
        self.nll_sum = float(nll.sum(dtype=np.float64))
        self.cache = (exps, z, safe_ts, scored, (N, T, V))
        return self.nll_sum / self.count

    def backward(self):
        exps, z, ts, scored, shape = self.cache
        rows = np.arange(len(ts))

        dx = exps / z[:, None]
        dx[rows, ts] -= 1.0
        dx *= (scored / exps.dtype.type(self.count))[:, None].astype(exps.dtype)
        return dx.reshape(shape)


class BetterRnnlm:
    """Embedding, `layers` LSTM layers, dropout at layers + 1 sites, tied output projection.

    `params` lists each array once: E, then Wx, Wh, b per layer, then the
    output bias. `grads` matches it, with E's entry holding the sum of the
    embedding and projection gradients.
    """

    def __init__(self, vocab, hidden, layers, dropout, variational, init, init_range, rng,
                 dtype=np.float32):
        dtype = np.dtype(dtype).type

        def normal(shape, scale):
            return rng.standard_normal(shape, dtype=dtype) * dtype(scale)

        def uniform(shape):
            return rng.uniform(-init_range, init_range, shape).astype(dtype)

        embed_W = normal((vocab, hidden), 0.01) if init == "book" else uniform((vocab, hidden))
        self.embed = TimeEmbedding(embed_W)
        self.lstms = []
        for _ in range(layers):
            if init == "book":
                Wx = normal((hidden, 4 * hidden), 1.0 / np.sqrt(hidden))
                Wh = normal((hidden, 4 * hidden), 1.0 / np.sqrt(hidden))
            else:
                Wx = uniform((hidden, 4 * hidden))
                Wh = uniform((hidden, 4 * hidden))
            self.lstms.append(TimeLSTM(Wx, Wh, np.zeros(4 * hidden, dtype=dtype)))
        self.drops = [TimeDropout(dropout, variational, rng) for _ in range(layers + 1)]
        self.affine = TimeAffine(embed_W.T, np.zeros(vocab, dtype=dtype))
        self.loss_layer = TimeSoftmaxWithLoss()

        self.params = [embed_W]
        self.grads = [np.zeros_like(embed_W)]
        for lstm in self.lstms:
            self.params += lstm.params
            self.grads += lstm.grads
        self.params.append(self.affine.params[1])
        self.grads.append(self.affine.grads[1])

    def predict(self, xs, train):
        for drop in self.drops:
            drop.train_flg = train

        x = self.embed.forward(xs)
        for drop, lstm in zip(self.drops, self.lstms):
            x = lstm.forward(drop.forward(x))
        x = self.drops[-1].forward(x)
        return self.affine.forward(x)

    def forward(self, xs, ts, train=True):
        return self.loss_layer.forward(self.predict(xs, train), ts)

    def backward(self):
        dout = self.loss_layer.backward()
        dout = self.affine.backward(dout)
        dout = self.drops[-1].backward(dout)
        for drop, lstm in zip(reversed(self.drops[:-1]), reversed(self.lstms)):
            dout = drop.backward(lstm.backward(dout))
        self.embed.backward(dout)

        # The affine weight is embed_W.T, so its gradient adds in transposed.
        self.grads[0][...] = self.embed.grads[0] + self.affine.grads[0].T

    def reset_state(self):
        for lstm in self.lstms:
            lstm.reset_state()


def clip_grads(grads, max_norm):
    """Scale grads in place to a global L2 norm of at most max_norm; return the norm before."""
    total_norm = np.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads))
    rate = max_norm / (total_norm + 1e-6)
    if rate < 1.0:
        for grad in grads:
            grad *= grad.dtype.type(rate)
    return total_norm


class SGD:
    def __init__(self, lr):
        self.lr = lr

    def update(self, params, grads):
        for param, grad in zip(params, grads):
            param -= param.dtype.type(self.lr) * grad


class NumpyTrainer:
    """The trainer interface of driver.py around a BetterRnnlm."""

    def __init__(self, model, clip):
        self.model = model
        self.clip = clip
        self.optimizer = SGD(0.0)

    def reset_state(self):
        self.model.reset_state()

    def train_window(self, inputs, targets, lr, masks=None):
        """Train on one window; `masks` ((N, 1, H) or (N, T, H) per site) replaces the draws."""
        if masks is not None:
            for drop, mask in zip(self.model.drops, masks):
                drop.fixed_mask = mask

        loss = self.model.forward(inputs, targets, train=True)
        self.model.backward()
        grad_norm = clip_grads(self.model.grads, self.clip)
        self.optimizer.lr = lr
        self.optimizer.update(self.model.params, self.model.grads)
        return loss, grad_norm

    def eval_window(self, inputs, targets):
        self.model.forward(inputs, targets, train=False)
        return self.model.loss_layer.nll_sum, self.model.loss_layer.count

    def snapshot(self):
        return [param.copy() for param in self.model.params]

    def restore(self, snapshot):
        for param, saved in zip(self.model.params, snapshot):
            param[...] = saved


def build_trainer(args, vocab, dtype=np.float32):
    """Build a trainer from parsed options, seeding NumPy's generator with `args.seed`."""
    rng = np.random.default_rng(args.seed)
    model = BetterRnnlm(vocab, args.hidden, args.layers, args.dropout,
                        args.dropout_mode == "variational", args.init, args.init_range, rng, dtype)
    return NumpyTrainer(model, args.clip)


def main():
    args = driver.parse_args("NumPy")
    threadpool_limits(limits=args.threads, user_api="blas")
    driver.run("numpy", args, build_trainer)


if __name__ == "__main__":
    main()
