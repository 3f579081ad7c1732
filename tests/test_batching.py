import torch

from seqtrain.data.batching import SequenceLoader, bucket_batches, pad_batch


def test_every_example_lands_in_exactly_one_batch():
    lengths = [int(x) for x in torch.randint(1, 500, (1000,), generator=torch.Generator().manual_seed(0))]
    batches = bucket_batches(lengths, 32, torch.Generator().manual_seed(1))
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000))
    assert all(len(b) <= 32 for b in batches)


def test_buckets_pad_far_less_than_random_batches():
    lengths = [int(x) for x in torch.randint(1, 500, (2000,), generator=torch.Generator().manual_seed(0))]

    def padding(batches):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    bucketed = bucket_batches(lengths, 32, torch.Generator().manual_seed(1))
    perm = torch.randperm(2000, generator=torch.Generator().manual_seed(1)).tolist()
    shuffled = [perm[i : i + 32] for i in range(0, 2000, 32)]
    assert padding(bucketed) < 0.1 * padding(shuffled)


def test_pad_batch_pads_with_zero_to_the_longest():
    tokens, lengths = pad_batch([torch.tensor([5, 6, 7]), torch.tensor([8])])
    assert tokens.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert lengths.tolist() == [3, 1]


def test_loader_order_is_seeded_per_epoch():
    seqs = [torch.arange(1, n + 2) for n in range(100)]
    loader = SequenceLoader(seqs, torch.arange(100), batch_size=8, shuffle=True, seed=3)

    def order(epoch):
        loader.set_epoch(epoch)
        return [b.targets.tolist() for b in loader]

    assert order(0) == order(0)
    assert order(0) != order(1)
    batch = next(iter(loader))
    assert batch.tokens.shape[1] == int(batch.lengths.max())
