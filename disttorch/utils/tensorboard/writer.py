"""``SummaryWriter`` with PyTorch's signature, on top of tensorboardX's event-file writer."""
from __future__ import annotations

import numpy as np

__all__ = ["SummaryWriter"]


def _to_numpy(value):
    """disttorch Tensors (also inside lists, tuples and dicts) as NumPy arrays; the rest unchanged."""
    from ...tensor import Tensor
    if isinstance(value, Tensor):
        arr = value.detach().cpu().numpy()
        if arr.dtype.name == "bfloat16":  # tensorboardX's summaries take IEEE floats
            arr = arr.astype(np.float32)
        return arr
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and any(isinstance(v, Tensor) for v in value):
        return type(value)(_to_numpy(v) for v in value)
    return value


def _import_tensorboardx():
    try:
        import tensorboardX
    except ImportError:
        raise ImportError("disttorch.utils.tensorboard needs the tensorboardX package to write event files: "
                          "pip install tensorboardX (or disttorch[tensorboard])") from None
    return tensorboardX


def _forward(name):
    """A SummaryWriter method that converts Tensor arguments and calls tensorboardX's method."""
    def method(self, *args, **kwargs):
        return getattr(self._writer, name)(*[_to_numpy(a) for a in args],
                                           **{k: _to_numpy(v) for k, v in kwargs.items()})
    method.__name__ = name
    method.__doc__ = f"PyTorch's ``SummaryWriter.{name}``; Tensor arguments are converted to NumPy."
    return method


class SummaryWriter:
    """Writes scalars, histograms, images, text, hparams, embeddings, PR curves and the module graph
    to ``log_dir`` (default ``runs/<date>_<host><comment>``) as TensorBoard event files.

    ``SummaryWriter(log_dir=None, comment="", purge_step=None, max_queue=10, flush_secs=120,
    filename_suffix="")``; also a context manager (closes on exit).
    """

    def __init__(self, log_dir=None, comment="", purge_step=None, max_queue=10, flush_secs=120, filename_suffix=""):
        tbx = _import_tensorboardx()
        self._writer = tbx.SummaryWriter(logdir=log_dir, comment=comment, purge_step=purge_step, max_queue=max_queue,
                                         flush_secs=flush_secs, filename_suffix=filename_suffix)
        self.log_dir = self._writer.logdir
        self._writer_args = (max_queue, flush_secs, filename_suffix)
        self._scalar_writers = {}  # add_scalars' one writer per key, as PyTorch lays them out

    def get_logdir(self) -> str:
        return self.log_dir

    add_scalar = _forward("add_scalar")
    add_histogram = _forward("add_histogram")
    add_histogram_raw = _forward("add_histogram_raw")
    add_image = _forward("add_image")
    add_images = _forward("add_images")
    add_image_with_boxes = _forward("add_image_with_boxes")
    add_figure = _forward("add_figure")
    add_video = _forward("add_video")
    add_audio = _forward("add_audio")
    add_text = _forward("add_text")
    add_embedding = _forward("add_embedding")
    add_pr_curve = _forward("add_pr_curve")
    add_pr_curve_raw = _forward("add_pr_curve_raw")
    add_custom_scalars = _forward("add_custom_scalars")
    add_mesh = _forward("add_mesh")

    def add_scalars(self, main_tag, tag_scalar_dict, global_step=None, walltime=None):
        """Several scalars on one chart: each key goes to its own run ``<log_dir>/<main_tag>_<key>``
        (PyTorch's layout), under the tag ``main_tag``."""
        tbx = _import_tensorboardx()
        from tensorboardX import summary
        for tag, value in tag_scalar_dict.items():
            path = self.log_dir + "/" + main_tag.replace("/", "_") + "_" + tag
            writer = self._scalar_writers.get(path)
            if writer is None:
                writer = self._scalar_writers[path] = tbx.FileWriter(path, *self._writer_args)
            writer.add_summary(summary.scalar(main_tag, float(_to_numpy(value))), global_step, walltime)

    def add_hparams(self, hparam_dict, metric_dict, hparam_domain_discrete=None, run_name=None, global_step=None):
        """Hyperparameters and their metrics (TensorBoard's HParams tab)."""
        return self._writer.add_hparams(_to_numpy(hparam_dict), {k: float(_to_numpy(v)) for k, v in
                                                                  metric_dict.items()},
                                        hparam_domain_discrete=hparam_domain_discrete, name=run_name,
                                        global_step=global_step)

    def add_graph(self, model, input_to_model=None, verbose=False, use_strict_trace=True):
        """The module-level dataflow graph of one ``model(*input_to_model)`` pass (Graphs tab)."""
        from ._graph import module_graph
        graph_def = module_graph(model, input_to_model, verbose=verbose)
        self._writer._get_file_writer().add_onnx_graph(graph_def)

    def flush(self):
        self._writer.flush()
        for w in self._scalar_writers.values():
            w.flush()

    def close(self):
        self._writer.close()
        for w in self._scalar_writers.values():
            w.close()
        self._scalar_writers = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


