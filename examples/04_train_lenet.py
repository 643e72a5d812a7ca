"""Example 4: train a LeNet-style CNN on handwritten digits, in about 30 lines.

What it teaches
    The whole training loop with the library API, the same shape as in PyTorch:
    data (cyconv.data) -> model (cyconv.nn) -> loss (cyconv.functional) -> gradients
    (loss.backward()) -> update (cyconv.optim), repeated for a few epochs, with a test set
    the network never trains on to measure how well it generalises.

    The data are the 1,797 8x8 UCI digits shipped inside cyconv (no download), already
    split into train / validation / test. The images are too small for the original
    LeNet-5 (two 5x5 convolutions need 32x32), so the network keeps LeNet's plan with 3x3
    convolutions: conv - relu - pool, conv - relu - pool, then fully connected layers.
    (cyconv.models.DigitsNet is the same network.) Expect about 97% test accuracy.

How to run
    python examples/04_train_lenet.py                 # 15 epochs, a few seconds
    python examples/04_train_lenet.py --epochs 30
    python examples/04_train_lenet.py --quick         # 1 epoch on 256 images (tests)
"""

import argparse
import os

import cyconv
from cyconv import functional as F
from cyconv import nn, optim
from cyconv.data import DataLoader, TensorDataset, load_digits


def accuracy(model, images, labels):
    """Fraction of correct predictions, in eval mode and without recording gradients."""
    model.eval()
    with cyconv.no_grad():
        predicted = model(cyconv.Tensor(images)).data.argmax(axis=1)
    return float((predicted == labels).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--quick", action="store_true",
                        default=os.environ.get("CYCONV_EXAMPLES_QUICK", "0") != "0",
                        help="1 epoch on a subset of 256 images")
    args = parser.parse_args()

    # ---- the 30 lines ------------------------------------------------------------------
    cyconv.manual_seed(0)                                    # same weights, same batches
    train_x, train_y = load_digits("train")                  # (1079, 1, 8, 8) in [0, 1]
    test_x, test_y = load_digits("test")                     # (359, 1, 8, 8)
    if args.quick:
        train_x, train_y, args.epochs = train_x[:256], train_y[:256], 1
    loader = DataLoader(TensorDataset(train_x, train_y), batch_size=32, shuffle=True)

    model = nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 16 x 4 x 4
        nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 32 x 2 x 2
        nn.Flatten(),                                                             # 128
        nn.Linear(128, 64), nn.ReLU(),
        nn.Linear(64, 10),                                                        # 10 scores
    )
    optimizer = optim.Adam(model.parameters(), lr=3e-3)

    for epoch in range(1, args.epochs + 1):
        model.train()
        total_loss, seen = 0.0, 0
        for images, labels in loader:
            loss = F.cross_entropy(model(images), labels)    # softmax + negative log-likelihood
            optimizer.zero_grad()                            # forget the previous gradients
            loss.backward()                                  # d loss / d every parameter
            optimizer.step()                                 # move against the gradient
            total_loss += loss.item() * len(labels)
            seen += len(labels)
        print(f"epoch {epoch:2d}: loss {total_loss / seen:.4f}, "
              f"train accuracy {accuracy(model, train_x, train_y):.3f}, "
              f"test accuracy {accuracy(model, test_x, test_y):.3f}")
    # -------------------------------------------------------------------------------------
    print(f"final test accuracy: {accuracy(model, test_x, test_y):.1%}")


if __name__ == "__main__":
    main()
