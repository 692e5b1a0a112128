"""Rule 90: one step of the elementary cellular automaton on L cells with a zero boundary."""
import torch
import torch.nn.functional as F

NAME = "rule90"
LENGTH_UNIT = "cells"   # what the length L counts (figure axes)
IN_DIM = 2   # state bit + delimiter flag
OUT_DIM = 1  # next state of one cell
MIN_LEN = 1
MAX_LEN = 2047  # generator limit; the model's sliding window sets the usable one (tasks.tokens.max_length)
DESCRIPTION = """\
Rule: next[i] = state[i-1] XOR state[i+1], with null boundary state[-1] = state[L] = 0.
Channels in: 0 state bit, 1 delimiter flag. Out: 1 bit. Tokens: cells state[0..L-1] in order, one
delimiter token (flag 1), then L blank tokens; blank token i has target next[i]. T = 2L + 1.
Scored: the L blank positions. L = number of cells (255 at most for a 512-token window). The answer follows the whole state
because a causal model at cell i could not yet see cell i+1."""


def num_tokens(length: int) -> int:
    return 2 * length + 1


def floor(length: int) -> float:
    """No-learning floor, blind to the state (a constant or per-position majority): every next[i] is
    the XOR of two cells, or one cell at an edge, a fair coin; only a single cell has both
    neighbours on the boundary, so next[0] is always 0 at L = 1."""
    return 0.0 if length == 1 else 0.5


def make_batch(batch_size: int, length: int, generator: torch.Generator):
    if not MIN_LEN <= length <= MAX_LEN:
        raise ValueError(f"{NAME}: length must be between {MIN_LEN} and {MAX_LEN}, got {length}")
    L, T = length, num_tokens(length)
    state = torch.randint(0, 2, (batch_size, L), generator=generator)
    padded = F.pad(state, (1, 1))  # one zero cell on each side is the null boundary
    nxt = padded[:, :-2] ^ padded[:, 2:]
    x = torch.zeros(batch_size, T, IN_DIM)
    y = torch.zeros(batch_size, T, OUT_DIM)
    mask = torch.zeros(batch_size, T, dtype=torch.bool)
    x[:, :L, 0] = state.float()
    x[:, L, 1] = 1
    y[:, L + 1:, 0] = nxt.float()
    mask[:, L + 1:] = True
    return x, y, mask
