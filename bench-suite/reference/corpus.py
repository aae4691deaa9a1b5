"""Penn Treebank reading and batching shared by the reference implementations.

Text becomes ids the way the Rust crate reads it: each line's words (split on
whitespace) followed by `<eos>`, with the vocabulary built from the training
file in order of first appearance. Validation and test words outside it map
to `<unk>`.

All arrays here are batch-major int64: row b of a `(B, T)` array is stream b.
"""

from pathlib import Path

import numpy as np

EOS = "<eos>"
UNK = "<unk>"
SPLIT_FILES = ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt")

# Marks a target position that predicts nothing (padding after a short stream).
IGNORE = -1


class Corpus:
    """The three PTB splits as int64 id arrays over the training vocabulary."""

    def __init__(self, words, train, valid, test):
        self.words = words
        self.train = train
        self.valid = valid
        self.test = test

    @property
    def eos(self):
        return self.words.index(EOS)


def load_corpus(directory):
    """Read ptb.train.txt, ptb.valid.txt and ptb.test.txt from `directory`."""
    directory = Path(directory)
    missing = [name for name in SPLIT_FILES if not (directory / name).is_file()]
    if missing:
        raise SystemExit(
            f"error: PTB files missing in {directory}: {', '.join(missing)}; "
            "pass --data with the directory that contains all three splits"
        )

    ids = {}
    train = []
    for line in _read_lines(directory / SPLIT_FILES[0]):
        for word in line.split() + [EOS]:
            train.append(ids.setdefault(word, len(ids)))
    words = list(ids)

    splits = [np.asarray(train, dtype=np.int64)]
    for name in SPLIT_FILES[1:]:
        splits.append(_encode(directory / name, ids))
    return Corpus(words, *splits)


def _read_lines(path):
    with open(path, encoding="utf-8") as file:
        return file.read().splitlines()


def _encode(path, ids):
    unk = ids.get(UNK)
    encoded = []
    for number, line in enumerate(_read_lines(path), start=1):
        for word in line.split() + [EOS]:
            token = ids.get(word, unk)
            if token is None:
                raise SystemExit(
                    f"error: {path}: line {number}: word {word!r} is not in the training "
                    "vocabulary, which has no <unk> entry to map it to"
                )
            encoded.append(token)
    return np.asarray(encoded, dtype=np.int64)


def train_streams(ids, batch):
    """Cut `ids` into `batch` contiguous streams of equal length, `(B, N // B)`.

    The last `N % B` tokens are dropped, as in the training recipe.
    """
    length = len(ids) // batch
    if length < 2:
        raise SystemExit(
            f"error: {len(ids)} tokens cannot fill {batch} training streams of at least 2 "
            "tokens; use a smaller --batch"
        )
    return ids[: length * batch].reshape(batch, length)


def train_windows(streams, bptt):
    """Yield `(inputs, targets)` windows of `(B, T)` over `streams`.

    Window k feeds tokens [kT, kT+T) of each stream and predicts the tokens
    one step later. The last window is shorter when T does not divide N - 1.
    """
    length = streams.shape[1]
    for start in range(0, length - 1, bptt):
        end = min(start + bptt, length - 1)
        yield streams[:, start:end], streams[:, start + 1 : end + 1]


def count_train_windows(streams, bptt):
    return -(-(streams.shape[1] - 1) // bptt)


def eval_streams(ids, batch, eos):
    """Lay out `ids` for evaluation so each of its N tokens is predicted once.

    The split is cut into `batch` contiguous streams whose lengths differ by
    at most one. The first token of the split is predicted from an `<eos>`
    context, so the files' sentence-per-line layout gives it the same kind of
    context as every other sentence start, and every stream starts where
    the one before ends. Returns `(inputs, targets)`, each `(B, ceil(N / B))`,
    where the positions after the end of a shorter stream hold target IGNORE.
    """
    count = len(ids)
    if count < batch:
        raise SystemExit(
            f"error: {count} tokens cannot fill {batch} evaluation streams; use a smaller --batch"
        )
    context = np.concatenate([np.asarray([eos], dtype=np.int64), ids[:-1]])
    base, extra = divmod(count, batch)
    width = base + (extra > 0)

    inputs = np.zeros((batch, width), dtype=np.int64)
    targets = np.full((batch, width), IGNORE, dtype=np.int64)
    start = 0
    for stream in range(batch):
        length = base + (stream < extra)
        inputs[stream, :length] = context[start : start + length]
        targets[stream, :length] = ids[start : start + length]
        start += length
    return inputs, targets


def eval_windows(inputs, targets, bptt):
    """Yield `(inputs, targets)` windows of `(B, T)`; the last may be shorter."""
    for start in range(0, inputs.shape[1], bptt):
        yield inputs[:, start : start + bptt], targets[:, start : start + bptt]
