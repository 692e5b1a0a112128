"""Binary addition of two L-bit numbers, fed and answered least significant bit first."""
import torch

NAME = "addition"
LENGTH_UNIT = "bits per operand"   # what the length L counts (figure axes)
IN_DIM = 3   # a_i, b_i, end flag
OUT_DIM = 1  # one bit of a + b
MIN_LEN = 1
MAX_LEN = 4095  # generator limit; the model's sliding window sets the usable one (tasks.tokens.max_length)
DESCRIPTION = """\
Channels in: 0 a_i, 1 b_i, 2 end flag. Out: 1 bit. Bits are least significant first.
Tokens: token i (0..L-1) is (a_i, b_i, 0) with target bit i of a + b; a final token (0, 0, 1) has
target bit L of the sum (the carry out). T = L + 1. Scored: all L + 1 positions.
L = bits per operand (511 at most for a 512-token window). LSB-first means sum bit i needs only operand bits 0..i, which a
causal model has seen by position i."""


def num_tokens(length: int) -> int:
    return length + 1


def floor(length: int) -> float:
    """No-learning floor, blind to the operands (per-position majority): sum bits 0..L-1 are fair
    coins; the carry out is 1 for sum over a of a = 2^L (2^L - 1) / 2 of the 4^L operand pairs, i.e. with
    probability 1/2 - 2^-(L+1), so predicting 0 there errs that often."""
    return (0.5 * length + 0.5 - 0.5 ** (length + 1)) / (length + 1)


def make_batch(batch_size: int, length: int, generator: torch.Generator):
    if not MIN_LEN <= length <= MAX_LEN:
        raise ValueError(f"{NAME}: length must be between {MIN_LEN} and {MAX_LEN}, got {length}")
    L, T = length, num_tokens(length)
    a = torch.randint(0, 2, (batch_size, L), generator=generator)
    b = torch.randint(0, 2, (batch_size, L), generator=generator)
    # Ripple-carry over bit positions; long operands do not fit in an int64.
    total = torch.zeros(batch_size, T, dtype=torch.long)
    carry = torch.zeros(batch_size, dtype=torch.long)
    for i in range(L):
        s = a[:, i] + b[:, i] + carry
        total[:, i], carry = s % 2, s // 2
    total[:, L] = carry
    x = torch.zeros(batch_size, T, IN_DIM)
    x[:, :L, 0] = a.float()
    x[:, :L, 1] = b.float()
    x[:, L, 2] = 1
    y = total.float().unsqueeze(-1)
    mask = torch.ones(batch_size, T, dtype=torch.bool)
    return x, y, mask
