"""Additive angular margin softmax (AAM-softmax, ArcFace) training head."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.distributed import sum_over_ranks, world_size


class AAMSoftmax(nn.Module):
    """Cross-entropy over scale * cos(theta + m) for the target class and scale * cos(theta)
    for the others; optionally weighted per class."""

    def __init__(self, embedding_size, num_classes, margin=0.2, scale=30.0, class_weights=None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.xavier_normal_(self.weight, gain=1)
        self.scale = scale
        self.set_margin(margin)
        # not persistent: a checkpoint loads whether or not the head it is loaded into was given weights
        weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        self.register_buffer('class_weights', weights, persistent=False)

    def set_margin(self, margin):
        """The margin from now on (a training stage's own: large-margin fine-tuning raises it). Not in
        the state dict: the margin shapes only the training loss, never an embedding."""
        self.margin = margin
        # theta + m > pi would make cos(theta + m) grow again: past that point use a linear fallback
        self.threshold = math.cos(math.pi - margin)
        self.fallback = math.sin(math.pi - margin) * margin

    def cosines(self, emb):
        """(B, E) -> (B, num_classes) cosines to the class weights. In float32 even under autocast:
        x scale 30, a bf16 cosine's rounding would move the logits by 0.1."""
        with torch.autocast(emb.device.type, enabled=False):
            return F.linear(F.normalize(emb.to(self.weight.dtype)), F.normalize(self.weight))

    def logits(self, emb, labels):
        """(B, E), (B,) -> (B, num_classes) scaled cosines, margin on the target class."""
        return self.margin_logits(self.cosines(emb), labels)

    def margin_logits(self, cosine, labels):
        """(B, num_classes) cosines, (B,) -> the same scaled, the target's with the margin added."""
        sine = torch.sqrt((1.0 - cosine**2).clamp(0, 1))
        with_margin = cosine * math.cos(self.margin) - sine * math.sin(self.margin)
        with_margin = torch.where(cosine > self.threshold, with_margin, cosine - self.fallback)
        target = F.one_hot(labels, cosine.shape[1]).bool()
        return self.scale * torch.where(target, with_margin, cosine)

    def forward(self, emb, labels):
        """(B, E), (B,) -> (loss, top-1 accuracy in %). The accuracy is that of the plain cosines, the
        nearest class as at test time: the margin only handicaps the target during training."""
        cosine = self.cosines(emb)  # (B, num_classes)
        logits = self.margin_logits(cosine, labels)
        losses = F.cross_entropy(logits, labels, reduction='none')  # (B,)
        if self.class_weights is None:
            loss = losses.mean()
        else:
            # the weighted mean over the global batch: with N processes each normalises by the mean
            # over ranks of their weight sums, so the ranks' averaged gradient is the global one
            weights = self.class_weights[labels]
            normaliser = sum_over_ranks(weights.sum().detach()) / world_size()
            loss = (weights * losses).sum() / normaliser
        accuracy = (cosine.argmax(dim=1) == labels).float().mean() * 100
        return loss, accuracy.detach()
