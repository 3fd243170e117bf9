"""MNIST and Fashion-MNIST from their standard IDX files (gzipped or not) under ``root/<Name>/raw``."""
from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

from disttorch.utils.data import _arrays

from .utils import download_from_mirrors, extract_archive
from .vision import VisionDataset, as_image

# IDX type codes -> big-endian NumPy types (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str) -> np.ndarray:
    """Reads an IDX file (``.gz`` is decompressed) into a native-endian array.

    Raises RuntimeError naming the file when the magic number, the type or the length is wrong.
    """
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except (OSError, EOFError, zlib.error) as error:
        raise RuntimeError(f"{path} could not be read ({error}); it is probably a truncated or corrupt "
                           f"download. Delete it and download again (download=True).") from error
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise RuntimeError(f"{path} is not an IDX file (its magic number is 0x{data[:4].hex() or 'empty'}); "
                           f"it may be corrupt or another format. Delete it and download again (download=True).")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise RuntimeError(f"{path} is truncated inside its header; delete it and download again (download=True).")
    dims = struct.unpack(f">{ndim}i", data[4:header])
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise RuntimeError(f"{path} is truncated or corrupt: its header promises shape {tuple(dims)} "
                           f"({expected} bytes of data) but it holds {len(data) - header} bytes. "
                           f"Delete it and download again (download=True).")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


class MNIST(VisionDataset):
    """The MNIST handwritten digits: 60000 training and 10000 test images, 28 x 28 grey levels.

    Reads ``root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (or the ``.gz`` files).
    ``download=True`` fetches missing files from the mirrors, checking their MD5 sums.
    ``data`` is a uint8 tensor ``N x 28 x 28`` and ``targets`` an int64 tensor; a sample is
    ``(image, label)`` where the image is a PIL image ("L") when Pillow is installed, else a uint8
    ``28 x 28`` array; pass ``transform=transforms.ToTensor()`` for a ``1 x 28 x 28`` float tensor.
    """

    mirrors = [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ]
    resources = [
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ]
    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four",
               "5 - five", "6 - six", "7 - seven", "8 - eight", "9 - nine"]

    def __init__(self, root, train: bool = True, transform=None, target_transform=None,
                 download: bool = False) -> None:
        super().__init__(root, transform=transform, target_transform=target_transform)
        self.train = train
        if download:
            self.download()
        self.data, self.targets = self._load_data()

    @property
    def raw_folder(self) -> str:
        return os.path.join(self.root, self.__class__.__name__, "raw")

    @property
    def class_to_idx(self) -> dict:
        return {name: i for i, name in enumerate(self.classes)}

    def _find(self, stem: str) -> str | None:
        """The path of ``stem`` in the raw folder, plain or gzipped, or None."""
        for name in (stem, stem + ".gz"):
            path = os.path.join(self.raw_folder, name)
            if os.path.isfile(path):
                return path
        return None

    def _check_exists(self) -> bool:
        return all(self._find(filename[:-3]) is not None for filename, _ in self.resources)

    def _load_data(self):
        prefix = "train" if self.train else "t10k"
        paths = []
        for stem in (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"):
            path = self._find(stem)
            if path is None:
                raise RuntimeError(
                    f"Dataset not found: {os.path.join(self.raw_folder, stem)} (or {stem}.gz) is missing. "
                    f"Use download=True to download it, or copy the {self.__class__.__name__} IDX files "
                    f"into {self.raw_folder}.")
            paths.append(path)
        images, labels = read_idx(paths[0]), read_idx(paths[1])
        if images.ndim != 3 or images.dtype != np.uint8:
            raise RuntimeError(f"{paths[0]} should hold uint8 images N x H x W, but holds {images.dtype} "
                               f"data of shape {images.shape}; is it the right file?")
        if labels.ndim != 1:
            raise RuntimeError(f"{paths[1]} should hold one label per image, but holds shape {labels.shape}; "
                               f"is it the right file?")
        if len(images) != len(labels):
            raise RuntimeError(f"{paths[0]} holds {len(images)} images but {paths[1]} holds {len(labels)} "
                               f"labels; one is corrupt or from another dataset. Delete both and download again.")
        return _arrays.wrap(images), _arrays.wrap(labels.astype(np.int64))

    def __getitem__(self, index: int):
        img = as_image(_arrays.array_of(self.data)[index].copy())
        target = int(_arrays.array_of(self.targets)[index])
        return self._transformed(img, target)

    def __len__(self) -> int:
        return len(_arrays.array_of(self.data))

    def download(self) -> None:
        """Downloads (and decompresses) the files that are missing; verifies MD5 sums."""
        if self._check_exists():
            return
        os.makedirs(self.raw_folder, exist_ok=True)
        for filename, md5 in self.resources:
            if self._find(filename[:-3]) is not None:
                continue
            path = download_from_mirrors(filename, self.mirrors, self.raw_folder, md5)
            extract_archive(path, self.raw_folder)

    def extra_repr(self) -> str:
        return f"Split: {'Train' if self.train is True else 'Test'}"


class FashionMNIST(MNIST):
    """Zalando's Fashion-MNIST: MNIST's format and sizes, ten kinds of clothing."""

    mirrors = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
    resources = [
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    ]
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
