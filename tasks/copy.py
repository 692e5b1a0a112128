"""Copy task: read L random 8-bit vectors, then write them back after a delimiter."""
import torch

NAME = "copy"
LENGTH_UNIT = "vectors"   # what the length L counts (figure axes)
IN_DIM = 9   # 8 data bits + delimiter flag
OUT_DIM = 8  # the 8 bits of one vector
MIN_LEN = 1
MAX_LEN = 2047  # generator limit; the model's sliding window sets the usable one (tasks.tokens.max_length)
DESCRIPTION = """\
Channels in: 0-7 data bits (bit j of a vector in channel j), 8 delimiter flag. Out: 8 bits.
Tokens: L data vectors (flag 0), one delimiter token (flag 1, data 0), then L blank tokens (all
zero). The target at blank token k is data vector k. T = 2L + 1.
Scored: the L blank positions (all 8 bits each). L = number of vectors (255 at most for a 512-token window)."""


def num_tokens(length: int) -> int:
    return 2 * length + 1


def floor(length: int) -> float:
    """No-learning floor, blind to the data vectors: every scored bit is a fair coin that nothing else
    in the sequence predicts, so any such predictor (a constant, a per-position majority) errs half
    the time."""
    return 0.5


def make_batch(batch_size: int, length: int, generator: torch.Generator):
    if not MIN_LEN <= length <= MAX_LEN:
        raise ValueError(f"{NAME}: length must be between {MIN_LEN} and {MAX_LEN}, got {length}")
    L, T = length, num_tokens(length)
    data = torch.randint(0, 2, (batch_size, L, 8), generator=generator).float()
    x = torch.zeros(batch_size, T, IN_DIM)
    y = torch.zeros(batch_size, T, OUT_DIM)
    mask = torch.zeros(batch_size, T, dtype=torch.bool)
    x[:, :L, :8] = data
    x[:, L, 8] = 1
    y[:, L + 1:] = data  # the answer only appears as a target, never as an input
    mask[:, L + 1:] = True
    return x, y, mask
