"""A TensorBoard GraphDef of a model's module-level dataflow, from one forward pass.

Forward hooks record every leaf module's call; the autograd graph (``grad_fn.next_functions``)
links each call's inputs back to the leaf call or model input that produced them, through any
functional ops in between. Nodes are named by module path (``Net/conv1``), so TensorBoard groups
them by parent module; each carries its output shape.
"""
from __future__ import annotations

from ...autograd.grad_mode import enable_grad
from ...tensor import Tensor


def _leaves(out):
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _leaves(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _leaves(o)]
    return []


def _shape_attr(tensors):
    from tensorboardX.proto.attr_value_pb2 import AttrValue
    from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto
    shapes = [TensorShapeProto(dim=[TensorShapeProto.Dim(size=int(s)) for s in t.shape]) for t in tensors]
    return AttrValue(list=AttrValue.ListValue(shape=shapes))


def module_graph(model, input_to_model, verbose=False):
    """The GraphDef (tensorboardX proto) of ``model(*input_to_model)``."""
    from tensorboardX.proto.attr_value_pb2 import AttrValue
    from tensorboardX.proto.graph_pb2 import GraphDef
    from tensorboardX.proto.node_def_pb2 import NodeDef
    from tensorboardX.proto.versions_pb2 import VersionDef

    inputs = input_to_model if isinstance(input_to_model, (list, tuple)) else (input_to_model,)
    root = type(model).__name__
    produced_by = {}  # autograd node or input tensor id -> graph node name
    nodes = []
    feed = []
    for i, x in enumerate(inputs):
        if isinstance(x, Tensor) and x.is_floating_point():
            x = x.detach().requires_grad_(True)  # so the autograd graph reaches back to it
        name = f"input/input.{i}"
        if isinstance(x, Tensor):
            produced_by[id(x)] = name
            nodes.append(NodeDef(name=name, op="IO Node", attr={"_output_shapes": _shape_attr([x])}))
        feed.append(x)
    input_by_tensor = {id(x): produced_by[id(x)] for x in feed if isinstance(x, Tensor)}

    def producers(t):
        """Graph nodes feeding tensor ``t``: walk its autograd graph back to recorded producers."""
        if id(t) in input_by_tensor:
            return [input_by_tensor[id(t)]]
        found, seen = [], set()
        stack = [t.grad_fn] if t.grad_fn is not None else []
        while stack:
            fn = stack.pop()
            if fn is None or id(fn) in seen:
                continue
            seen.add(id(fn))
            if id(fn) in produced_by:
                found.append(produced_by[id(fn)])
                continue
            var = getattr(fn, "variable", None)
            if var is not None:
                if id(var) in input_by_tensor:
                    found.append(input_by_tensor[id(var)])
                continue  # a parameter: part of its module's node
            stack.extend(f for f, _ in getattr(fn, "next_functions", ()))
        return sorted(set(found), key=found.index)

    names = {m: (f"{root}/{n}" if n else root) for n, m in model.named_modules()}
    handles = []

    def hook(module, args, out):
        name = names[module]
        outs = _leaves(out)
        ins = [p for a in _leaves(args) for p in producers(a)]
        attr = {"_output_shapes": _shape_attr(outs), "module": AttrValue(s=repr(module).encode())}
        nodes.append(NodeDef(name=name, op=type(module).__name__, input=sorted(set(ins), key=ins.index),
                             attr=attr))
        for o in outs:
            if o.grad_fn is not None:
                produced_by[id(o.grad_fn)] = name
        if verbose:
            print(f"{name}: {type(module).__name__} <- {ins} -> {[tuple(o.shape) for o in outs]}")

    for m in names:
        if not any(True for _ in m.children()):
            handles.append(m.register_forward_hook(hook))
    try:
        with enable_grad():
            out = model(*feed)
    finally:
        for h in handles:
            h.remove()
    for i, o in enumerate(_leaves(out)):
        nodes.append(NodeDef(name=f"output/output.{i}", op="IO Node", input=producers(o),
                             attr={"_output_shapes": _shape_attr([o])}))
    return GraphDef(node=nodes, versions=VersionDef(producer=22))
