"""The word language model of word_lm_lstm.py with a Transformer encoder instead of the LSTM, in
the manner of PyTorch's word_language_model example with --model Transformer: sinusoidal
positional encoding, a causal mask, nn.TransformerEncoder, Adam, log-softmax with NLL loss."""
import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from word_lm_lstm import batchify, make_corpus


class PositionalEncoding(nn.Module):
    def __init__(self, d_model, dropout=0.1, max_len=200):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe.unsqueeze(1))  # (max_len, 1, d_model)

    def forward(self, x):
        return self.dropout(x + self.pe[: x.size(0)])


class TransformerModel(nn.Module):
    def __init__(self, ntoken, ninp, nhead, nhid, nlayers, dropout=0.1):
        super().__init__()
        self.pos_encoder = PositionalEncoding(ninp, dropout)
        layer = nn.TransformerEncoderLayer(ninp, nhead, nhid, dropout)
        self.transformer_encoder = nn.TransformerEncoder(layer, nlayers)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.decoder = nn.Linear(ninp, ntoken)
        self.ninp = ninp
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    @staticmethod
    def causal_mask(size):
        # 0 on and below the diagonal, -inf above: position i attends to positions <= i.
        return torch.log(torch.tril(torch.ones(size, size)))

    def forward(self, src):
        mask = self.causal_mask(src.size(0))
        src = self.pos_encoder(self.encoder(src) * math.sqrt(self.ninp))
        return F.log_softmax(self.decoder(self.transformer_encoder(src, mask)), dim=-1)


def main():
    parser = argparse.ArgumentParser(description="Transformer word language model")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--bptt", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    words = make_corpus(700, seed=0)
    vocab = sorted(set(words))
    index = {w: i for i, w in enumerate(vocab)}
    ids = torch.tensor([index[w] for w in words], dtype=torch.long)
    split = int(len(ids) * 0.9)
    train_data, val_data = batchify(ids[:split], 16), batchify(ids[split:], 4)
    ntokens = len(vocab)
    model = TransformerModel(ntokens, 32, 2, 64, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for epoch in range(1, args.epochs + 1):
        model.train()
        for i in range(0, train_data.size(0) - 1, args.bptt):
            seq = min(args.bptt, train_data.size(0) - 1 - i)
            data, targets = train_data[i:i + seq], train_data[i + 1:i + 1 + seq].reshape(-1)
            optimizer.zero_grad()
            loss = F.nll_loss(model(data).view(-1, ntokens), targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            optimizer.step()
        model.eval()
        total = 0.0
        with torch.no_grad():
            for i in range(0, val_data.size(0) - 1, args.bptt):
                seq = min(args.bptt, val_data.size(0) - 1 - i)
                output = model(val_data[i:i + seq])
                total += seq * F.nll_loss(output.view(-1, ntokens), val_data[i + 1:i + 1 + seq].reshape(-1)).item()
        val_loss = total / (val_data.size(0) - 1)
        print(f"epoch {epoch}: valid loss {val_loss:.3f}, valid ppl {math.exp(val_loss):.2f}")
    print(f"RESULT val_loss={val_loss:.4f} val_ppl={math.exp(val_loss):.3f}")


if __name__ == "__main__":
    main()
