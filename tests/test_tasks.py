"""Task generators against brute-force references written independently of them."""
import pytest
import torch

from tasks import addition, ar, copy, rule90

TASKS = (copy, ar, rule90, addition)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def answer_bits(y, mask, b):
    return y[b][mask[b]]


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.NAME)
def test_shapes_masks_and_values(task):
    for L in (task.MIN_LEN, 3, 17, task.MAX_LEN):
        x, y, mask = task.make_batch(4, L, gen(L))
        T = task.num_tokens(L)
        assert x.shape == (4, T, task.IN_DIM) and y.shape == (4, T, task.OUT_DIM) and mask.shape == (4, T)
        assert x.dtype == y.dtype == torch.float32 and mask.dtype == torch.bool
        assert set(x.unique().tolist()) <= {0.0, 1.0} and set(y.unique().tolist()) <= {0.0, 1.0}
        scored = {"copy": L, "ar": 2, "rule90": L, "addition": L + 1}[task.NAME]
        assert mask.sum(1).tolist() == [scored] * 4
        assert (y[~mask] == 0).all()  # nothing to predict off the scored positions
        assert T <= 512


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.NAME)
def test_reproducible_and_fresh(task):
    a = task.make_batch(8, 5, gen(1))
    b = task.make_batch(8, 5, gen(1))
    c = task.make_batch(8, 5, gen(2))
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not torch.equal(a[0], c[0])
    g = gen(3)
    assert not torch.equal(task.make_batch(8, 5, g)[0], task.make_batch(8, 5, g)[0])


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.NAME)
def test_length_limits(task):
    for bad in (task.MIN_LEN - 1, task.MAX_LEN + 1):
        with pytest.raises(ValueError):
            task.make_batch(2, bad, gen())


def test_copy_reference():
    for L in (1, 7, 30):
        x, y, mask = copy.make_batch(16, L, gen(L))
        for b in range(16):
            assert x[b, L, 8] == 1 and x[b, :L, 8].sum() == 0
            assert torch.equal(answer_bits(y, mask, b), x[b, :L, :8])
            assert x[b, L + 1:].sum() == 0  # the answer is not in the input


def test_rule90_reference():
    for L in (1, 2, 9, 40):
        x, y, mask = rule90.make_batch(32, L, gen(L))
        for b in range(32):
            cells = [int(v) for v in x[b, :L, 0]]
            expected = []
            for i in range(L):
                left = cells[i - 1] if i > 0 else 0
                right = cells[i + 1] if i < L - 1 else 0
                expected.append(left ^ right)
            assert [int(v) for v in answer_bits(y, mask, b)[:, 0]] == expected


def test_addition_reference():
    for L in (1, 5, 30, 64):
        x, y, mask = addition.make_batch(32, L, gen(L))
        for b in range(32):
            a = sum(int(x[b, i, 0]) << i for i in range(L))
            c = sum(int(x[b, i, 1]) << i for i in range(L))
            got = sum(int(y[b, i, 0]) << i for i in range(L + 1))
            assert got == a + c
            assert x[b, L, 2] == 1 and x[b, :L, 2].sum() == 0


def test_ar_reference():
    for L in (2, 3, 10, 30):
        x, y, mask = ar.make_batch(32, L, gen(L))
        for b in range(32):
            items = [tuple(x[b, 3 * i + 1:3 * i + 3, :6].flatten().tolist()) for i in range(L)]
            assert all(x[b, 3 * i, 6] == 1 for i in range(L))
            assert len(set(items)) == L  # distinct, so the answer is unique
            s = 3 * L
            assert x[b, s, 7] == 1 and x[b, s + 3, 7] == 1
            query = tuple(x[b, s + 1:s + 3, :6].flatten().tolist())
            follower = None
            for i in range(L - 1):
                if items[i] == query:
                    follower = items[i + 1]
            assert follower is not None
            assert tuple(answer_bits(y, mask, b).flatten().tolist()) == follower


def test_random_bits_are_balanced():
    x, _, _ = copy.make_batch(256, 20, gen())
    assert 0.45 < x[:, :20, :8].mean() < 0.55
    x, _, _ = rule90.make_batch(256, 20, gen())
    assert 0.45 < x[:, :20, 0].mean() < 0.55
