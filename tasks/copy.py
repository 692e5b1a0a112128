"""Binary copy: reproduce a list of random 8-bit vectors after a delimiter.

Channels (IN_DIM 9): 8 data bits, 1 delimiter flag. Tokens: L data vectors, one delimiter token,
then L blank tokens whose targets are the L vectors in order. T = 2L + 1. Scored: the L answer
positions (all 8 bits each). L = number of vectors."""
import torch

NAME = "copy"
IN_DIM, OUT_DIM = 9, 8
MIN_LEN, MAX_LEN = 1, 255  # 2L+1 <= 511 keeps every sequence inside the 512-token sliding window
DESCRIPTION = __doc__


def num_tokens(length):
    return 2 * length + 1


def check_length(length, min_len=MIN_LEN, max_len=MAX_LEN, name=NAME):
    if not min_len <= length <= max_len:
        raise ValueError(f"{name}: length must be in {min_len}..{max_len}, got {length}")


def make_batch(batch_size, length, generator):
    check_length(length)
    L, T = length, num_tokens(length)
    data = torch.randint(0, 2, (batch_size, L, 8), generator=generator).float()
    x = torch.zeros(batch_size, T, IN_DIM)
    y = torch.zeros(batch_size, T, OUT_DIM)
    mask = torch.zeros(batch_size, T, dtype=torch.bool)
    x[:, :L, :8] = data
    x[:, L, 8] = 1
    y[:, L + 1:] = data
    mask[:, L + 1:] = True
    return x, y, mask
