import pytest
import torch

from datamodules import SinDataModule
from datamodules.base.tensor_batches import TensorBatches


def test_sizes_range_and_target():
    dm = SinDataModule()
    dm.setup("fit")
    for split, n in ((dm.train, 2000), (dm.val, 2000), (dm.test, 2000)):
        x, y = split
        assert x.shape == (n, 1) and y.shape == (n, 1)
        assert x.dtype == torch.float32
        assert x.min() >= 0.05 and x.max() < 1.05
        torch.testing.assert_close(y, torch.sin(1 / x))
    # u^4 piles the points up near 0.05: more than half of them below 0.05 + 0.5^4
    assert (dm.train[0] < 0.05 + 0.5**4).float().mean() > 0.45


def test_deterministic_under_seed_and_disjoint_splits():
    a, b, c = SinDataModule(seed=1), SinDataModule(seed=1), SinDataModule(seed=2)
    for dm in (a, b, c):
        dm.setup()
    assert torch.equal(a.train[0], b.train[0]) and torch.equal(a.val[0], b.val[0])
    assert not torch.equal(a.train[0], c.train[0])
    # the splits are consecutive draws of one seeded stream: distinct samples, none reused
    from datamodules.bundled.sin import sample_sin_inverse

    x_all, _ = sample_sin_inverse(6000, torch.Generator().manual_seed(1))
    torch.testing.assert_close(torch.cat([a.train[0], a.val[0], a.test[0]]), x_all)
    assert not torch.equal(a.train[0], a.val[0])


def test_custom_sizes_and_bad_size():
    dm = SinDataModule(train_size=10, val_size=3, test_size=4)
    dm.setup()
    assert len(dm.train[0]) == 10 and len(dm.val[0]) == 3 and len(dm.test[0]) == 4
    with pytest.raises(ValueError, match="--data.val_size must be >= 1"):
        SinDataModule(val_size=0)
    with pytest.raises(ValueError, match="--data.batch_size must be >= 1"):
        SinDataModule(batch_size=0)


def test_batches_are_slices_of_memory_not_collated_samples():
    x = torch.arange(10).float().unsqueeze(1)
    y = x * 2
    batches = list(TensorBatches(x, y, batch_size=4))
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    assert batches[0][0].data_ptr() == x.data_ptr()  # a view, no copy
    loader = TensorBatches(x, y, batch_size=4, shuffle=True, seed=3)
    first = torch.cat([b[0] for b in loader])
    again = torch.cat([b[0] for b in loader])
    loader.set_epoch(1)
    other = torch.cat([b[0] for b in loader])
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert sorted(first.flatten().tolist()) == x.flatten().tolist()
    for xb, yb in loader:
        assert torch.equal(yb, xb * 2)  # pairs stay together


@pytest.mark.parametrize("n", [12, 13])  # 13: no rank count divides it
@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_get_disjoint_shards_covering_the_data(world_size, n):
    x = torch.arange(n)

    def shards(**kwargs):
        found = []
        for rank in range(world_size):
            loader = TensorBatches(x, batch_size=5, seed=0, rank=rank, world_size=world_size, **kwargs)
            loader.set_epoch(4)
            found.append(torch.cat([b[0] for b in loader]).tolist())
        return found

    # training: every rank steps alike; short shards are padded by wrapping, as DistributedSampler does
    train = shards(shuffle=True)
    assert len({len(s) for s in train}) == 1 and len(train[0]) == -(-n // world_size)
    flat = [v for s in train for v in s]
    assert set(flat) == set(range(n))
    assert len(flat) - len(set(flat)) == len(train[0]) * world_size - n  # repeats: only the padding
    # evaluation: no padding, so every sample counts exactly once
    evaluation = shards(shuffle=False, pad_shards=False)
    flat = [v for s in evaluation for v in s]
    assert sorted(flat) == list(range(n))


def test_a_resumed_epoch_leaves_out_the_batches_already_trained():
    loader = TensorBatches(torch.arange(10), batch_size=3, shuffle=True, seed=1)
    loader.set_epoch(2)
    full = [b[0].tolist() for b in loader]
    loader.skip_batches = 2
    assert [b[0].tolist() for b in loader] == full[2:]
    assert [b[0].tolist() for b in loader] == full  # once: the next epochs are whole


def test_the_loader_state_resumes_its_epoch_where_training_stopped():
    """Lightning saves a training loader's state_dict; the trained count (fed after each step) comes back."""
    loader = TensorBatches(torch.arange(10), batch_size=3, shuffle=True, seed=1)
    assert loader.state_dict() == {}  # nothing counted: a resume starts the epoch over, as with any loader
    loader.set_epoch(2)
    full = [b[0].tolist() for b in loader]
    for _ in range(2):
        loader.count_trained()
    state = loader.state_dict()
    assert state == {"epoch": 2, "trained": 2}
    resumed = TensorBatches(torch.arange(10), batch_size=3, shuffle=True, seed=1)
    resumed.load_state_dict(state)
    assert [b[0].tolist() for b in resumed] == full[2:]
