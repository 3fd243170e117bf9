"""vision.datasets readers on small files the tests write themselves."""
import gzip
import hashlib
import os
import pickle
import struct

import numpy as np
import pytest

import disttorch
from disttorch.utils.data import DataLoader
from disttorch.vision import datasets, transforms

Image = pytest.importorskip("PIL.Image")


def write_idx(path, array, gz=False):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C}
    array = np.asarray(array)
    if array.dtype.itemsize > 1:
        array = array.astype(array.dtype.newbyteorder(">"))
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    data = header + array.tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return data


def make_mnist(root, name="MNIST", n_train=6, n_test=4, gz=False):
    raw = root / name / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    content = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) * 3 % 10).astype(np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, gz)
        content[prefix] = (images, labels)
    return content


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_idx_files(tmp_path, gz):
    content = make_mnist(tmp_path, gz=gz)
    train = datasets.MNIST(tmp_path, train=True)
    test = datasets.MNIST(tmp_path, train=False, transform=transforms.ToTensor())
    assert len(train) == 6 and len(test) == 4
    assert train.data.dtype is disttorch.uint8 and train.data.shape == (6, 28, 28)
    assert train.targets.dtype is disttorch.int64 and train.targets.numpy().tolist() == [0, 3, 6, 9, 2, 5]
    img, label = train[1]
    assert isinstance(img, Image.Image) and img.mode == "L" and label == 3
    np.testing.assert_array_equal(np.asarray(img), content["train"][0][1])
    tensor, label = test[3]
    assert tensor.shape == (1, 28, 28) and label == 9
    np.testing.assert_allclose(tensor.numpy()[0], content["t10k"][0][3] / 255.0, rtol=1e-6)
    assert "Split: Test" in repr(test) and "Number of datapoints: 4" in repr(test)


def test_fashion_mnist_uses_its_own_folder(tmp_path):
    make_mnist(tmp_path, name="FashionMNIST")
    ds = datasets.FashionMNIST(tmp_path)
    assert len(ds) == 6 and ds.classes[0] == "T-shirt/top"
    with pytest.raises(RuntimeError, match="MNIST/raw/train-images-idx3-ubyte"):
        datasets.MNIST(tmp_path)


def test_mnist_missing_file_names_it(tmp_path):
    make_mnist(tmp_path)
    os.remove(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte")
    with pytest.raises(RuntimeError, match=r"Dataset not found: .*train-labels-idx1-ubyte \(or train-labels-idx1-ubyte.gz\) "
                                           r"is missing. Use download=True"):
        datasets.MNIST(tmp_path)


def test_mnist_corrupt_files_name_the_file(tmp_path):
    make_mnist(tmp_path)
    images = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-10])  # truncated download
    with pytest.raises(RuntimeError, match=r"train-images-idx3-ubyte is truncated or corrupt: its header promises "
                                           r"shape \(6, 28, 28\) \(4704 bytes of data\) but it holds 4694 bytes"):
        datasets.MNIST(tmp_path)
    images.write_bytes(b"<html>not found</html>")
    with pytest.raises(RuntimeError, match="is not an IDX file"):
        datasets.MNIST(tmp_path)
    write_idx(images, np.zeros((5, 28, 28), np.uint8))  # 5 images, 6 labels
    with pytest.raises(RuntimeError, match="holds 5 images but .* holds 6 labels"):
        datasets.MNIST(tmp_path)


def test_mnist_download_checks_md5_and_extracts(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    resources = []
    rng = np.random.default_rng(1)
    for stem, array in (("train-images-idx3-ubyte", rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)),
                        ("train-labels-idx1-ubyte", np.array([1, 2, 3], np.uint8)),
                        ("t10k-images-idx3-ubyte", rng.integers(0, 256, (2, 28, 28), dtype=np.uint8)),
                        ("t10k-labels-idx1-ubyte", np.array([4, 5], np.uint8))):
        write_idx(mirror / stem, array, gz=True)
        digest = hashlib.md5((mirror / (stem + ".gz")).read_bytes()).hexdigest()
        resources.append((stem + ".gz", digest))
    monkeypatch.setattr(datasets.MNIST, "mirrors", ["http://127.0.0.1:9/", mirror.as_uri() + "/"])
    monkeypatch.setattr(datasets.MNIST, "resources", resources)
    ds = datasets.MNIST(tmp_path / "data", download=True)
    assert ds.targets.numpy().tolist() == [1, 2, 3]
    assert os.path.isfile(tmp_path / "data" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte")

    monkeypatch.setattr(datasets.MNIST, "resources", [(name, "0" * 32) for name, _ in resources])
    with pytest.raises(RuntimeError, match="failed its MD5 check"):
        datasets.MNIST(tmp_path / "other", download=True)
    assert not any(p.name.endswith(".part") for p in (tmp_path / "other" / "MNIST" / "raw").iterdir())


def test_download_when_offline_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(RuntimeError, match=r"Error downloading train-images-idx3-ubyte.gz: every mirror failed.*offline"):
        datasets.MNIST(tmp_path, download=True)


def make_cifar_binary(root, n=5):
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    expected = {}
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        planes = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        records = np.concatenate([labels[:, None], planes.reshape(n, -1)], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())
        expected[name] = (planes.transpose(0, 2, 3, 1), labels)
    return expected


def test_cifar10_binary(tmp_path):
    expected = make_cifar_binary(tmp_path)
    train = datasets.CIFAR10(tmp_path, train=True)
    test = datasets.CIFAR10(tmp_path, train=False, transform=transforms.ToTensor())
    assert len(train) == 25 and len(test) == 5
    assert train.data.shape == (25, 32, 32, 3)
    np.testing.assert_array_equal(train.data[5], expected["data_batch_2"][0][0])  # second file, first record
    assert train.targets[5] == expected["data_batch_2"][1][0]
    img, label = train[7]
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (32, 32)
    tensor, label = test[2]
    assert tensor.shape == (3, 32, 32) and label == expected["test_batch"][1][2]
    np.testing.assert_allclose(tensor.numpy(), expected["test_batch"][0][2].transpose(2, 0, 1) / 255.0, rtol=1e-6)


def test_cifar10_corrupt_and_missing(tmp_path):
    make_cifar_binary(tmp_path)
    batch = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
    batch.write_bytes(batch.read_bytes()[:-1])
    with pytest.raises(RuntimeError, match="data_batch_3.bin is truncated or corrupt: 15364 bytes is not a whole number of 3073-byte"):
        datasets.CIFAR10(tmp_path)
    os.remove(batch)
    with pytest.raises(RuntimeError, match="Dataset not found: .*data_batch_3.bin is missing"):
        datasets.CIFAR10(tmp_path)


def test_cifar10_python_version_is_read_without_running_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        entry = {"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), "labels": [1, 7]}
        (folder / name).write_bytes(pickle.dumps(entry))
    ds = datasets.CIFAR10(tmp_path, train=False)
    assert len(ds) == 2 and ds.targets == [1, 7]
    (folder / "test_batch").write_bytes(pickle.dumps({"data": os.system, "labels": []}))
    with pytest.raises(RuntimeError, match="not allowed"):
        datasets.CIFAR10(tmp_path, train=False)


def test_image_folder(tmp_path):
    for cls, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.new("RGB", (5, 4), colour).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    ds = datasets.ImageFolder(tmp_path, transform=transforms.ToTensor())
    assert ds.classes == ["cat", "dog"] and ds.class_to_idx == {"cat": 0, "dog": 1}
    assert len(ds) == 4 and ds.targets == [0, 0, 1, 1]
    img, label = ds[3]
    assert img.shape == (3, 4, 5) and label == 1 and img.numpy()[2].min() == 1.0
    (tmp_path / "bird").mkdir()
    with pytest.raises(FileNotFoundError, match="Found no valid file for the classes bird"):
        datasets.ImageFolder(tmp_path)
    with pytest.raises(FileNotFoundError, match="Couldn't find any class folder"):
        datasets.ImageFolder(tmp_path / "cat")


def test_fake_data_is_deterministic():
    ds = datasets.FakeData(size=5, image_size=(3, 8, 6), num_classes=4, transform=transforms.ToTensor())
    a, label = ds[2]
    b, label2 = ds[2]
    assert a.shape == (3, 8, 6) and label == label2 and 0 <= label < 4
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(ds[3][0].numpy(), a.numpy())
    with pytest.raises(IndexError, match="FakeData index out of range"):
        ds[5]


def test_digits():
    pytest.importorskip("sklearn")
    train, test = datasets.Digits(train=True), datasets.Digits(train=False)
    assert (len(train), len(test)) == (1437, 360)
    img, label = train[0]
    assert isinstance(img, disttorch.Tensor) and img.dtype is disttorch.float32 and img.shape == (1, 8, 8)
    assert 0.0 <= img.numpy().min() and img.numpy().max() <= 1.0
    from sklearn.datasets import load_digits
    raw = load_digits()
    np.testing.assert_allclose(img.numpy()[0], raw.images[1] / 16.0)  # index 0 is held out for test
    assert label == raw.target[1]
    assert test[1][1] == raw.target[5]
    assert set(test.targets.numpy().tolist()) == set(range(10))
    batch, labels = next(iter(DataLoader(test, batch_size=32)))
    assert batch.shape == (32, 1, 8, 8) and labels.dtype is disttorch.int64


def test_digits_without_scikit_learn_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        datasets.Digits()
