"""ECAPA-TDNN speaker embedding on top of SSL hidden states."""
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

    def forward(self, x):
        return x * self.gate(x)


def conv_relu_bn(in_channels, out_channels, kernel_size, dilation=1):
    return nn.Sequential(
        nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation,
                  padding=dilation * (kernel_size // 2)),
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

    def forward(self, x):                                               # (B, C, T)
        groups = torch.chunk(self.expand(x), self.scale, dim=1)         # scale x (B, C / scale, T)
        outputs = []
        previous = None
        for conv, group in zip(self.convs, groups):
            previous = conv(group if previous is None else group + previous)
            outputs.append(previous)
        outputs.append(groups[-1])                                      # the last group passes unchanged
        return self.se(self.project(torch.cat(outputs, dim=1))) + x


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

    def forward(self, x):                                               # (B, C, T)
        frames = x.shape[-1]
        mean = x.mean(dim=2, keepdim=True).expand(-1, -1, frames)
        std = x.var(dim=2, keepdim=True).clamp(min=1e-4).sqrt().expand(-1, -1, frames)
        weights = self.attention(torch.cat([x, mean, std], dim=1))     # (B, C, T)
        mu = torch.sum(x * weights, dim=2)
        sigma = torch.sqrt((torch.sum(x ** 2 * weights, dim=2) - mu ** 2).clamp(min=1e-4))
        return torch.cat([mu, sigma], dim=1)                            # (B, 2C)


def band_mask(batch, length, max_width, device):
    """One random band of 0..max_width consecutive positions per row: (batch, length) bool."""
    width = torch.randint(0, max_width + 1, (batch, 1), device=device).clamp(max=length)
    start = (torch.rand(batch, 1, device=device) * (length - width + 1)).floor()
    position = torch.arange(length, device=device)
    return (position >= start) & (position < start + width)


class EcapaTdnn(nn.Module):
    def __init__(self, in_dim: int, channels: int = 512, embedding_size: int = 192, mask_freq: int = 100,
                 mask_time: int = 10, mask_p: float = 0.6):
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
        """SpecAugment on the normalised input, each utterance with probability mask_p: one band
        of up to mask_freq channels and one of up to mask_time frames set to 0."""
        batch, dim, frames = x.shape
        chosen = torch.rand(batch, 1, 1, device=x.device) < self.mask_p
        freq = band_mask(batch, dim, self.mask_freq, x.device)[:, :, None]
        time = band_mask(batch, frames, self.mask_time, x.device)[:, None, :]
        return x.masked_fill(chosen & (freq | time), 0.0)

    def forward(self, x):
        """(B, T, in_dim) SSL hidden states -> (B, embedding_size)."""
        x = self.instance_norm(x.transpose(1, 2))                       # (B, D, T)
        if self.training:
            x = self.spec_mask(x)
        x = self.conv1(x)                                               # (B, C, T)
        x1 = self.blocks[0](x)
        x2 = self.blocks[1](x + x1)
        x3 = self.blocks[2](x + x1 + x2)
        x = self.conv2(torch.cat([x1, x2, x3], dim=1))                  # (B, 3C, T)
        x = self.bn_pool(self.pooling(x))                               # (B, 6C)
        return self.bn_embedding(self.embedding(x))                     # (B, E)
