"""A minGPT-style character model trained with DistributedDataParallel, in the manner of the DDP
tutorial series' minGPT trainer: a launcher (torchrun, or disttorch-run) sets RANK, WORLD_SIZE
and LOCAL_RANK; each process joins the group, reads its shard through DistributedSampler, and
the Trainer saves a snapshot (model.module's state_dict) that a restarted job resumes from.

Run alone it forms a group of one. Each rank's batch is the global batch divided by the world
size, so 2 ranks follow the same trajectory as 1 (the union of the ranks' batches is the same
samples, and DDP averages the gradients)."""
import argparse
import math
import os
import tempfile

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

TEXT = ("first citizen: before we proceed any further, hear me speak. all: speak, speak. "
        "first citizen: you are all resolved rather to die than to famish? all: resolved. "
        "resolved. first citizen: first, you know caius marcius is chief enemy to the people. ") * 4


class CharDataset(Dataset):
    def __init__(self, text, block_size):
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.data = [self.stoi[c] for c in text]
        self.block_size = block_size

    def __len__(self):
        return len(self.data) - self.block_size

    def __getitem__(self, idx):
        chunk = self.data[idx:idx + self.block_size + 1]
        return torch.tensor(chunk[:-1], dtype=torch.long), torch.tensor(chunk[1:], dtype=torch.long)


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, block_size):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.n_head = n_head
        self.register_buffer("bias", torch.tril(torch.ones(block_size, block_size)).view(1, 1, block_size, block_size))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = F.softmax(att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class Block(nn.Module):
    def __init__(self, n_embd, n_head, block_size):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, block_size)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size, block_size, n_layer=2, n_head=2, n_embd=32):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.blocks = nn.ModuleList([Block(n_embd, n_head, block_size) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, idx, targets=None):
        pos = torch.arange(0, idx.size(1), dtype=torch.long).unsqueeze(0)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        loss = None if targets is None else F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss


class Trainer:
    def __init__(self, model, dataset, optimizer, batch_size, snapshot_path, seed):
        self.rank = int(os.environ["RANK"])
        self.model = DDP(model)
        self.optimizer = optimizer
        self.sampler = DistributedSampler(dataset, shuffle=True, seed=seed)
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=self.sampler, drop_last=True)
        self.snapshot_path = snapshot_path
        self.epochs_run = 0
        if os.path.exists(snapshot_path):
            snapshot = torch.load(snapshot_path)
            self.model.module.load_state_dict(snapshot["MODEL_STATE"])
            self.epochs_run = snapshot["EPOCHS_RUN"]

    def _run_epoch(self, epoch, max_steps):
        self.sampler.set_epoch(epoch)
        losses = []
        for step, (x, y) in enumerate(self.loader):
            if step == max_steps:
                break
            self.optimizer.zero_grad(set_to_none=True)
            _, loss = self.model(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            # The mean over ranks: the loss of the global batch.
            avg = loss.detach().clone()
            dist.all_reduce(avg)
            losses.append(avg.item() / dist.get_world_size())
        return losses

    def train(self, max_epochs, max_steps):
        """The mean loss of each epoch run."""
        means = []
        for epoch in range(self.epochs_run, max_epochs):
            losses = self._run_epoch(epoch, max_steps)
            means.append(sum(losses) / len(losses))
            if self.rank == 0:
                print(f"epoch {epoch}: mean loss {means[-1]:.4f}, last loss {losses[-1]:.4f}")
                torch.save({"MODEL_STATE": self.model.module.state_dict(), "EPOCHS_RUN": epoch + 1},
                           self.snapshot_path)
        return means


def main():
    parser = argparse.ArgumentParser(description="minGPT-style DDP trainer")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=15, help="steps per epoch")
    parser.add_argument("--global-batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--snapshot", default=os.path.join(tempfile.mkdtemp(), "snapshot.pt"))
    args = parser.parse_args()
    if "RANK" not in os.environ:  # run alone: a group of one
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29533")
    dist.init_process_group(backend="gloo")
    torch.manual_seed(args.seed)  # the same initial model everywhere (DDP also broadcasts rank 0's)
    dataset = CharDataset(TEXT, block_size=16)
    model = GPT(len(dataset.chars), 16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    batch = args.global_batch // dist.get_world_size()
    trainer = Trainer(model, dataset, optimizer, batch, args.snapshot, args.seed)
    means = trainer.train(args.epochs, args.steps)
    if dist.get_rank() == 0:
        print(f"RESULT first_epoch_loss={means[0]:.4f} last_epoch_loss={means[-1]:.4f} "
              f"world_size={dist.get_world_size()}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
