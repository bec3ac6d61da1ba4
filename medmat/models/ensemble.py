"""A deep ensemble: several trained models of the same task predicting as one (Lakshminarayanan et al. 2017).

The members are any :class:`~medmat.models.contract.MattingModel` s (typically one config trained
with different seeds). The ensemble's alpha is the mean of the members' alphas; a sampling
ensemble pools the members' sampled masks, so its uncertainty map (the entropy of the mean
sampled mask, Medical Matting Eq. 4) and its GED see the members' disagreement as well as each
member's own latent spread. It predicts only: its members are trained one by one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from medmat.models.contract import MattingModel, ModelSpec
from medmat.uncertainty import lesion_uncertainty, uncertainty_map


def _union(names: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """The names of every sequence, each once, in first-seen order ("image" stays first)."""
    return tuple(dict.fromkeys(name for group in names for name in group))


class DeepEnsemble(MattingModel):
    """Mean of several models' alphas, and the pool of their sampled masks.

    Args:
        members: two or more trained models of the same image channels, in eval mode or not (the
            ensemble's mode is theirs).
        num_samples: N, masks a sampling ensemble draws when ``forward`` gets None (paper 8).

    ``forward(batch, num_samples=None)`` takes what any member takes (each member reads the inputs
    it declares) and returns, (B, 1, H, W) unless stated:
        "alpha" in [0, 1]: the members' mean alpha;
        "lesion_uncertainty" in [0, ln 2] nats: the binary entropy of that alpha;
        when every member samples masks, "sample_masks" (B, N, H, W) in [0, 1]: ceil(N / M) masks
        from each of the M members, interleaved member by member and cut to N (None: the
        ensemble's ``num_samples``), and "uncertainty_map" in [0, ln 2] nats: the entropy of their
        mean (Eq. 4).

    Raises:
        ValueError: fewer than two members, members of different image channels, or a forward
            in training mode.
    """

    def __init__(self, members: Sequence[MattingModel], num_samples: int = 8):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"a deep ensemble needs at least two members, got {len(members)}")
        channels = {member.spec.in_channels for member in members}
        if len(channels) != 1:
            raise ValueError(f"the ensemble's members take images of different channels: {sorted(channels)}")
        self.members = nn.ModuleList(members)
        specs = [member.spec for member in members]
        samples = all(spec.samples_masks for spec in specs)
        self.spec = ModelSpec(
            in_channels=channels.pop(),
            takes=_union([spec.takes for spec in specs]),
            requires=_union([spec.requires for spec in specs]),
            gives=("alpha", "lesion_uncertainty", *(("uncertainty_map", "sample_masks") if samples else ())),
            size_multiple=math.lcm(*(spec.size_multiple for spec in specs)),
            resolution_free=all(spec.resolution_free for spec in specs),
        )
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.num_samples = num_samples

    def forward(self, batch: Mapping[str, torch.Tensor], num_samples: int | None = None) -> dict[str, torch.Tensor]:
        if self.training:
            raise ValueError("a deep ensemble only predicts: train its members one by one")
        total = num_samples or self.num_samples
        per_member = math.ceil(total / len(self.members))
        alphas, masks = [], []
        for member in self.members:
            member_batch = {name: value for name, value in batch.items() if name in member.spec.takes or name == "output_size"}
            outputs = member(member_batch, per_member if self.spec.samples_masks else None)
            alphas.append(outputs["alpha"].float())
            if self.spec.samples_masks:
                masks.append(outputs["sample_masks"][:, :per_member].float())
        alpha = torch.stack(alphas).mean(dim=0)
        result = {"alpha": alpha, "lesion_uncertainty": lesion_uncertainty(alpha)}
        if masks:
            # (B, n, M, H, W) -> (B, n * M, H, W): member 0's first mask, member 1's first mask, ...
            # so that cutting to N keeps the members as evenly as it can.
            pooled = torch.stack(masks, dim=2).flatten(1, 2)[:, :total]
            result["sample_masks"] = pooled
            result["uncertainty_map"] = uncertainty_map(pooled)
        return result
