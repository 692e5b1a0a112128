"""One step of the elementary cellular automaton Rule 90 on L cells.

next[i] = state[i-1] XOR state[i+1], with zero (null) boundary: cells outside 0..L-1 are 0.
Channels (IN_DIM 2): state bit, delimiter flag. Tokens: the L cells of the current state, one
delimiter token, then L blank tokens whose targets are next[0..L-1]. T = 2L + 1. Scored: those L
positions. The answer comes after the whole state because a causal model could not see cell
i+1 from position i."""
import torch
import torch.nn.functional as F

from tasks.copy import check_length

NAME = "rule90"
IN_DIM, OUT_DIM = 2, 1
MIN_LEN, MAX_LEN = 1, 255
DESCRIPTION = __doc__


def num_tokens(length):
    return 2 * length + 1


def make_batch(batch_size, length, generator):
    check_length(length, MIN_LEN, MAX_LEN, NAME)
    L, T = length, num_tokens(length)
    state = torch.randint(0, 2, (batch_size, L), generator=generator)
    padded = F.pad(state, (1, 1))  # the zero boundary
    nxt = (padded[:, :-2] ^ padded[:, 2:]).float()
    x = torch.zeros(batch_size, T, IN_DIM)
    y = torch.zeros(batch_size, T, OUT_DIM)
    mask = torch.zeros(batch_size, T, dtype=torch.bool)
    x[:, :L, 0] = state.float()
    x[:, L, 1] = 1
    y[:, L + 1:, 0] = nxt
    mask[:, L + 1:] = True
    return x, y, mask
