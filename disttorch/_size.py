"""torch.Size: a tuple of ints that prints as ``torch.Size([2, 3])``."""


class Size(tuple):
    """The shape of a tensor; a tuple subclass, so it compares equal to plain tuples."""

    __slots__ = ()

    def __new__(cls, seq=()):
        return tuple.__new__(cls, (int(s) for s in seq))

    @classmethod
    def _of_shape(cls, shape):
        """From an array's ``shape`` (already a tuple of ints): no per-element conversion."""
        return tuple.__new__(cls, shape)

    def __repr__(self):
        return f"disttorch.Size([{', '.join(str(s) for s in self)}])"

    __str__ = __repr__

    def numel(self) -> int:
        n = 1
        for s in self:
            n *= s
        return n

    def __getitem__(self, item):
        out = tuple.__getitem__(self, item)
        return Size(out) if isinstance(item, slice) else out

    def __add__(self, other):
        return Size(tuple(self) + tuple(other))

    def __reduce__(self):
        return (Size, (tuple(self),))
