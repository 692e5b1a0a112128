"""Task generators checked against brute-force references written independently of them."""
import pytest
import torch

from tasks import addition, ar, copy, mqar, rule90, tokens

TASKS = (copy, ar, rule90, addition, mqar)
SCORED = {"mqar": lambda L: L, "copy": lambda L: L, "ar": lambda L: 2, "rule90": lambda L: L, "addition": lambda L: L + 1}


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def bits(t):
    return [int(v) for v in t.flatten().tolist()]


def lengths(task):
    return (task.MIN_LEN, task.MIN_LEN + 1, 9, min(task.MAX_LEN, 300))


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.NAME)
def test_interface(task):
    for name in ("NAME", "IN_DIM", "OUT_DIM", "MAX_LEN", "DESCRIPTION", "num_tokens", "make_batch"):
        assert hasattr(task, name), name
    assert task.__name__ == f"tasks.{task.NAME}"
    assert len(task.DESCRIPTION) > 100
    # the usable length comes from the checkpoint's sliding window: 512 for the 270M, 1024 for Gemma 4 31B
    for window in (512, 1024):
        longest = tokens.max_length(task, window)
        if task is mqar:  # limited by distinct 6-bit keys, not by the window
            assert longest == 2 ** task.BITS
        else:
            assert task.num_tokens(longest) <= window < task.num_tokens(longest + 1)  # largest L that fits


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.NAME)
def test_shapes_masks_and_values(task):
    for L in lengths(task):
        x, y, mask = task.make_batch(4, L, gen(L))
        T = task.num_tokens(L)
        assert x.shape == (4, T, task.IN_DIM) and y.shape == (4, T, task.OUT_DIM) and mask.shape == (4, T)
        assert x.dtype == y.dtype == torch.float32 and mask.dtype == torch.bool
        assert set(x.unique().tolist()) <= {0.0, 1.0} and set(y.unique().tolist()) <= {0.0, 1.0}
        assert mask.sum(1).tolist() == [SCORED[task.NAME](L)] * 4
        assert (y[~mask] == 0).all()  # nothing to predict off the scored positions


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.NAME)
def test_reproducible_and_fresh(task):
    a = task.make_batch(8, 5, gen(1))
    b = task.make_batch(8, 5, gen(1))
    c = task.make_batch(8, 5, gen(2))
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not torch.equal(a[0], c[0])
    g = gen(3)  # consecutive calls on one generator give new data
    assert not torch.equal(task.make_batch(8, 5, g)[0], task.make_batch(8, 5, g)[0])


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.NAME)
def test_length_limits(task):
    for bad in {0, task.MIN_LEN - 1, task.MAX_LEN + 1}:
        with pytest.raises(ValueError, match=task.NAME):
            task.make_batch(2, bad, gen())


def test_copy_reference():
    for L in lengths(copy):
        x, y, mask = copy.make_batch(8, L, gen(L))
        for b in range(8):
            assert bits(x[b, :, 8]) == [0] * L + [1] + [0] * L  # delimiter only between the halves
            assert bits(x[b, L, :8]) == [0] * 8 and bits(x[b, L + 1:]) == [0] * (L * 9)  # answer not in input
            assert [i for i in range(2 * L + 1) if mask[b, i]] == list(range(L + 1, 2 * L + 1))
            for k in range(L):
                assert bits(y[b, L + 1 + k]) == bits(x[b, k, :8])


def test_rule90_reference():
    for L in lengths(rule90):
        x, y, mask = rule90.make_batch(8, L, gen(L))
        for b in range(8):
            assert bits(x[b, :, 1]) == [0] * L + [1] + [0] * L
            assert bits(x[b, L + 1:]) == [0] * (2 * L)
            cells = bits(x[b, :L, 0])
            expected = []
            for i in range(L):
                left = cells[i - 1] if i - 1 >= 0 else 0  # null boundary
                right = cells[i + 1] if i + 1 < L else 0
                expected.append(left ^ right)
            assert [i for i in range(2 * L + 1) if mask[b, i]] == list(range(L + 1, 2 * L + 1))
            assert bits(y[b, L + 1:, 0]) == expected


def test_addition_reference():
    for L in lengths(addition):
        x, y, mask = addition.make_batch(8, L, gen(L))
        assert mask.all()
        for b in range(8):
            assert bits(x[b, :, 2]) == [0] * L + [1] and bits(x[b, L, :2]) == [0, 0]
            a = sum(bit << i for i, bit in enumerate(bits(x[b, :L, 0])))  # LSB first
            c = sum(bit << i for i, bit in enumerate(bits(x[b, :L, 1])))
            got = sum(bit << i for i, bit in enumerate(bits(y[b, :, 0])))
            assert got == a + c


def test_ar_reference():
    queried = set()
    for L in lengths(ar):
        x, y, mask = ar.make_batch(16, L, gen(L))
        s = 3 * L  # start of the query block
        for b in range(16):
            items = []
            for i in range(L):
                assert bits(x[b, 3 * i, :]) == [0] * 6 + [1, 0]  # item delimiter
                assert bits(x[b, 3 * i + 1:3 * i + 3, 6:]) == [0] * 4
                items.append(tuple(bits(x[b, 3 * i + 1:3 * i + 3, :6])))
            assert len(set(items)) == L  # distinct, so the answer is unique
            assert bits(x[b, s]) == bits(x[b, s + 3]) == [0] * 6 + [0, 1]  # query delimiters
            assert bits(x[b, s + 4:]) == [0] * 16  # the answer slots are blank
            query = tuple(bits(x[b, s + 1:s + 3, :6]))
            follower = None
            for i in range(L - 1):  # the last item has no successor, so it is never the query
                if items[i] == query:
                    follower = items[i + 1]
                    if L == 3:
                        queried.add(i)
            assert follower is not None
            assert [i for i in range(s + 6) if mask[b, i]] == [s + 4, s + 5]
            assert tuple(bits(y[b, s + 4:s + 6])) == follower
    assert queried == {0, 1}  # with 3 items both allowed query slots turn up


def test_random_bits_are_balanced():
    L = 20
    x, _, _ = copy.make_batch(512, L, gen())
    assert 0.4 < x[:, :L, :8].mean() < 0.6
    x, _, _ = rule90.make_batch(512, L, gen())
    assert 0.4 < x[:, :L, 0].mean() < 0.6
    x, _, _ = addition.make_batch(512, L, gen())
    assert 0.4 < x[:, :L, 0].mean() < 0.6 and 0.4 < x[:, :L, 1].mean() < 0.6
    x, _, _ = ar.make_batch(512, L, gen())
    data = x[:, :3 * L].view(512, L, 3, 8)[:, :, 1:, :6]
    assert 0.4 < data.mean() < 0.6
    x, y, _ = mqar.make_batch(512, L, gen())
    assert 0.4 < x[:, :2 * L, :6].mean() < 0.6 and 0.4 < y[:, 2 * L:].mean() < 0.6


def test_mqar_reference():
    orders = set()
    for L in lengths(mqar):
        x, y, mask = mqar.make_batch(16, L, gen(L))
        for b in range(16):
            code = lambda t: sum(bit << i for i, bit in enumerate(bits(t[:6])))  # LSB first
            table = {}
            for i in range(L):
                assert bits(x[b, 2 * i, 6:]) == [1, 0, 0] and bits(x[b, 2 * i + 1, 6:]) == [0, 1, 0]
                table[code(x[b, 2 * i])] = code(x[b, 2 * i + 1])
            assert len(table) == L  # keys distinct within the sequence
            asked = []
            for j in range(L):
                q = x[b, 2 * L + j]
                assert bits(q[6:]) == [0, 0, 1] and mask[b, 2 * L + j]
                asked.append(code(q))
                assert code(y[b, 2 * L + j]) == table[code(q)]  # the value paired with that key
            assert sorted(asked) == sorted(table)  # every key asked exactly once
            assert not mask[b, :2 * L].any()
            if L == 3:
                keys = [code(x[b, 2 * i]) for i in range(L)]
                orders.add(tuple(keys.index(k) for k in asked))
    assert len(orders) == 6  # query order is independent of list order: all 3! orders turn up
