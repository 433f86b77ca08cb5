"""The one-step KD + FT training epoch of OS-KDFT."""
import torch
import torch.nn.functional as F

from models.ssl import frozen_forward
from trainer.schedule import kd_weight
from utils.progress import progress_bar


def train_epoch(model, teacher, loader, optimizer, epoch, args, device, show_progress=True):
    """One epoch: each step runs the frozen teacher on the clean crops, the student's KD path
    (no adapters) and SV path (adapters, ECAPA, AAM) on the augmented crops, and takes one
    optimizer step on KD loss + SV loss. Returns the epoch's mean losses and SV accuracy."""
    model.train()
    weight = kd_weight(epoch, args['epoch'], args['kd_weight'])
    sums = torch.zeros(4, dtype=torch.float64)
    bar = progress_bar(loader, f'epoch {epoch}', show_progress)
    for clean, augmented, labels in bar:
        clean, augmented, labels = clean.to(device), augmented.to(device), labels.to(device)
        target = frozen_forward(teacher, clean)                          # (B, T, D)
        kd_hidden, sv_loss, accuracy = model(augmented, labels)          # (B, T, D), (), ()
        kd_loss = F.mse_loss(kd_hidden, target) * weight
        loss = kd_loss + sv_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step = torch.stack([kd_loss, sv_loss, loss, accuracy]).detach().double().cpu()
        sums += step
        bar.set_postfix(kd=f'{step[0]:.3f}', sv=f'{step[1]:.3f}', acc=f'{step[3]:.1f}')
    means = (sums / max(len(loader), 1)).tolist()
    return dict(zip(('kd', 'sv', 'total', 'accuracy'), means))
