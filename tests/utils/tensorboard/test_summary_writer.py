"""SummaryWriter writes real TensorBoard event files: read back record by record (length and data
CRCs checked) and decoded, the scalars, histograms, images, text and module graph hold the values
and shapes that were logged."""
import glob
import io
import struct

import pytest

import disttorch as dt
from disttorch import nn

pytest.importorskip("tensorboardX", reason="SummaryWriter writes through tensorboardX")
from tensorboardX.proto import event_pb2
from tensorboardX.proto.graph_pb2 import GraphDef
from tensorboardX.record_writer import masked_crc32c

from disttorch.utils.tensorboard import SummaryWriter


def read_events(log_dir):
    """Every Event in the event files under ``log_dir``, checking the TFRecord framing and CRCs."""
    events = []
    for path in sorted(glob.glob(f"{log_dir}/**/events.out.tfevents.*", recursive=True)):
        data = open(path, "rb").read()
        f = io.BytesIO(data)
        while f.tell() < len(data):
            header = f.read(8)
            (length,) = struct.unpack("<Q", header)
            assert struct.unpack("<I", f.read(4))[0] == masked_crc32c(header)
            payload = f.read(length)
            assert struct.unpack("<I", f.read(4))[0] == masked_crc32c(payload)
            events.append(event_pb2.Event.FromString(payload))
    return events


def summaries(events):
    return [(e.step, v) for e in events if e.HasField("summary") for v in e.summary.value]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2 * 4 * 4, 3)

    def forward(self, x):
        x = dt.relu(self.conv(x))        # a functional op between modules
        return self.fc(x.flatten(1))


def test_scalars_histograms_images_text(tmp_path):
    with SummaryWriter(log_dir=str(tmp_path)) as w:
        assert w.get_logdir() == str(tmp_path)
        for step in range(3):
            w.add_scalar("loss", dt.tensor(1.5 - step), step)
        w.add_scalars("run", {"a": dt.tensor(2.0), "b": 3.0}, 0)
        w.add_histogram("weights", dt.arange(100.0), 7)
        w.add_image("img", dt.ones(3, 4, 5) * 0.5, 0)
        w.add_text("note", "hello", 0)
    vals = summaries(read_events(tmp_path))
    loss = [(s, v.simple_value) for s, v in vals if v.tag == "loss"]
    assert loss == [(0, 1.5), (1, 0.5), (2, -0.5)]
    hist = next(v.histo for s, v in vals if v.tag == "weights")
    assert (hist.min, hist.max, hist.num, hist.sum) == (0.0, 99.0, 100.0, 4950.0)
    img = next(v.image for s, v in vals if v.tag == "img")
    assert (img.height, img.width, img.colorspace) == (4, 5, 3) and img.encoded_image_string[:4] == b"\x89PNG"
    assert any(v.tag.startswith("note") for s, v in vals)
    sub = summaries(read_events(tmp_path / "run_a"))
    assert [v.simple_value for s, v in sub] == [2.0]


def test_graph_records_modules_shapes_and_dataflow(tmp_path):
    with SummaryWriter(log_dir=str(tmp_path)) as w:
        w.add_graph(Net(), dt.randn(2, 1, 6, 6))
    graph = next(GraphDef.FromString(e.graph_def) for e in read_events(tmp_path) if e.graph_def)
    nodes = {n.name: n for n in graph.node}
    assert set(nodes) == {"input/input.0", "Net/conv", "Net/fc", "output/output.0"}
    assert nodes["Net/conv"].op == "Conv2d" and list(nodes["Net/conv"].input) == ["input/input.0"]
    assert list(nodes["Net/fc"].input) == ["Net/conv"]  # found through relu and flatten
    assert list(nodes["output/output.0"].input) == ["Net/fc"]
    shape = nodes["Net/conv"].attr["_output_shapes"].list.shape[0]
    assert [d.size for d in shape.dim] == [2, 2, 4, 4]
