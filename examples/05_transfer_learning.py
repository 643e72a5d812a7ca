"""Example 5: transfer learning, by freezing a trained feature extractor.

What it teaches
    The convolutional layers of a trained network compute *features* (strokes, edges,
    corners...) that are useful beyond the task they were trained on. Transfer learning
    keeps them and trains only a new, small classifier "head" for the new task:

    1. pretrain a CNN on the digits 0-4;
    2. freeze its feature extractor: ``features.requires_grad_(False)``: the optimizer
       gets only the head's parameters, and no gradient is even computed for the rest;
    3. put a new head (a fresh Linear layer) on top and train it on the digits 5-9,
       which the features have never seen.

    The script checks that the frozen weights did not change at all, that the head learnt,
    and compares with the same head trained on top of untrained (random) features.

How to run
    python examples/05_transfer_learning.py
    python examples/05_transfer_learning.py --quick      # fewer epochs and images (tests)
"""

import argparse
import os

import numpy as np

import cyconv
from cyconv import functional as F
from cyconv import nn, optim
from cyconv.data import DataLoader, TensorDataset, load_digits
from cyconv.summary import summary


class DigitsCNN(nn.Module):
    """A feature extractor (convolutions -> 128 numbers per image) and a linear head."""

    def __init__(self, classes):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),      # 16 x 4 x 4
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),     # 32 x 2 x 2
            nn.Flatten(),                                                    # 128 features
        )
        self.head = nn.Linear(128, classes)

    def forward(self, x):
        return self.head(self.features(x))


def digits(split, wanted, limit=None):
    """Images of the digits in ``wanted`` with labels renumbered 0, 1, ... (5-9 -> 0-4)."""
    images, labels = load_digits(split)
    keep = np.isin(labels, wanted)
    images, labels = images[keep][:limit], labels[keep][:limit] - min(wanted)
    return images, labels


def train(model, images, labels, epochs, lr=3e-3):
    # Only the parameters that still require gradients go to the optimizer.
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = optim.Adam(trainable, lr=lr)
    loader = DataLoader(TensorDataset(images, labels), batch_size=32, shuffle=True)
    model.train()   # (a frozen BatchNorm would also need .eval() to keep its statistics)
    for _ in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model


def accuracy(model, images, labels):
    model.eval()
    with cyconv.no_grad():
        return float((model(cyconv.Tensor(images)).data.argmax(1) == labels).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        default=os.environ.get("CYCONV_EXAMPLES_QUICK", "0") != "0",
                        help="fewer epochs and images")
    args = parser.parse_args()
    pre_epochs, head_epochs, limit = (2, 2, 300) if args.quick else (10, 10, None)
    cyconv.manual_seed(0)

    # 1. Pretrain on the digits 0-4.
    old_x, old_y = digits("train", [0, 1, 2, 3, 4], limit)
    model = train(DigitsCNN(classes=5), old_x, old_y, pre_epochs)
    print(f"pretrained on digits 0-4: test accuracy "
          f"{accuracy(model, *digits('test', [0, 1, 2, 3, 4])):.3f}")

    # 2. Freeze the feature extractor, 3. put a new head on it for the digits 5-9.
    model.features.requires_grad_(False)
    model.zero_grad()                       # drop the gradients left over from pretraining
    model.head = nn.Linear(128, 5)
    new_x, new_y = digits("train", [5, 6, 7, 8, 9], limit)
    test_x, test_y = digits("test", [5, 6, 7, 8, 9])
    frozen = {name: p.data.copy() for name, p in model.features.named_parameters()}
    head_before = model.head.weight.data.copy()
    before = accuracy(model, test_x, test_y)

    table = summary(model, (1, 8, 8))
    print(f"parameters: {table.total_params:,} in all, {table.trainable_params:,} trainable "
          f"(the head), {table.non_trainable_params:,} frozen (the features)")

    train(model, new_x, new_y, head_epochs, lr=1e-2)    # a single layer: a larger step is fine
    after = accuracy(model, test_x, test_y)

    # The frozen weights are exactly as they were, and got no gradient at all.
    for name, p in model.features.named_parameters():
        assert np.array_equal(p.data, frozen[name]), name
        assert p.grad is None, name
    assert not np.array_equal(model.head.weight.data, head_before)
    assert after > before
    print("frozen weights unchanged: True")
    print(f"digits 5-9 with the new head: test accuracy {before:.3f} before training it "
          f"(chance is 0.2), {after:.3f} after: the head learned")

    # For comparison: the same head on frozen features that were never trained. Random
    # convolutions are not useless (they still respond to local patterns), but features
    # learnt on other digits serve the new ones better: typically 0.92 against 0.88 here.
    cyconv.manual_seed(1)
    scratch = DigitsCNN(classes=5)
    scratch.features.requires_grad_(False)
    train(scratch, new_x, new_y, head_epochs, lr=1e-2)
    print(f"the same head on frozen random features: test accuracy "
          f"{accuracy(scratch, test_x, test_y):.3f}")


if __name__ == "__main__":
    main()
