"""The trained system built from the run's settings: for training (the student copied from the
teacher) and for a checkpoint (the student from its own SSL config), so that every mode rebuilds
the same model without the training code."""

from dataclasses import dataclass

from models.aam import AAMSoftmax
from models.ecapa import EcapaTdnn
from models.precision import norms_in_float32
from models.speaker_net import SpeakerNet
from models.ssl import count_parameters
from models.student import Student


@dataclass(frozen=True)
class StudentShape:
    """The student a method trains: whether it carries the parallel adapters, whether it keeps every
    layer of the teacher (else the first num_hidden_layers), whether its SSL model stays frozen in
    eval mode."""

    adapters: bool = False
    all_layers: bool = False
    frozen_ssl: bool = False


# by `method` (arguments.py); how each one trains is trainer/methods.py
STUDENT_SHAPES = {
    'oskdft': StudentShape(adapters=True),
    'ft': StudentShape(all_layers=True),
    'student_ft': StudentShape(),
    'kd_ft': StudentShape(),
    'frozen': StudentShape(all_layers=True, frozen_ssl=True),
}


def build_model(args, teacher, num_classes, weights=None, ssl_config=None):
    """Student (copied from the teacher: as many layers as the method keeps, with adapters where it
    has them) + ECAPA-TDNN sized from the SSL width + AAM-softmax. With ssl_config (a checkpoint's,
    see trainer.state.save) the student is built from its own config instead, teacher None,
    its weights random until the checkpoint's are loaded. Its layer and group norms run in float32
    under autocast (models/precision.py)."""
    shape = STUDENT_SHAPES[args['method']]
    num_layers = None
    if ssl_config is None:
        num_layers = teacher.config.num_hidden_layers if shape.all_layers else args['num_hidden_layers']
    student = Student(
        teacher,
        num_layers,
        args['adapter_bottleneck'],
        args['adapter_scale'],
        args['adapter_input_residual'],
        with_adapters=shape.adapters,
        ssl_config=ssl_config,
    )
    backend = EcapaTdnn(
        student.hidden_size,
        args['ecapa_channels'],
        args['embedding_size'],
        args['spec_mask_freq'],
        args['spec_mask_time'],
        args['spec_mask_p'],
    )
    head = AAMSoftmax(args['embedding_size'], num_classes, args['aam_margin'], args['aam_scale'], weights)
    model = SpeakerNet(student, backend, head, normalize_wave=args['normalize_wave'], frozen_ssl=shape.frozen_ssl)
    return norms_in_float32(model)


def parameter_counts(teacher, model):
    """The sizes results.json reports: the teacher (None when it was not read), the deployed student
    (adapters included) and ECAPA."""
    return {
        'teacher': count_parameters(teacher) if teacher is not None else None,
        'student': count_parameters(model.student),
        'backend': count_parameters(model.backend),
    }
