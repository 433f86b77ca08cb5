"""The trained system: student SSL model (with adapters) -> ECAPA-TDNN -> AAM-softmax."""
import torch.nn as nn


class SpeakerNet(nn.Module):
    """Student + back-end + training head, one module so one DDP wrapper covers every trained
    parameter and one state_dict is the whole checkpoint."""

    def __init__(self, student, backend, head):
        super().__init__()
        self.student = student
        self.backend = backend
        self.head = head

    def forward(self, wave, labels):
        """One training step's two paths over one front end.
        wave (B, L) augmented crops -> (KD hidden states (B, T, D), SV loss, SV accuracy %)."""
        kd_hidden, sv_hidden = self.student.forward_two_paths(wave)
        sv_loss, accuracy = self.head(self.backend(sv_hidden), labels)
        return kd_hidden, sv_loss, accuracy

    def embed(self, wave, lengths=None):
        """Inference: the SV path only (adapters on). (B, L) -> (B, E). lengths (B,): the valid
        samples of each row of a zero-padded batch, only where student.pads_exactly."""
        if lengths is None:
            return self.backend(self.student(wave, adapters=True))
        hidden, frames = self.student.forward_padded(wave, lengths)
        return self.backend(hidden, frames)

    def parameter_groups(self):
        """The three optimizer groups of the method."""
        return {
            'backend': list(self.backend.parameters()) + list(self.head.parameters()),
            'student': self.student.backbone_parameters(),
            'adapter': self.student.adapter_parameters(),
        }
