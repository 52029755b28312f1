"""HRKD's domain-relational graph (Dong, Li, Shen, Qiu, EMNLP 2021; released code cheneydon/hrkd, models/gnn.py),
written from the method as read in the paper's abstract and the released code; see docs/multi_domain.md.

Input: the domain prototypes of every level, P (L+1, D, F): level 0 the embedding output, level m the student's
layer m, each a domain's mean hidden state. Output: per level, a weight for each domain, r (L+1, D), each level's
summing to 1 over the domains.

- Hierarchical compare-aggregate (levels m >= 1): the reference prototypes Ref = softmax_rows(P_m W1_m P_m^T) P_m
  (each domain's prototype seen through its similarity to all the others: self-attention across domains); each
  domain d compares its own prototypes of levels 0..m with W2_{m,d} Ref_d, s_j = p_d^j . (W2_{m,d} Ref_d), and
  takes their softmax(s)-weighted sum as its node. Level 0 takes the prototypes themselves.
- The domain-relational graph of a level: a graph attention network (Velickovic et al., 2018) over the D nodes,
  fully connected (self included): `heads` attention heads of width F (LeakyReLU(slope) scores, softmax over the
  neighbours, dropout, ELU), concatenated, then one output attention layer to one unit (ELU, as released); a
  softmax over the domains gives the level's ratios.
Every weight starts Xavier-uniform with gain 1.414, as released.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _xavier(*shape: int) -> nn.Parameter:
    weight = torch.empty(*shape)
    if weight.dim() > 2:  # a stack of matrices: each initialised as its own (fan in and out of one matrix)
        for matrix in weight.view(-1, *shape[-2:]):
            nn.init.xavier_uniform_(matrix, gain=1.414)
    else:
        nn.init.xavier_uniform_(weight, gain=1.414)
    return nn.Parameter(weight)


class GraphAttention(nn.Module):
    """One graph attention layer over a fully connected graph of N nodes: (N, in) -> (N, out)."""

    def __init__(self, width_in: int, width_out: int, dropout: float, slope: float):
        super().__init__()
        self.weight, self.attend = _xavier(width_in, width_out), _xavier(2 * width_out, 1)
        self.dropout, self.slope = dropout, slope

    def forward(self, nodes: torch.Tensor) -> torch.Tensor:
        h = nodes @ self.weight  # (N, out)
        out = h.shape[1]
        # e_ij = LeakyReLU(a . [h_i ; h_j]) for every pair
        scores = F.leaky_relu((h @ self.attend[:out]) + (h @ self.attend[out:]).T, self.slope)
        attention = F.dropout(scores.softmax(dim=1), self.dropout, self.training)
        return F.elu(attention @ h)


class RelationalGraph(nn.Module):
    """A level's graph: `heads` attention layers concatenated, then an output layer to one score per domain."""

    def __init__(self, width: int, heads: int, dropout: float, slope: float):
        super().__init__()
        self.heads = nn.ModuleList(GraphAttention(width, width, dropout, slope) for _ in range(heads))
        self.out = GraphAttention(width * heads, 1, dropout, slope)
        self.dropout = dropout

    def forward(self, nodes: torch.Tensor) -> torch.Tensor:
        x = F.dropout(nodes, self.dropout, self.training)
        x = torch.cat([head(x) for head in self.heads], dim=1)
        x = F.dropout(x, self.dropout, self.training)
        return self.out(x).squeeze(-1)  # (N,)


class DomainGraph(nn.Module):
    """Prototypes (levels, D, F) to ratios (levels, D); `hierarchy` keeps each level's compare-aggregate weights
    over the levels below it (D, m + 1) from the last call."""

    def __init__(self, width: int, levels: int, domains: int, heads: int = 8, dropout: float = 0.1,
                 slope: float = 0.2, hierarchical: bool = True, reference: bool = True):
        super().__init__()
        self.levels, self.domains, self.hierarchical, self.reference = levels, domains, hierarchical, reference
        self.graphs = nn.ModuleList(RelationalGraph(width, heads, dropout, slope) for _ in range(levels))
        if hierarchical and levels > 1:
            self.compare = _xavier(levels - 1, domains, width, width)  # W2 of levels 1..L, per domain
            if reference:
                self.relate = _xavier(levels - 1, width, width)  # W1 of levels 1..L
        self.hierarchy: list[torch.Tensor] = []

    def nodes(self, prototypes: torch.Tensor, level: int) -> torch.Tensor:
        """The graph's nodes at `level`: the prototypes, or (hierarchical, level >= 1) each domain's prototypes of
        levels 0..level aggregated by their similarity to the domain's reference prototype."""
        own = prototypes[level]  # (D, F)
        if not self.hierarchical or level == 0:
            return own
        if self.reference:
            similarity = own @ self.relate[level - 1] @ own.T  # (D, D)
            reference = similarity.softmax(dim=-1) @ own
        else:  # the ablation without self-attention: each domain's own prototype is its reference
            reference = own
        keys = torch.einsum("dfg,dg->df", self.compare[level - 1], reference)  # W2_{m,d} Ref_d
        below = prototypes[: level + 1]  # (m + 1, D, F)
        weights = torch.einsum("jdf,df->dj", below, keys).softmax(dim=-1)  # (D, m + 1)
        self.hierarchy.append(weights.detach())
        return torch.einsum("dj,jdf->df", weights, below)

    def forward(self, prototypes: torch.Tensor) -> torch.Tensor:
        self.hierarchy = []
        return torch.stack([self.graphs[m](self.nodes(prototypes, m)).softmax(dim=0) for m in range(self.levels)])
