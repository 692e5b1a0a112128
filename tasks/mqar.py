"""Multi-query associative recall (MQAR, after Zoology, Arora et al. 2023): L key-value pairs, then
every key asked once, in a new random order, each answer read at its own query token."""
import math

import torch

NAME = "mqar"
LENGTH_UNIT = "key-value pairs"   # what the length L counts (figure axes)
BITS = 6
IN_DIM = BITS + 3   # 6 code bits + key flag + value flag + query flag
OUT_DIM = BITS      # the 6 bits of the queried key's value
MIN_LEN = 2
MAX_LEN = 2 ** BITS  # keys are distinct within a sequence: at most 64 pairs (T = 192)
DESCRIPTION = """\
Channels in: 0-5 code bits, 6 key flag, 7 value flag, 8 query flag. Out: 6 bits.
Tokens: k_1 v_1 k_2 v_2 ... k_L v_L (one token each, keys distinct within the sequence, values
uniform and free to repeat), then L query tokens: the L keys again in a fresh random order, one
token each, carrying the query flag. The target at query token j is the value paired with its key.
T = 3L. Scored: the L query positions (6 bits each). L = number of pairs, 2..64.
Choices (Zoology leaves them to the user): as many queries as pairs, so every pair is tested once
and the error is an average over the whole list; queries packed right after the pairs, in an order
independent of the list order, so no position shortcut predicts which pair is asked."""


def num_tokens(length: int) -> int:
    return 3 * length


def floor(length: int) -> float:
    """No-learning floor, blind to the queries: each query asks a uniformly drawn pair, so the best
    such predictor takes, bit by bit, the majority of the L values. Values are uniform and free to
    repeat, so a bit is 1 in K ~ Binomial(L, 1/2) of them and the majority errs with probability
    min(K, L - K) / L."""
    return sum(math.comb(length, k) * min(k, length - k) for k in range(length + 1)) / 2 ** length / length


def code_bits(codes):
    """[..., BITS] bits of integer codes, least significant first."""
    return ((codes.unsqueeze(-1) >> torch.arange(BITS)) & 1).float()


def make_batch(batch_size: int, length: int, generator: torch.Generator):
    if not MIN_LEN <= length <= MAX_LEN:
        raise ValueError(f"{NAME}: length must be between {MIN_LEN} and {MAX_LEN}, got {length}")
    L, T = length, num_tokens(length)
    # distinct keys: the first L entries of a random permutation of all 2^BITS codes, per row
    keys = torch.rand(batch_size, 2 ** BITS, generator=generator).argsort(-1)[:, :L]
    values = torch.randint(0, 2 ** BITS, (batch_size, L), generator=generator)
    order = torch.rand(batch_size, L, generator=generator).argsort(-1)   # which pair each query asks
    x = torch.zeros(batch_size, T, IN_DIM)
    x[:, 0:2 * L:2, :BITS] = code_bits(keys)
    x[:, 0:2 * L:2, BITS] = 1
    x[:, 1:2 * L:2, :BITS] = code_bits(values)
    x[:, 1:2 * L:2, BITS + 1] = 1
    x[:, 2 * L:, :BITS] = code_bits(keys.gather(1, order))
    x[:, 2 * L:, BITS + 2] = 1
    y = torch.zeros(batch_size, T, OUT_DIM)
    y[:, 2 * L:] = code_bits(values.gather(1, order))
    mask = torch.zeros(batch_size, T, dtype=torch.bool)
    mask[:, 2 * L:] = True
    return x, y, mask
