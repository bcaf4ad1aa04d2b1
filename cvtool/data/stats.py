"""The per-channel statistics images are normalised with; no torch, so task configs can show them."""

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # the book's CIFAR-10 values
CIFAR_STD = (0.2023, 0.1994, 0.2010)
