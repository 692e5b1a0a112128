"""Binary addition of two L-bit numbers, least significant bit first.

Channels (IN_DIM 3): a_i, b_i, end flag. Token i (0..L-1) carries (a_i, b_i, 0) and its target is
bit i of a + b; a final token (0, 0, 1) has the carry out (bit L) as target. T = L + 1, all
positions scored. LSB-first order makes every sum bit depend only on bits at or before its
position, so a causal model can compute it by carrying forward."""
import torch

from tasks.copy import check_length

NAME = "addition"
IN_DIM, OUT_DIM = 3, 1
MIN_LEN, MAX_LEN = 1, 511
DESCRIPTION = __doc__


def num_tokens(length):
    return length + 1


def make_batch(batch_size, length, generator):
    check_length(length, MIN_LEN, MAX_LEN, NAME)
    L, T = length, num_tokens(length)
    a = torch.randint(0, 2, (batch_size, L), generator=generator)
    b = torch.randint(0, 2, (batch_size, L), generator=generator)
    total = torch.zeros(batch_size, L + 1, dtype=torch.long)
    carry = torch.zeros(batch_size, dtype=torch.long)
    for i in range(L):  # ripple-carry, bit by bit
        s = a[:, i] + b[:, i] + carry
        total[:, i], carry = s % 2, s // 2
    total[:, L] = carry
    x = torch.zeros(batch_size, T, IN_DIM)
    x[:, :L, 0], x[:, :L, 1], x[:, L, 2] = a.float(), b.float(), 1
    y = total.float().unsqueeze(-1)
    mask = torch.ones(batch_size, T, dtype=torch.bool)
    return x, y, mask
