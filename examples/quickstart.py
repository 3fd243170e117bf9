"""The seed notes' PyTorch walk-through (tensors, autograd, a model, losses, optimizers, data), run
on disttorch: ``python examples/quickstart.py``. Each section is one of the seed snippets, with
``import torch`` replaced by ``import disttorch as torch``."""

# ---- 01_create.py ----
# Seed: creating tensors (zeros / ones / randn / tensor from scalar, list, numpy, another tensor)
import numpy as np
import disttorch as torch

zeros_tensor = torch.zeros(5, 3)
ones_tensor = torch.ones(5, 3)
random_tensor = torch.randn(5, 3)
print(zeros_tensor)
print(ones_tensor.dtype, ones_tensor.shape)
print(random_tensor.shape, random_tensor.dtype)

scalar_tensor = torch.tensor(3.14)
print(scalar_tensor)
list_tensor = torch.tensor([1, 2, 3])
print(list_tensor)
numpy_array = np.array([4, 5, 6], dtype=np.int32)
numpy_tensor = torch.tensor(numpy_array)
print(numpy_tensor)
empty_tensor = torch.tensor([])
print(empty_tensor)
x = torch.tensor([1, 2, 3])
y = x.clone().detach()
x[0] = 100
print(x)
print(y)
print(torch.tensor([[1.5, 2.0], [3.25, -4.0]]))
print(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
print(torch.tensor([True, False]))

# ---- 02_clone_detach.py ----
# Seed: .clone() keeps the graph, .detach() leaves it; integer tensors cannot require grad
import disttorch as torch

try:
    torch.tensor([1, 2, 3], requires_grad=True)
except RuntimeError as e:
    print("RuntimeError:", e)

x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
y = x.clone()
print(x)
print(y)
z = x.detach()
print(z)
print(z.requires_grad, y.requires_grad, y.is_leaf, x.is_leaf)
z[0] = 10.0          # detach shares memory with x
print(x)

# ---- 03_size.py ----
# Seed: size() returns torch.Size, a tuple subclass
import disttorch as t

x = t.rand(5, 3)
print(x.size())
print(x.size()[0])
print(x.size(0))
print(x.size()[1])
print(x.size(1))
print(isinstance(x.size(), tuple), x.shape == (5, 3), x.dim(), x.numel())

# ---- 04_add.py ----
# Seed: torch.add / Tensor.add / Tensor.add_ (and alpha)
import disttorch as torch

tensor1 = torch.tensor([[1, 2], [3, 4]])
tensor2 = torch.tensor([[5, 6], [7, 8]])
result = torch.add(tensor1, tensor2)
print(result)
print(tensor1.add(tensor2))
print(torch.add(tensor1, tensor2, alpha=10))
print(tensor1 + tensor2 * 2 - 1)
tensor = torch.tensor([[1, 2], [3, 4]])
tensor.add_(2)
print(tensor)
f = torch.tensor([0.5, 1.5])
print(torch.add(f, 1), f + torch.tensor([[1.0], [2.0]]))

# ---- 05_inplace.py ----
# Seed: functions ending in _ work in place
import disttorch as torch

tensor = torch.tensor([1, 2, 3])
tensor.add_(1)
print(tensor)
tensor.mul_(2)
print(tensor)
tensor.neg_()
print(tensor)
f = torch.ones(2, 2)
f.sub_(0.25).div_(2)
print(f)

# ---- 06_indexing.py ----
# Seed: indexing, slicing, boolean masks, where, masked_select
import disttorch as torch

tensor = torch.tensor([[1, 2, 3], [4, 5, 6]])
element = tensor[0, 1]
print(element)
tensor = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
subset = tensor[1:3, 0:2]
print(subset)
print(tensor[:, -1], tensor[-1])
tensor = torch.tensor([1, 2, 3, 4, 5, 6])
selected_elements = tensor[tensor > 3]
print(selected_elements)
print(torch.where(tensor > 3, tensor, torch.zeros_like(tensor)))
print(torch.masked_select(tensor, tensor % 2 == 0))
tensor[tensor > 4] = 0
print(tensor)

# ---- 07_numpy.py ----
# Seed: Tensor <-> NumPy conversion shares memory
import numpy as np
import disttorch as torch

tensor = torch.tensor([1, 2, 3, 4, 5])
array = tensor.numpy()
print(array)
array = np.square(array)
print(array)
tensor = torch.from_numpy(array)
print(tensor)
array[0] = 100
print(array)
print(tensor)
t2 = torch.ones(3)
a2 = t2.numpy()
t2.add_(1)
print(a2)
c = tensor.clone()
array[1] = -1
print(c)

# ---- 08_scalar_item.py ----
# Seed: 0-dim tensors, item(), tensor[idx] is a 0-dim tensor
import disttorch as torch

scalar_tensor = torch.tensor(5)
print(scalar_tensor)
print(scalar_tensor.shape)
vector_tensor = torch.tensor([5])
print(vector_tensor)
print(vector_tensor.shape)
tensor_value = vector_tensor[0]
print(tensor_value)
scalar_value = vector_tensor.item()
print(scalar_value, type(scalar_value).__name__)
print(torch.tensor(2.5).item(), torch.tensor([[7]]).item())

# ---- 09_autograd.py ----
# Seed: requires_grad, backward, .grad
import disttorch as torch

x = torch.tensor(3.0, requires_grad=True)
y = torch.tensor(4.0, requires_grad=True)
z = x ** 2 + y ** 3
z.backward()
print(x.grad)
print(y.grad)

a = torch.tensor(5.0, requires_grad=True)
b = torch.tensor(3.0, requires_grad=True)
c = torch.tensor(2.0, requires_grad=True)
u = b * c
v = a + u
j = 3 * v
j.backward()
print(a.grad)
print(b.grad)
print(c.grad)

w = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
with torch.no_grad():
    q = w * 2
print(q.requires_grad)
try:
    (w * 2).backward()
except RuntimeError as e:
    print("RuntimeError:", e)

# ---- 10_grad_fn.py ----
# Seed: every tensor made by an op has a grad_fn
import disttorch as torch

x = torch.tensor(2.0, requires_grad=True)
y = x ** 2 + 3
z = y ** 2
print(x.grad_fn)
print(type(y.grad_fn).__name__)
print(type(z.grad_fn).__name__)
print(y)
print(z)
m = torch.tensor([[1.0, 2.0]], requires_grad=True)
print(type((m @ m.t()).grad_fn).__name__, type(m.sum().grad_fn).__name__, type((m * m).grad_fn).__name__)

# ---- 11_model.py ----
# Seed: a model is a subclass of nn.Module with forward()
import disttorch as torch
import disttorch.nn as nn
import disttorch.optim as optim


class MyModel(nn.Module):
    def __init__(self, input_size, hidden_size, output_size):
        super(MyModel, self).__init__()
        self.fc1 = nn.Linear(input_size, hidden_size)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        out = self.fc1(x)
        out = self.relu(out)
        out = self.fc2(out)
        return out


model = MyModel(4, 8, 3)
print(model)
print([(name, tuple(p.shape)) for name, p in model.named_parameters()])
print(sum(p.numel() for p in model.parameters()))
out = model(torch.ones(2, 4))
print(out.shape, out.requires_grad, type(out.grad_fn).__name__)

# ---- 12_losses.py ----
# Seed: MSELoss, CrossEntropyLoss, KLDivLoss on fixed values
import disttorch as torch
import disttorch.nn as nn

output = torch.tensor([[0.5, 1.5, -0.5], [2.0, 0.0, 1.0]], requires_grad=True)
target = torch.tensor([[1.0, 1.0, 0.0], [1.5, 0.5, 1.0]])
criterion = nn.MSELoss()
loss = criterion(output, target)
print(loss)
loss.backward()
print(output.grad)

labels = torch.tensor([1, 0])
criterion = nn.CrossEntropyLoss()
output.grad = None
loss = criterion(output, labels)
print(loss)
loss.backward()
print(output.grad)

probs = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
target = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25]])
criterion = nn.KLDivLoss(reduction="batchmean")
print(criterion(probs.log(), target))

# ---- 13_train_mse.py ----
# Seed: the complete MSELoss + SGD training loop (random data: only the trend is compared)
import disttorch as torch
import disttorch.nn as nn


class MyModel(nn.Module):
    def __init__(self):
        super(MyModel, self).__init__()
        self.fc = nn.Linear(10, 1)

    def forward(self, x):
        out = self.fc(x)
        return out


torch.manual_seed(0)
model = MyModel()
criterion = nn.MSELoss()
inputs = torch.randn(100, 10)
labels = torch.randn(100, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
losses = []
for epoch in range(10):
    optimizer.zero_grad()
    outputs = model(inputs)
    loss = criterion(outputs, labels)
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
print("decreasing:", all(b < a for a, b in zip(losses, losses[1:])))
print("type:", type(losses[0]).__name__)

# ---- 14_optimizers.py ----
# Seed: SGD, Adam, Adagrad, RMSprop, Adadelta - one step each from the same start
import disttorch as torch
import disttorch.nn as nn
import disttorch.optim as optim

for name in ["SGD", "Adam", "Adagrad", "RMSprop", "Adadelta"]:
    model = nn.Linear(3, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.1, -0.2, 0.3]]))
        model.bias.fill_(0.5)
    optimizer = getattr(optim, name)(model.parameters(), lr=0.1)
    x = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])
    y = torch.tensor([[1.0], [0.0]])
    for _ in range(3):
        optimizer.zero_grad()
        loss = nn.MSELoss()(model(x), y)
        loss.backward()
        optimizer.step()
    print(name, [round(v, 4) for v in model.weight.detach().reshape(-1).tolist()], round(model.bias.item(), 4))

# ---- 15_data.py ----
# Seed: a custom Dataset, transforms.Compose([ToTensor(), Normalize()]), DataLoader batching
import numpy as np
import disttorch as torch
from disttorch.utils.data import Dataset, DataLoader
from disttorch.vision import transforms


class MyDataset(Dataset):
    def __init__(self, data, labels, transform=None):
        self.data = data
        self.labels = labels
        self.transform = transform

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        sample = self.data[index]
        label = self.labels[index]
        if self.transform:
            sample = self.transform(sample)
        return sample, label


transform = transforms.Compose([
    transforms.ToTensor(),
    transforms.Normalize(mean=[0.5], std=[0.5])
])
data = [np.full((4, 4), i * 10, dtype=np.uint8) for i in range(10)]   # ten 4x4 grey images
labels = list(range(10))
dataset = MyDataset(data, labels, transform=transform)
print(len(dataset))
sample, label = dataset[3]
print(sample.shape, sample.dtype, label)
print(sample[0, 0])
dataloader = DataLoader(dataset, batch_size=4, shuffle=False)
for batch, target in dataloader:
    print(batch.shape, target)
loader = DataLoader(dataset, batch_size=3, shuffle=True, drop_last=True)
seen = sorted(int(v) for _, t in loader for v in t)
print(len(loader), len(seen), len(set(seen)))
