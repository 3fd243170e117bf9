"""CIFAR-10 from its binary distribution (``root/cifar-10-batches-bin``).

Each ``.bin`` batch is a run of 3073-byte records: one label byte, then the 32 x 32 red, green
and blue planes. The pickled "python version" torchvision downloads (``cifar-10-batches-py``) is
read as well, through an unpickler that only admits NumPy arrays and plain containers.
"""
from __future__ import annotations

import os
import pickle

import numpy as np

from .utils import check_integrity, download_url, extract_archive
from .vision import VisionDataset, as_image

_RECORD = 1 + 3 * 32 * 32


def read_cifar_binary(path: str) -> tuple:
    """(images N x 32 x 32 x 3 uint8, labels N int64) of one binary batch file."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise RuntimeError(f"{path} could not be read ({error})") from error
    if raw.size == 0 or raw.size % _RECORD:
        raise RuntimeError(f"{path} is truncated or corrupt: {raw.size} bytes is not a whole number of "
                           f"{_RECORD}-byte CIFAR records. Delete it and download again (download=True).")
    records = raw.reshape(-1, _RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise RuntimeError(f"{path} has a label {int(labels.max())} outside 0..9: it is corrupt or "
                           f"not a CIFAR-10 batch. Delete it and download again (download=True).")
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # CHW planes -> HWC
    return np.ascontiguousarray(images), labels


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Refuses every global but NumPy's array reconstruction: a batch file cannot run code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"CIFAR batch refers to {module}.{name}, which is not allowed")


def read_cifar_pickle(path: str) -> tuple:
    try:
        with open(path, "rb") as f:
            entry = _ArraysOnlyUnpickler(f, encoding="latin1").load()
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry["labels"] if "labels" in entry else entry["fine_labels"], dtype=np.int64)
    except (OSError, EOFError, KeyError, pickle.UnpicklingError, TypeError, ValueError) as error:
        raise RuntimeError(f"{path} is not a readable CIFAR batch ({error}); delete it and download "
                           f"again (download=True).") from error
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise RuntimeError(f"{path} holds data of shape {data.shape} with {len(labels)} labels; "
                           f"expected N x 3072 with N labels.")
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)), labels


class CIFAR10(VisionDataset):
    """CIFAR-10: 50000 training and 10000 test colour images, 32 x 32, in 10 classes.

    ``data`` is a uint8 array ``N x 32 x 32 x 3`` and ``targets`` a list of ints, as in torchvision;
    a sample is ``(image, label)`` with a PIL RGB image when Pillow is installed, else the
    ``32 x 32 x 3`` uint8 array.
    """

    base_folder = "cifar-10-batches-bin"
    python_folder = "cifar-10-batches-py"
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    filename = "cifar-10-binary.tar.gz"
    tgz_md5 = "c32a1d4ab5d03f1284b67883e8d87530"
    train_list = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"]
    test_list = ["test_batch"]
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

    def __init__(self, root, train: bool = True, transform=None, target_transform=None,
                 download: bool = False) -> None:
        super().__init__(root, transform=transform, target_transform=target_transform)
        self.train = train
        if download:
            self.download()
        images, labels = [], []
        for path, reader in self._batch_files():
            batch_images, batch_labels = reader(path)
            images.append(batch_images)
            labels.append(batch_labels)
        self.data = np.concatenate(images)
        self.targets = np.concatenate(labels).tolist()
        self._load_meta()

    def _batch_files(self) -> list:
        names = self.train_list if self.train else self.test_list
        binary = [os.path.join(self.root, self.base_folder, n + ".bin") for n in names]
        if all(os.path.isfile(p) for p in binary):
            return [(p, read_cifar_binary) for p in binary]
        pickled = [os.path.join(self.root, self.python_folder, n) for n in names]
        if all(os.path.isfile(p) for p in pickled):
            return [(p, read_cifar_pickle) for p in pickled]
        missing = next(p for p in binary if not os.path.isfile(p))
        raise RuntimeError(f"Dataset not found: {missing} is missing. Use download=True to download it, "
                           f"or extract {self.filename} ({self.url}) into {self.root}.")

    def _load_meta(self) -> None:
        meta = os.path.join(self.root, self.base_folder, "batches.meta.txt")
        if os.path.isfile(meta):
            with open(meta) as f:
                names = [line.strip() for line in f if line.strip()]
            if len(names) == len(self.classes):
                self.classes = names
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}

    def _check_exists(self) -> bool:
        names = self.train_list + self.test_list
        return all(os.path.isfile(os.path.join(self.root, self.base_folder, n + ".bin")) for n in names)

    def download(self) -> None:
        """Downloads and extracts the binary archive unless the batches are already there."""
        if self._check_exists():
            return
        archive = os.path.join(self.root, self.filename)
        if not check_integrity(archive, self.tgz_md5):
            try:
                download_url(self.url, self.root, self.filename, self.tgz_md5)
            except OSError as error:
                raise RuntimeError(f"Error downloading {self.url}: {getattr(error, 'reason', error)}. If this "
                                   f"machine is offline, download the file elsewhere and extract it into "
                                   f"{self.root}.") from error
        extract_archive(archive, self.root)

    def __getitem__(self, index: int):
        img, target = as_image(self.data[index].copy()), self.targets[index]
        return self._transformed(img, target)

    def __len__(self) -> int:
        return len(self.data)

    def extra_repr(self) -> str:
        return f"Split: {'Train' if self.train is True else 'Test'}"
