"""Associative recall: given a list of items and one of them as a query, produce the item that
followed it in the list.

An item is 2 vectors of 6 bits. Channels (IN_DIM 8): 6 data bits, item-delimiter flag,
query-delimiter flag. Tokens: for each of the L items an item-delimiter token then its 2 vectors;
then a query-delimiter token, the query item's 2 vectors, a second query-delimiter token, and 2
blank tokens whose targets are the 2 vectors of the item after the query. T = 3L + 6. The query
is drawn uniformly from the first L-1 items; items in a sequence are distinct, so the answer is
unique. Scored: the 2 answer positions. L = number of items (at least 2)."""
import torch

NAME = "ar"
LENGTH_UNIT = "items"   # what the length L counts (figure axes)
IN_DIM, OUT_DIM = 8, 6
ITEM_VECS, BITS = 2, 6
MIN_LEN, MAX_LEN = 2, 1024  # generator limit; the model's sliding window sets the usable one (tasks.tokens.max_length)
DESCRIPTION = __doc__


def num_tokens(length):
    return 3 * length + 6


def floor(length):
    """No-learning floor, blind to the query: the answer is item q + 1, uniform over items 1..L-1, so
    the best such predictor takes, bit by bit, the majority of those m = L - 1 items. A bit is 1 in K
    of m distinct codes drawn from all 4096, K hypergeometric (4096 codes, 2048 with the bit, m
    draws); the majority is then wrong with probability min(K, m - K) / m. 0 at L = 2 (one candidate)."""
    from scipy.stats import hypergeom     # here, not at the top: importing scipy.stats costs about 1.5 s at every start
    m, codes = length - 1, 2 ** (ITEM_VECS * BITS)
    pmf = hypergeom.pmf(range(m + 1), codes, codes // 2, m)
    return float(sum(p * min(k, m - k) for k, p in enumerate(pmf)) / m)


def distinct_items(batch_size, length, generator):
    """[B, L] item codes (12-bit integers), all different within a row: the first L of a random
    permutation of all 4096 codes (resampling rows until they are distinct never ends at long L)."""
    return torch.rand(batch_size, 2 ** (ITEM_VECS * BITS), generator=generator).argsort(-1)[:, :length]


def make_batch(batch_size, length, generator):
    if not MIN_LEN <= length <= MAX_LEN:
        raise ValueError(f"{NAME}: length must be in {MIN_LEN}..{MAX_LEN}, got {length}")
    L, T = length, num_tokens(length)
    codes = distinct_items(batch_size, L, generator)
    bits = ((codes.unsqueeze(-1) >> torch.arange(ITEM_VECS * BITS)) & 1).float()
    items = bits.view(batch_size, L, ITEM_VECS, BITS)
    q = torch.randint(0, L - 1, (batch_size,), generator=generator)
    rows = torch.arange(batch_size)
    x = torch.zeros(batch_size, T, IN_DIM)
    y = torch.zeros(batch_size, T, OUT_DIM)
    mask = torch.zeros(batch_size, T, dtype=torch.bool)
    for i in range(L):
        x[:, 3 * i, BITS] = 1
        x[:, 3 * i + 1:3 * i + 3, :BITS] = items[:, i]
    s = 3 * L
    x[:, s, BITS + 1] = 1
    x[:, s + 1:s + 3, :BITS] = items[rows, q]
    x[:, s + 3, BITS + 1] = 1
    y[:, s + 4:s + 6] = items[rows, q + 1]
    mask[:, s + 4:s + 6] = True
    return x, y, mask
