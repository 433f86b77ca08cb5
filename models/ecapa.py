"""ECAPA-TDNN speaker embedding on top of SSL hidden states.

Every module also takes `mask` (B, 1, T), 1 on the valid frames of a padded batch, or None for a
batch of one length. With a mask each utterance's embedding is the one it gets alone: padded frames
are zeroed before every convolution (as the convolutions' own zero padding is), and every mean, std
and softmax over time runs over the valid frames only.
"""

import torch
import torch.nn as nn

from models.batchnorm import SyncBatchNorm1d

SE_BOTTLENECK = 128
ATTENTION_BOTTLENECK = 256


class SqueezeExcitation(nn.Module):
    def __init__(self, channels, bottleneck=SE_BOTTLENECK):
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool1d(1),
            nn.Conv1d(channels, bottleneck, kernel_size=1),
            nn.ReLU(),
            nn.Conv1d(bottleneck, channels, kernel_size=1),
            nn.Sigmoid(),
        )

    def forward(self, x, mask=None):
        if mask is None:
            return x * self.gate(x)
        return x * self.gate[1:](masked_mean(x, mask))  # gate[0] is the mean over time


def masked(x, mask):
    """x with its padded frames zeroed; x itself when there is no padding."""
    return x if mask is None else x * mask


def masked_mean(x, mask):
    """Mean over the valid frames: (B, C, T), (B, 1, T) -> (B, C, 1)."""
    return (x * mask).sum(dim=2, keepdim=True) / mask.sum(dim=2, keepdim=True)


def frame_mask(lengths, frames):
    """(B,) valid frame counts -> (B, 1, frames) float, 1 on the valid frames."""
    return (torch.arange(frames, device=lengths.device) < lengths[:, None]).float()[:, None, :]


def conv_relu_bn(in_channels, out_channels, kernel_size, dilation=1):
    return nn.Sequential(
        nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation, padding=dilation * (kernel_size // 2)),
        nn.ReLU(),
        SyncBatchNorm1d(out_channels),
    )


class Res2Block(nn.Module):
    """1x1 conv, Res2Net multi-scale dilated convs over `scale` channel groups, 1x1 conv, SE,
    plus the block's input."""

    def __init__(self, channels, kernel_size, dilation, scale=8):
        super().__init__()
        width = channels // scale
        self.scale = scale
        self.expand = conv_relu_bn(channels, width * scale, 1)
        self.convs = nn.ModuleList(conv_relu_bn(width, width, kernel_size, dilation) for _ in range(scale - 1))
        self.project = conv_relu_bn(width * scale, channels, 1)
        self.se = SqueezeExcitation(channels)

    def forward(self, x, mask=None):  # (B, C, T)
        groups = torch.chunk(masked(self.expand(x), mask), self.scale, dim=1)  # scale x (B, C / scale, T)
        outputs = []
        previous = None
        for conv, group in zip(self.convs, groups):
            previous = masked(conv(group if previous is None else group + previous), mask)
            outputs.append(previous)
        outputs.append(groups[-1])  # the last group passes unchanged
        return masked(self.se(self.project(torch.cat(outputs, dim=1)), mask), mask) + x


class AttentiveStatsPooling(nn.Module):
    """Attention-weighted mean and std over time; the attention sees each frame together with
    the utterance's global mean and std."""

    def __init__(self, channels, bottleneck=ATTENTION_BOTTLENECK):
        super().__init__()
        self.attention = nn.Sequential(
            nn.Conv1d(3 * channels, bottleneck, kernel_size=1),
            nn.ReLU(),
            SyncBatchNorm1d(bottleneck),
            nn.Tanh(),
            nn.Conv1d(bottleneck, channels, kernel_size=1),
            nn.Softmax(dim=2),
        )

    def forward(self, x, mask=None):  # (B, C, T)
        frames = x.shape[-1]
        if mask is None:
            mean = x.mean(dim=2, keepdim=True)
            var = x.var(dim=2, keepdim=True)
        else:
            mean = masked_mean(x, mask)
            var = (((x - mean) * mask) ** 2).sum(dim=2, keepdim=True) / (mask.sum(dim=2, keepdim=True) - 1)
        std = var.clamp(min=1e-4).sqrt().expand(-1, -1, frames)
        inputs = torch.cat([x, mean.expand(-1, -1, frames), std], dim=1)
        if mask is None:
            weights = self.attention(inputs)  # (B, C, T)
        else:  # the softmax over valid frames only
            weights = self.attention[-1](self.attention[:-1](inputs).masked_fill(mask == 0, float('-inf')))
        mu = torch.sum(x * weights, dim=2)
        sigma = torch.sqrt((torch.sum(x**2 * weights, dim=2) - mu**2).clamp(min=1e-4))
        return torch.cat([mu, sigma], dim=1)  # (B, 2C)


def random_band(length, max_width):
    """(start, width) of a band as the original code drew it: the start uniform over the places a
    max_width band fits, then the width uniform in 0..max_width. Drawn on the CPU generator."""
    max_width = min(max_width, length)
    start = int(torch.randint(0, length - max_width + 1, ()))
    return start, int(torch.randint(0, max_width + 1, ()))


class EcapaTdnn(nn.Module):
    def __init__(
        self,
        in_dim: int,
        channels: int = 512,
        embedding_size: int = 192,
        mask_freq: int = 100,
        mask_time: int = 10,
        mask_p: float = 0.6,
    ):
        super().__init__()
        self.mask_freq = mask_freq
        self.mask_time = mask_time
        self.mask_p = mask_p
        self.instance_norm = nn.InstanceNorm1d(in_dim)
        self.conv1 = conv_relu_bn(in_dim, channels, 5)
        self.blocks = nn.ModuleList(Res2Block(channels, 3, dilation) for dilation in (2, 3, 4))
        self.conv2 = nn.Sequential(nn.Conv1d(3 * channels, 3 * channels, kernel_size=1), nn.ReLU())
        self.pooling = AttentiveStatsPooling(3 * channels)
        self.bn_pool = SyncBatchNorm1d(6 * channels)
        self.embedding = nn.Linear(6 * channels, embedding_size)
        self.bn_embedding = SyncBatchNorm1d(embedding_size)

    def spec_mask(self, x):
        """With probability mask_p, one rectangle of up to mask_freq channels x mask_time frames of
        the normalised input set to 0, the same for the whole batch, as the original drew it."""
        if float(torch.rand(())) >= self.mask_p:
            return x
        _, dim, frames = x.shape
        f_start, f_width = random_band(dim, self.mask_freq)
        t_start, t_width = random_band(frames, self.mask_time)
        rectangle = torch.zeros(dim, frames, dtype=torch.bool, device=x.device)  # (D, T)
        rectangle[f_start : f_start + f_width, t_start : t_start + t_width] = True
        return x.masked_fill(rectangle, 0.0)

    def forward(self, x, lengths=None):
        """(B, T, in_dim) SSL hidden states -> (B, embedding_size). lengths (B,): the valid frames
        of each row of a padded batch (None: every frame is valid)."""
        x = x.transpose(1, 2)  # (B, D, T)
        mask = None if lengths is None else frame_mask(lengths, x.shape[-1])
        x = self.instance_norm(x) if mask is None else masked_instance_norm(x, mask, self.instance_norm.eps)
        if self.training:
            x = self.spec_mask(x)
        x = masked(self.conv1(x), mask)  # (B, C, T)
        x1 = self.blocks[0](x, mask)
        x2 = self.blocks[1](x + x1, mask)
        x3 = self.blocks[2](x + x1 + x2, mask)
        x = masked(self.conv2(torch.cat([x1, x2, x3], dim=1)), mask)  # (B, 3C, T)
        x = self.bn_pool(self.pooling(x, mask))  # (B, 6C)
        return self.bn_embedding(self.embedding(x))  # (B, E)


def masked_instance_norm(x, mask, eps):
    """InstanceNorm1d (no affine, biased variance) over the valid frames; padded frames 0."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) / torch.sqrt(var + eps) * mask
