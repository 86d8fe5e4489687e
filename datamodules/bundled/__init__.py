"""The data sets that come with the recipes: sin(1/x), MNIST and Fashion-MNIST, CIFAR-10 (and test files of each)."""
