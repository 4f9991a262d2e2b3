"""Recurrent text models: a title/description classifier and a denoising text autoencoder.

Both read token ids from artlab.tokenizer, padded with 0, plus the true lengths;
sequences are packed so padding never reaches the backward direction of a GRU.
"""

import zlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from artlab.tokenizer import BOS_ID, EOS_ID, PAD_ID, normalize_words

NGRAM_CHARS = 400         # character n-grams come from the first this many characters (descriptions are long)


def ngram_ids(text: str, buckets: int, char_sizes: tuple[int, ...] = (3, 4, 5)) -> list[int]:
    """The wide branch's input: distinct hashed words, word pairs and character n-grams of a text.

    crc32, not hash(): Python salts hash() per process, and the ids must be the same at training
    and at inference."""
    words = normalize_words(text)
    grams = set(words) | {f"{a} {b}" for a, b in zip(words, words[1:])}
    padded = f" {' '.join(words)[:NGRAM_CHARS]} "
    grams |= {"#" + padded[i:i + n] for n in char_sizes for i in range(len(padded) - n + 1)}
    return sorted({zlib.crc32(g.encode("utf-8")) % buckets for g in grams})


def bags_from_ids(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """EmbeddingBag input from each text's ngram_ids: (flat ids, offsets, per-id weights 1/sqrt(n)).

    Weights of 1/sqrt(n) keep a 300-word description's sum on the scale of a 4-word title's."""
    rows = [r or [0] for r in rows]
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
    weights = torch.cat([torch.full((len(r),), len(r) ** -0.5) for r in rows]) if rows else torch.zeros(0)
    return torch.tensor([i for r in rows for i in r], dtype=torch.long), offsets, weights


def ngram_bags(texts: list[str], buckets: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """bags_from_ids for a batch of texts."""
    return bags_from_ids([ngram_ids(t, buckets) for t in texts])


def run_rnn(rnn: nn.GRU, x: torch.Tensor, lengths: torch.Tensor):
    """A batch-first GRU over padded input: (outputs B x T x H, final hidden L*D x B x H)."""
    packed = pack_padded_sequence(x, lengths.cpu().clamp(min=1), batch_first=True, enforce_sorted=False)
    outputs, hidden = rnn(packed)
    outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=x.shape[1])
    return outputs, hidden


def length_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


class TextClassifier(nn.Module):
    """Embedding -> bidirectional GRU -> attention pooling + max pooling -> one linear head per label set.

    Attention finds the telling word ("portrait", "madonna"); max pooling keeps every
    strong feature of a long description, where one attention peak is not enough.
    """

    def __init__(self, vocab_size: int, heads: dict[str, int], embed_dim: int = 128, hidden: int = 256,
                 dropout: float = 0.3, embedding_pool: bool = False, wide_buckets: int = 0):
        super().__init__()
        # wide_buckets: a fastText-style wide part, hashed words, word pairs and character n-grams
        # (ngram_ids) straight to logits that are added to the GRU's; on short titles the exact
        # words and their pairs tell much, and a linear model learns them faster than the GRU
        self.wide_buckets = wide_buckets
        self.wide = nn.EmbeddingBag(wide_buckets, sum(heads.values()), mode="sum") if wide_buckets else None
        if self.wide is not None:
            nn.init.zeros_(self.wide.weight)
        # embedding_pool: also the mean of the word embeddings, a direct lexical path beside the GRU
        self.embedding_pool = embedding_pool
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.rnn = nn.GRU(embed_dim, hidden, batch_first=True, bidirectional=True)
        self.attention = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.dropout = nn.Dropout(dropout)
        self.embed_dropout = nn.Dropout(dropout / 2)
        features = 4 * hidden + (embed_dim if embedding_pool else 0)
        self.heads = nn.ModuleDict({name: nn.Linear(features, n) for name, n in heads.items()})

    def features(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        embedded = self.embed_dropout(self.embed(ids))
        outputs, _ = run_rnn(self.rnn, embedded, lengths)
        mask = length_mask(lengths.to(ids.device), ids.shape[1])
        scores = self.attention(outputs).squeeze(-1).masked_fill(~mask, float("-inf"))
        attended = (scores.softmax(1).unsqueeze(-1) * outputs).sum(1)
        maxed = outputs.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
        pooled = [attended, maxed]
        if self.embedding_pool:
            weights = mask.unsqueeze(-1).to(embedded.dtype)
            pooled.append((embedded * weights).sum(1) / weights.sum(1).clamp(min=1))
        return torch.cat(pooled, 1)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, bags=None) -> dict[str, torch.Tensor]:
        """Logits per head. `bags`: ngram_bags of the same texts, needed when the model has a wide part."""
        pooled = self.dropout(self.features(ids, lengths))
        out = {name: head(pooled) for name, head in self.heads.items()}
        if self.wide is None:
            return out
        if bags is None:
            raise ValueError("this classifier has a wide n-gram part: pass bags=ngram_bags(texts, buckets)")
        flat, offsets, weights = (b.to(ids.device) for b in bags)
        wide = self.wide(flat, offsets, per_sample_weights=weights.to(self.wide.weight.dtype))
        start = 0
        for name, logits in out.items():
            size = logits.shape[1]
            out[name] = logits + wide[:, start:start + size].to(logits.dtype)
            start += size
        return out


class TextAutoencoder(nn.Module):
    """Sequence-to-sequence autoencoder with a fixed-size code between encoder and decoder.

    The decoder GRU starts from the code and also sees it at every step, so a long title
    does not wash it out. Output embedding tied to the input one. Two ways to fill the code:

    - slots=0: the encoder's final states (both directions) and a mean over time are
      squeezed into `code_dim` values.
    - slots=S: the code is S slots of code_dim/S values; each slot is an attention-weighted
      sum of the encoder's outputs, found by a learned query (the keys know their position,
      so a slot can take "the third word"). At each step the decoder reads the slots back
      with attention over them (never over the encoder's states: the code is all it gets).
      One vector squeezed from the final states has to hold the whole text at once and
      loses long titles (token accuracy 0.36 at 12-14 tokens); slots copy them.
    """

    def __init__(self, vocab_size: int, embed_dim: int = 128, hidden: int = 256, code_dim: int = 256,
                 decoder_hidden: int = 384, dropout: float = 0.1, slots: int = 0, max_positions: int = 64):
        super().__init__()
        if slots and code_dim % slots:
            raise ValueError(f"code_dim {code_dim} is not a whole number of {slots} slots")
        self.slots = slots
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.encoder = nn.GRU(embed_dim, hidden, batch_first=True, bidirectional=True)
        if slots:
            slot_dim = code_dim // slots
            self.slot_queries = nn.Parameter(torch.randn(slots, 2 * hidden) * (2 * hidden) ** -0.5)
            self.key_positions = nn.Embedding(max_positions, 2 * hidden)
            self.to_slot = nn.Linear(2 * hidden, slot_dim)
            self.read_query = nn.Linear(decoder_hidden, slot_dim)
            self.read_mix = nn.Linear(decoder_hidden + slot_dim, decoder_hidden)
        else:
            self.to_code = nn.Linear(4 * hidden, code_dim)
        self.from_code = nn.Linear(code_dim, decoder_hidden)
        self.decoder = nn.GRU(embed_dim + code_dim, decoder_hidden, batch_first=True)
        self.to_embedding = nn.Linear(decoder_hidden, embed_dim)
        self.out_bias = nn.Parameter(torch.zeros(vocab_size))
        self.dropout = nn.Dropout(dropout)

    def encode(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Token ids -> one code vector per text (B x code_dim, in [-1, 1])."""
        outputs, hidden = run_rnn(self.encoder, self.dropout(self.embed(ids)), lengths)
        mask = length_mask(lengths.to(ids.device), ids.shape[1])
        if self.slots:
            return self._slot_code(outputs, mask)
        mask = mask.unsqueeze(-1)
        mean = (outputs * mask).sum(1) / mask.sum(1).clamp(min=1)
        last = torch.cat([hidden[0], hidden[1]], 1)
        return torch.tanh(self.to_code(torch.cat([last, mean], 1)))

    def _slot_code(self, outputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(outputs.shape[1], device=outputs.device).clamp(
            max=self.key_positions.num_embeddings - 1)
        keys = outputs + self.key_positions(positions)
        scores = torch.einsum("btd,sd->bst", keys, self.slot_queries) / keys.shape[-1] ** 0.5
        weights = scores.masked_fill(~mask[:, None, :], float("-inf")).softmax(-1)
        slots = torch.einsum("bst,btd->bsd", weights, outputs)
        return torch.tanh(self.to_slot(slots)).flatten(1)

    def _read_code(self, states: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """Decoder states (B x T x H) mixed with what they read from the code's slots."""
        slots = code.view(code.shape[0], self.slots, -1)
        query = self.read_query(states)
        weights = (query @ slots.transpose(1, 2) / slots.shape[-1] ** 0.5).softmax(-1)
        return torch.tanh(self.read_mix(torch.cat([states, weights @ slots], -1)))

    def _logits(self, states: torch.Tensor) -> torch.Tensor:
        return F.linear(self.to_embedding(states), self.embed.weight, self.out_bias)

    def _step_inputs(self, tokens: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        embedded = self.dropout(self.embed(tokens))
        return torch.cat([embedded, code.unsqueeze(1).expand(-1, tokens.shape[1], -1)], 2)

    def forward(self, ids, lengths, decoder_inputs) -> torch.Tensor:
        """Teacher-forced logits (B x T x vocab) for decoder_inputs = <s> + target."""
        code = self.encode(ids, lengths)
        hidden = torch.tanh(self.from_code(code)).unsqueeze(0)
        states, _ = self.decoder(self._step_inputs(decoder_inputs, code), hidden)
        if self.slots:
            states = self._read_code(self.dropout(states), code)
        return self._logits(states)

    @torch.no_grad()
    def generate(self, code: torch.Tensor, max_len: int | torch.Tensor = 40) -> list[list[int]]:
        """Greedy decoding from codes; each sequence stops at </s> or its own max_len.

        The GRU step is written out so that the code's share of the input gates is computed
        once per text, not once per step, and finished texts leave the batch: same numbers
        as `forward`, a good deal faster on a CPU."""
        batch, device = code.shape[0], code.device
        limits = (max_len.to(device) if torch.is_tensor(max_len)
                  else torch.full((batch,), int(max_len), device=device))
        embed_dim = self.embed.embedding_dim
        w_ih, w_hh = self.decoder.weight_ih_l0, self.decoder.weight_hh_l0
        code_gates = F.linear(code, w_ih[:, embed_dim:], self.decoder.bias_ih_l0)
        hidden = torch.tanh(self.from_code(code))
        token = torch.full((batch,), BOS_ID, dtype=torch.long, device=device)
        active = torch.arange(batch, device=device)
        out = [[] for _ in range(batch)]
        for t in range(int(limits.max()) if batch else 0):
            gi = F.linear(self.embed(token), w_ih[:, :embed_dim]) + code_gates
            gh = F.linear(hidden, w_hh, self.decoder.bias_hh_l0)
            i_r, i_z, i_n = gi.chunk(3, 1)
            h_r, h_z, h_n = gh.chunk(3, 1)
            r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
            hidden = (1 - z) * torch.tanh(i_n + r * h_n) + z * hidden
            state = self._read_code(hidden.unsqueeze(1), code).squeeze(1) if self.slots else hidden
            token = self._logits(state).argmax(-1)
            going = (token != EOS_ID) & (t < limits)
            for row, tok in zip(active[going].tolist(), token[going].tolist()):
                out[row].append(tok)
            if not bool(going.all()):
                keep = going.nonzero().squeeze(1)
                active, token, hidden = active[keep], token[keep], hidden[keep]
                code, code_gates, limits = code[keep], code_gates[keep], limits[keep]
            if len(active) == 0:
                break
        return out
