"""The trained system: student SSL model (with adapters) -> ECAPA-TDNN -> AAM-softmax."""

import torch.nn as nn

from models.ssl import normalize_waves


class SpeakerNet(nn.Module):
    """Student + back-end + training head, one module so one DDP wrapper covers every trained
    parameter and one state_dict is the whole checkpoint.
    normalize_wave: every input wave is normalised to zero mean and unit variance first (in
    forward and embed alike), for teachers pre-trained on normalised input
    (models.ssl.preprocessor_normalizes).
    frozen_ssl: the student's SSL model never trains: no gradient, and eval mode (no dropout, no
    masking) even while the rest trains (method frozen)."""

    def __init__(self, student, backend, head, normalize_wave=False, frozen_ssl=False):
        super().__init__()
        self.student = student
        self.backend = backend
        self.head = head
        self.normalize_wave = normalize_wave
        self.frozen_ssl = frozen_ssl
        if frozen_ssl:
            student.ssl.requires_grad_(False)

    def train(self, mode=True):
        super().train(mode)
        if self.frozen_ssl:
            self.student.ssl.eval()
        return self

    def forward(self, wave, labels, paths='kd+sv'):
        """One training step's paths (DDP sees only forward, so the choice is an argument):
        'kd+sv' both over one front end, 'kd' the student without adapters, 'sv' the SV path alone.
        wave (B, L) augmented crops -> (KD hidden states (B, T, D), SV loss, SV accuracy %), None
        for a path not run."""
        if self.normalize_wave:
            wave = normalize_waves(wave)
        if paths == 'kd':
            return self.student(wave, adapters=False), None, None
        if paths == 'sv':
            kd_hidden, sv_hidden = None, self.student(wave, adapters=True)
        else:
            kd_hidden, sv_hidden = self.student.forward_two_paths(wave)
        sv_loss, accuracy = self.head(self.backend(sv_hidden), labels)
        return kd_hidden, sv_loss, accuracy

    def embed(self, wave, lengths=None, sv_from=0):
        """Inference: the SV path only (adapters on). (B, L) -> (B, E). lengths (B,): the valid
        samples of each row of a zero-padded batch, each row embedded as it is alone. sv_from: the
        first row that takes the adapters (0: all; more only for eval_segments_like_original)."""
        return embed_waves(self.student, self.backend, wave, lengths, self.normalize_wave, sv_from)

    def parameter_groups(self):
        """The three optimizer groups of the method."""
        return {
            'backend': list(self.backend.parameters()) + list(self.head.parameters()),
            'student': self.student.backbone_parameters(),
            'adapter': self.student.adapter_parameters(),
        }


def embed_waves(student, backend, wave, lengths=None, normalize_wave=False, sv_from=0):
    """The SV path, adapters on every row, and the back-end: (B, L) -> (B, E). What SpeakerNet.embed
    runs and the exported graph holds (inference.export). lengths (B,): the valid samples of each
    row of a zero-padded batch, each row embedded as it is alone. normalize_wave: as SpeakerNet's.
    sv_from > 0 (unpadded rows only): the rows before it without adapters, as the original code's
    evaluation ran part of its segments (eval_segments_like_original)."""
    if normalize_wave:
        wave = normalize_waves(wave, lengths)
    if sv_from:
        if lengths is not None:
            raise ValueError('sv_from: rows without adapters are embedded from an unpadded batch only')
        return backend(student.forward_rows(wave, sv_from))
    if lengths is None:
        return backend(student(wave, adapters=True))  # (B, T, D) -> (B, E)
    hidden, frames = student.forward_padded(wave, lengths)
    return backend(hidden, frames)
