"""Command line, throughput runs and full-epoch training shared by the references.

Each implementation supplies a trainer object with these methods, and the
loops here do the rest, so both references are timed and scored the same way:

- `reset_state()` zeroes the hidden and cell state of every layer.
- `train_window(inputs, targets, lr)` runs one step of truncated BPTT on
  `(B, T)` int64 ids: forward with dropout, mean loss, backward, clipping
  and SGD. It carries the state on and returns `(loss, grad_norm)`, with the
  norm taken before clipping.
- `eval_window(inputs, targets)` runs forward only, without dropout, and
  carries the state on. It returns `(nll_sum, count)` over the targets that
  are not `corpus.IGNORE`.
- `snapshot()` and `restore(snapshot)` copy the parameters out and back.
"""

import argparse
import json
import logging
import math
import resource
import time

import numpy as np

import corpus

log = logging.getLogger("reference")

DEFAULT_VOCAB = 10_000
TRAIN_BATCH = 20
EVAL_BATCH = 10
# Progress lines during an epoch, one per this many windows.
PROGRESS_EVERY = 100


def parse_args(impl, argv=None):
    parser = argparse.ArgumentParser(
        description=f"{impl} reference of the rnnlm model: throughput runs, or full "
        "epochs on PTB with --epochs. Throughput runs print one JSON line."
    )
    parser.add_argument("--mode", choices=("train", "eval"), default="train",
                        help="train: forward, backward, clipping and SGD; eval: forward only, "
                        "no dropout (default: train)")
    parser.add_argument("--hidden", type=int, default=650,
                        help="hidden size H, also the embedding size (default: 650)")
    parser.add_argument("--vocab", type=int, default=None,
                        help=f"vocabulary size V for random ids (default: {DEFAULT_VOCAB}); "
                        "with --data it comes from the training file")
    parser.add_argument("--layers", type=int, default=2, help="LSTM layers (default: 2)")
    parser.add_argument("--batch", type=int, default=None,
                        help=f"streams B (default: {TRAIN_BATCH} to train, {EVAL_BATCH} to evaluate)")
    parser.add_argument("--bptt", type=int, default=35, help="steps per window T (default: 35)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for the math library (default: 1)")
    parser.add_argument("--windows", type=int, default=10,
                        help="timed windows in a throughput run (default: 10)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed windows before the timed ones (default: 2)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the initial weights, dropout masks and random ids (default: 1)")
    parser.add_argument("--data", default=None,
                        help="directory with ptb.train.txt, ptb.valid.txt, ptb.test.txt; "
                        "without it a throughput run uses random ids in [0, V)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="train this many full epochs on --data, printing the validation "
                        "perplexity after each, then the test perplexity of the best epoch")
    parser.add_argument("--epoch-windows", type=int, default=None,
                        help="with --epochs: stop each epoch after this many windows "
                        "(for a quick check; default: the whole training split)")
    parser.add_argument("--lr", type=float, default=20.0, help="SGD learning rate (default: 20)")
    parser.add_argument("--clip", type=float, default=0.25,
                        help="maximum global L2 norm of the gradient (default: 0.25)")
    parser.add_argument("--dropout", type=float, default=0.5,
                        help="dropout probability at each of the three sites (default: 0.5)")
    parser.add_argument("--dropout-mode", choices=("variational", "standard"), default="variational",
                        help="variational: one (B, H) mask per site per window, shared by all "
                        "steps; standard: a fresh mask per element per step (default: variational)")
    parser.add_argument("--init", choices=("book", "uniform"), default="book",
                        help="book: E ~ N(0,1)/100, W_ih ~ N(0,1)/sqrt(H_in), W_hh ~ N(0,1)/sqrt(H), "
                        "biases 0; uniform: every weight ~ U(-r, r), biases 0 (default: book)")
    parser.add_argument("--init-range", type=float, default=0.1,
                        help="r of --init uniform (default: 0.1)")
    args = parser.parse_args(argv)

    if args.epochs is not None:
        if args.data is None:
            parser.error("--epochs needs --data: full epochs train on the PTB training split")
        if args.mode != "train":
            parser.error("--epochs trains, so it cannot be combined with --mode eval")
    if args.epoch_windows is not None and args.epochs is None:
        parser.error("--epoch-windows applies only with --epochs")
    if args.data is not None and args.vocab is not None:
        parser.error("--vocab sets the size of random ids only; with --data the training file fixes it")
    for name in ("hidden", "layers", "bptt", "threads", "windows", "epochs", "epoch_windows"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} is {value}; it must be at least 1")
    if args.warmup < 0:
        parser.error(f"--warmup is {args.warmup}; it must be 0 or more")
    if not 0.0 <= args.dropout < 1.0:
        parser.error(f"--dropout is {args.dropout}; it must be in [0, 1)")
    if args.batch is None:
        args.batch = TRAIN_BATCH if args.mode == "train" else EVAL_BATCH
    elif args.batch < 1:
        parser.error(f"--batch is {args.batch}; it must be at least 1")
    return args


def run(impl, args, make_trainer):
    """Run the throughput or epoch mode that `args` selects, with the trainer from `make_trainer(args, vocab)`."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data = corpus.load_corpus(args.data) if args.data is not None else None
    vocab = len(data.words) if data is not None else (args.vocab or DEFAULT_VOCAB)
    if vocab < 2:
        raise SystemExit(f"error: --vocab is {vocab}; it must be at least 2")

    trainer = make_trainer(args, vocab)
    if args.epochs is not None:
        run_epochs(impl, args, trainer, data)
    else:
        run_throughput(impl, args, trainer, data, vocab)


def run_throughput(impl, args, trainer, data, vocab):
    """Time `args.windows` windows after `args.warmup` and print one JSON line."""
    needed = args.warmup + args.windows
    windows = _throughput_windows(args, data, vocab, needed)

    trainer.reset_state()
    loss = None
    start = start_cpu = None
    for index, (inputs, targets) in enumerate(windows):
        if index == args.warmup:
            start = time.perf_counter()
            start_cpu = time.process_time()
        if args.mode == "train":
            loss, _ = trainer.train_window(inputs, targets, args.lr)
        else:
            nll, count = trainer.eval_window(inputs, targets)
            loss = nll / count
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - start_cpu

    tokens = args.windows * args.batch * args.bptt
    print(json.dumps({
        "impl": impl,
        "mode": args.mode,
        "tokens_per_sec": round(tokens / seconds, 1),
        "windows": args.windows,
        "hidden": args.hidden,
        "threads": args.threads,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "vocab": vocab,
        "batch": args.batch,
        "bptt": args.bptt,
        "warmup": args.warmup,
        "ids": "ptb" if data is not None else "random",
        "seconds": round(seconds, 3),
        # CPU time of all threads over the timed windows. Well below
        # threads x seconds, it means other processes took the cores.
        "cpu_seconds": round(cpu_seconds, 3),
        "last_loss": round(float(loss), 4),
    }), flush=True)


def _throughput_windows(args, data, vocab, needed):
    """Return `needed` full windows of `(B, T)` inputs and targets."""
    if data is None:
        rng = np.random.default_rng(args.seed)
        streams = rng.integers(0, vocab, size=(args.batch, needed * args.bptt + 1), dtype=np.int64)
        return list(corpus.train_windows(streams, args.bptt))

    if args.mode == "train":
        windows = corpus.train_windows(corpus.train_streams(data.train, args.batch), args.bptt)
        split = "training"
    else:
        inputs, targets = corpus.eval_streams(data.valid, args.batch, data.eos)
        windows = corpus.eval_windows(inputs, targets, args.bptt)
        split = "validation"
    full = [window for window in windows if window[0].shape[1] == args.bptt][:needed]
    if len(full) < needed:
        raise SystemExit(
            f"error: the {split} split has {len(full)} full windows of {args.batch} x {args.bptt}, "
            f"fewer than --warmup + --windows = {needed}; ask for fewer windows"
        )
    return full


def run_epochs(impl, args, trainer, data):
    """Train `args.epochs` epochs with the book's schedule and print JSON lines.

    After each epoch the validation perplexity is measured; when it is not
    below the best so far, the learning rate is divided by 4. The parameters
    of the best epoch are kept and scored on the test split at the end.
    """
    streams = corpus.train_streams(data.train, args.batch)
    total = corpus.count_train_windows(streams, args.bptt)
    if args.epoch_windows is not None:
        total = min(total, args.epoch_windows)

    lr = args.lr
    best_ppl = math.inf
    best_params = None
    for epoch in range(1, args.epochs + 1):
        trainer.reset_state()
        start = time.perf_counter()
        tokens = 0
        loss_sum = 0.0
        for index, (inputs, targets) in enumerate(corpus.train_windows(streams, args.bptt)):
            if index == total:
                break
            loss, grad_norm = trainer.train_window(inputs, targets, lr)
            loss_sum += float(loss) * targets.size
            tokens += targets.size
            if (index + 1) % PROGRESS_EVERY == 0:
                elapsed = time.perf_counter() - start
                log.info("epoch %d window %d/%d: loss %.3f, grad norm %.3f, %.0f tokens/s",
                         epoch, index + 1, total, loss, grad_norm, tokens / elapsed)
        train_seconds = time.perf_counter() - start

        valid_ppl, valid_tokens = perplexity(trainer, data.valid, data.eos, args.bptt)
        improved = valid_ppl < best_ppl
        print(json.dumps({
            "impl": impl,
            "mode": "epoch",
            "epoch": epoch,
            "lr": lr,
            "train_windows": total,
            "train_ppl": round(math.exp(loss_sum / tokens), 2),
            "valid_ppl": round(valid_ppl, 2),
            "valid_tokens": valid_tokens,
            "train_tokens_per_sec": round(tokens / train_seconds, 1),
            "seconds": round(time.perf_counter() - start, 1),
        }), flush=True)
        if improved:
            best_ppl = valid_ppl
            best_params = trainer.snapshot()
        else:
            lr /= 4.0

    trainer.restore(best_params)
    test_ppl, test_tokens = perplexity(trainer, data.test, data.eos, args.bptt)
    print(json.dumps({
        "impl": impl,
        "mode": "test",
        "best_valid_ppl": round(best_ppl, 2),
        "test_ppl": round(test_ppl, 2),
        "test_tokens": test_tokens,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }), flush=True)


def perplexity(trainer, ids, eos, bptt):
    """Return `(perplexity, predicted tokens)` of a split, every token predicted once."""
    inputs, targets = corpus.eval_streams(ids, EVAL_BATCH, eos)
    trainer.reset_state()
    nll_sum = 0.0
    count = 0
    for window_inputs, window_targets in corpus.eval_windows(inputs, targets, bptt):
        nll, predicted = trainer.eval_window(window_inputs, window_targets)
        nll_sum += nll
        count += predicted
    return math.exp(nll_sum / count), count


def peak_rss_mb():
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
