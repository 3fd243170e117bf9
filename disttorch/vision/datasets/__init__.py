"""torchvision.datasets for disttorch: MNIST, FashionMNIST, CIFAR10, ImageFolder, FakeData, Digits."""
from .cifar import CIFAR10
from .digits import Digits
from .fakedata import FakeData
from .folder import DatasetFolder, ImageFolder
from .mnist import MNIST, FashionMNIST
from .vision import VisionDataset

__all__ = ["CIFAR10", "DatasetFolder", "Digits", "FakeData", "FashionMNIST", "ImageFolder", "MNIST",
           "VisionDataset"]
