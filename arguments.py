"""The one place a user edits: system paths and hyper-parameters.

`python main.py key=value ...` overrides any key below, typed by the default's type.
With every dataset path left at None the embedded demo runs: a small generated corpus and the
small teacher shipped in models/demo-teacher/ (DEMO below), so no download is needed.
"""

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    """One setting: its default (whose type types the command line's value), one line of help, and
    the values it may take when they are few (every check of them comes from here)."""

    default: object
    help: str
    choices: tuple = ()


# Paths and machine settings: where things are, not how the experiment behaves.
SYSTEM = {
    'path_log': Setting('./exp', 'run folders are created under it'),
    'path_cache': Setting('./.cache', 'the generated demo corpus is kept here and reused'),
    'path_train': Setting(None, 'VoxCeleb2 dev (or VoxCeleb1 dev) wav root: <root>/idXXXXX/<video>/xxxxx.wav'),
    'path_test': Setting(None, 'VoxCeleb1 wav root (dev + test) that the trial lists point into'),
    'path_trials': Setting(None, 'folder holding the official trial lists named below'),
    'path_musan': Setting(None, 'MUSAN root with speech/, music/, noise/'),
    'path_rir': Setting(None, 'RIR root (e.g. RIRS_NOISES/simulated_rirs), searched recursively'),
    'num_workers': Setting('auto', 'data-loading processes per GPU; auto: the cores shared among the GPUs'),
    'eval_batch_seconds': Setting(
        60.0,
        "enrollment's memory budget: audio per forward, padding included (GPU: larger is faster while memory "
        'lasts; a CPU gains nothing from batches)',
    ),
    'device': Setting('auto', 'auto: CUDA when visible', choices=('auto', 'cuda', 'cpu')),
    'usable_gpu': Setting(None, "e.g. '0,1,2,3': the GPUs `python main.py` starts one process on each"),
    'amp': Setting(
        'auto',
        'fp16 with loss scaling; auto: bf16 where the GPU has it, else none',
        choices=('auto', 'none', 'bf16', 'fp16'),
    ),
    'compile': Setting(False, 'torch.compile the student and ECAPA-TDNN'),
    'mode': Setting(
        'train',
        'the others need `checkpoint`: evaluate scores the trial lists; export, embed, verify: docs/inference.md',
        choices=('train', 'evaluate', 'export', 'embed', 'verify'),
    ),
    'checkpoint': Setting(None, 'a last.pt / best.pt of an earlier run, for every mode but train'),
    'wav_list': Setting(None, 'mode=embed: a text file of audio paths (one a line), or a folder'),
    'out': Setting(
        None,
        'mode=export / embed: output folder (None: one in the run folder); embed continues what an '
        'interrupted run left in it',
    ),
    'enroll': Setting(None, 'mode=verify: the enrollment recording'),
    'test': Setting(None, 'mode=verify: the recording verified against it'),
    'threshold': Setting(
        None,
        "mode=verify: accept when score >= threshold; None: the checkpoint's own (the EER point of Vox1-O at "
        'the best epoch)',
    ),
    'resume': Setting(None, "a run's last.pt, or 'auto': the newest last.pt of this `name`"),
    'checkpoint_minutes': Setting(30.0, 'last.pt is also saved this often within an epoch (0: every step)'),
    'max_bad_files': Setting(100, 'unreadable training files skipped (each named in the log) before the run stops'),
    'max_bad_steps': Setting(50, 'this many non-finite steps in a row stop the run (last.pt saved)'),
    'log_interval': Setting(100, 'steps between reads of the losses from the device'),
    'project': Setting('OS-KDFT', "the project: run folders go under path_log/<project>; the trackers' project"),
    'name': Setting('oskdft', "the run's name: its folder is <name>-<date>-<time>"),
    'tags': Setting('oskdft', 'comma separated'),
    'description': Setting(
        'One-step knowledge distillation and fine-tuning for speaker verification', 'a line for the trackers'
    ),
    # Experiment tracking: TensorBoard into the run folder; wandb and neptune each on when its user is set.
    # Prefer the services' environment variables to a token here (this file is code: it gets copied and
    # shared); every run keeps tokens out of its files, its output and the trackers either way.
    'tensorboard': Setting(True, 'event files in <run folder>/tensorboard (tensorboard --logdir exp)'),
    'wandb_user': Setting(None, 'wandb entity (user or team): turns wandb on'),
    'wandb_project': Setting(None, 'None: `project`'),
    'wandb_token': Setting(None, 'None: WANDB_API_KEY'),
    'wandb_mode': Setting(None, 'online | offline (no network, `wandb sync` later); None: WANDB_MODE'),
    'neptune_user': Setting(None, 'neptune workspace: turns neptune on'),
    'neptune_project': Setting(None, 'None: `project`'),
    'neptune_token': Setting(None, 'None: NEPTUNE_API_TOKEN'),
    'neptune_mode': Setting(None, 'async | offline (no network, `neptune sync` later); None: NEPTUNE_MODE'),
    'log_checkpoints': Setting(False, 'send best.pt to wandb (an artifact) and neptune (a file) at the end'),
}

# The experiment: every value is the paper's / the authors' code's default.
EXPERIMENT = {
    'preset': Setting(
        'auto',
        'named values over these defaults (below); auto: demo without data, else vox2',
        choices=('auto', 'demo', 'smoke', 'vox2', 'vox1'),
    ),
    'method': Setting(
        'oskdft',
        'ft: the whole teacher fine-tuned; student_ft: no KD; kd_ft: KD, then fine-tuning; frozen: the back-end alone',
        choices=('oskdft', 'ft', 'student_ft', 'kd_ft', 'frozen'),
    ),
    'kd_epochs': Setting(100, 'kd_ft: epochs of its KD-only first stage (then `epoch` of fine-tuning)'),
    'model_name_or_path': Setting(
        'facebook/wav2vec2-large-xlsr-53',
        "hub id, local folder, 'tiny' (random) or 'demo-teacher' (the demo's pre-trained teacher, shipped in "
        'models/demo-teacher/; made by recipes/demo_teacher.py)',
    ),
    'num_hidden_layers': Setting(4, 'student transformer layers'),
    'adapter_bottleneck': Setting(64, 'adapter width: hidden size -> 64 -> hidden size, in each student layer'),
    'adapter_scale': Setting(0.1, "the adapter's output x 0.1, added to the feed-forward's"),
    'adapter_input_residual': Setting(False, "True reproduces the original code's extra residual in the adapter"),
    'normalize_wave': Setting(
        False,
        'zero-mean unit-variance waves for teacher and student (the original: off)',
    ),
    # ECAPA-TDNN back-end and AAM-softmax
    'ecapa_channels': Setting(512, 'ECAPA-TDNN channels C (its blocks 3C / 9C / 3C / 6C wide, docs/differences.md)'),
    'embedding_size': Setting(192, 'speaker embedding dimension'),
    'spec_mask_freq': Setting(100, 'SpecAugment: widest channel mask of the SSL features'),
    'spec_mask_time': Setting(10, 'SpecAugment: longest time mask (frames)'),
    'spec_mask_p': Setting(
        0.6, 'SpecAugment: probability that a batch gets the mask (one rectangle of channels x frames)'
    ),
    'aam_margin': Setting(0.2, 'AAM-softmax additive angular margin'),
    'aam_scale': Setting(30.0, 'AAM-softmax scale'),
    'class_weight': Setting(True, "cross-entropy weighted by total / speaker's utterances"),
    # losses and optimisation
    'kd_weight': Setting(100.0, 'KD loss = MSE x kd_weight x (E - e) / E'),
    'lr': Setting(1e-4, 'ECAPA + AAM base LR (cosine annealing with warm restarts)'),
    'lr_min': Setting(1e-6, "the cosine schedule's floor"),
    'T_0': Setting(100, 'epochs of the first cosine cycle'),
    'T_mult': Setting(1, 'each cycle this many times longer than the last'),
    'student_warmup_epochs': Setting(10, 'student LR = ECAPA LR x e / 10 for e < 10 ...'),
    'student_lr_decay': Setting(0.93, "... then the previous epoch's value x 0.93"),
    'adapter_lr_ratio': Setting(10.0, 'adapter LR = 10 x ECAPA LR'),
    # data
    'epoch': Setting(100, 'training epochs (kd_ft: of its fine-tuning stage)'),
    'batch_size': Setting(128, 'in total across all GPUs'),
    'max_train_files': Setting(0, 'train on a seeded random subset of this many files (0: all of them)'),
    'num_train_frames': Setting(200, 'x 160 samples at 16 kHz: 2 s crops'),
    'min_train_seconds': Setting(0.5, 'shorter training files are left out (counted in the log)'),
    'num_test_frames': Setting(300, '3 s evaluation segments'),
    'num_seg': Setting(5, 'evaluation segments per utterance, beside the full utterance'),
    'eval_segments_like_original': Setting(
        False,
        'True: segments 1-2 of 5 embedded without adapters, as the original did',
    ),
    'asnorm_top_k': Setting(0, 'adaptive s-norm of the final scores (WeSpeaker: 300); 0: off'),
    'asnorm_cohort_utts': Setting(
        3,
        'utterances per training speaker averaged into its cohort embedding (the unit mean of that many; '
        "WeSpeaker's formula, but its cohort is the mean of all of a speaker's raw embeddings minus the "
        "training set's mean: docs/differences.md)",
    ),
    'aug_p': Setting(0.6, 'probability that a training crop is augmented (MUSAN noise, speech, music or a RIR)'),
    'clip_p': Setting(0.3, "of the augmented crops: probability of clipping (the original code's)"),
    'ease_p': Setting(0.3, "of the augmented crops: probability of a fade-in or fade-out (the original code's)"),
    'seed': Setting(1, 'models and training draws; the demo corpus and the demo teacher are the same for every seed'),
    'best_model': Setting(
        'vox1_o',
        "vox1_o: the epoch of the lowest Vox1-O EER (the paper's and the original code's choice; Vox1-O "
        'scored after every epoch); val: the lowest EER on the validation list (trials_val); last: the last '
        'epoch, no list scored before the end',
        choices=('vox1_o', 'val', 'last'),
    ),
    'demo_test_speakers': Setting(
        48,
        "the embedded demo's test split: Vox1-E / H hold them all, Vox1-O half (on 12 speakers one model's "
        'EER ranged 3.9-11.3 % with the speakers drawn, on 24 5.9-9.4 %: benchmarks/list_spread.py)',
    ),
    # trial lists in path_trials. None: the official names, the cleaned list first; a file name here is
    # used as given; 'off' leaves the list out. A list that is not there is left out (said in the log)
    'trials_vox1_o': Setting(None, 'Vox1-O; None: veri_test2.txt, else veri_test.txt'),
    'trials_vox1_e': Setting(None, 'Vox1-E; None: list_test_all2.txt, else list_test_all.txt'),
    'trials_vox1_h': Setting(None, 'Vox1-H; None: list_test_hard2.txt, else list_test_hard.txt'),
    'trials_val': Setting(
        None,
        'a validation list in path_trials (held-out speakers, in no test list): scored after every epoch with '
        'best_model=val, and at the end beside the others; None: none',
    ),
    # large-margin fine-tuning (LMFT): after the main stages, the SV path alone from their best model
    # (docs/lmft.md; the values are WeSpeaker's examples/voxceleb/v2/conf/ecapa_tdnn_lm.yaml)
    'lmft_epochs': Setting(0, "LMFT epochs after the method's own (0: off; WeSpeaker's ecapa_tdnn_lm.yaml: 5)"),
    'lmft_margin': Setting(0.5, 'AAM margin through LMFT, constant (WeSpeaker margin_update 0.5 -> 0.5 from epoch 1)'),
    'lmft_seconds': Setting(6.0, 'LMFT training crops (WeSpeaker num_frms 600 x 10 ms fbank frames)'),
    'lmft_batch_size': Setting(0, "LMFT global batch; 0: batch_size // 2 (WeSpeaker's LMFT configs halve the batch)"),
    'lmft_lr': Setting(
        1e-4,
        'LMFT LR of back-end and SSL model (adapters x adapter_lr_ratio) after a one-epoch warm-up from 0, per '
        'step (WeSpeaker initial_lr 1.0e-4, warm_up_epoch 1, warm_from_zero)',
    ),
    'lmft_lr_final': Setting(
        2.5e-5, "... falling exponentially to this at LMFT's last step (WeSpeaker final_lr 2.5e-5)"
    ),
    # score calibration (QMF)
    'qmf': Setting(False, 'calibrate the final scores into LLRs by quality measures (durations, imposter means)'),
    'qmf_trials': Setting(
        30_000, 'calibration trials drawn from the training speakers, half targets (WeSpeaker: 30,000)'
    ),
    'qmf_top_k': Setting(
        300, "cohort scores averaged into an utterance's imposter mean (WeSpeaker's AS-norm top_n: 300)"
    ),
    'p_target': Setting(
        0.01, "target prior of mode=verify's calibrated threshold log((1 - p) / p) (the minDCF's 0.01)"
    ),
}

SYSTEM_ARGS = {key: setting.default for key, setting in SYSTEM.items()}
EXPERIMENT_ARGS = {key: setting.default for key, setting in EXPERIMENT.items()}

# Presets: named sets of values over the defaults above, chosen by preset=NAME (command-line values
# still win). preset=auto: demo when no dataset path is set, else vox2.
# The embedded demo's own sizes, every one chosen on its validation list (docs/demo.md: how the demo's
# settings were chosen).
DEMO = {
    'model_name_or_path': 'demo-teacher',
    'num_hidden_layers': 2,
    'ecapa_channels': 128,
    'spec_mask_freq': 12,  # the paper's 100 of 1024 channels, scaled to the tiny width
    'epoch': 5,  # with the validation list scored after each: a later run about 5 min on two slow cores
    'kd_epochs': 4,
    'T_0': 5,
    'lr': 2e-3,  # validation EER 6.83 % (4e-3: 7.18 %); the student's: half of it in epoch 1, then x 0.93 an epoch
    'student_warmup_epochs': 2,  # the shortest warm-up (the paper's 10 epochs are longer than the run)
    'batch_size': 32,
    'num_test_frames': 200,  # 2 s evaluation segments, as long as the training crops: the same validation EER
    # as 3 s segments (6.83 %), with a quarter less audio to embed
    'log_interval': 10,  # three reports in each of the demo's 33-step epochs
    'best_model': 'val',  # the demo's epoch is chosen on its validation speakers, never on a test list
    'trials_val': 'demo_val.txt',
    'name': 'demo',
    'tags': 'oskdft,demo',
}

# The demo's sizes on the user's own data: one short epoch over max_train_files files, Vox1-O
# scored, a tiny random teacher; proves the paths and the whole pipeline in minutes.
SMOKE = {
    **{
        key: DEMO[key]
        for key in (
            'num_hidden_layers',
            'ecapa_channels',
            'spec_mask_freq',
            'lr',
            'batch_size',
            'log_interval',
        )
    },
    'model_name_or_path': 'tiny',
    'epoch': 1,
    'kd_epochs': 1,
    'T_0': 1,
    'max_train_files': 2000,
    'trials_vox1_e': 'off',
    'trials_vox1_h': 'off',
    'name': 'smoke',
    'tags': 'oskdft,smoke',
}

# The paper: VoxCeleb2 dev, scored on Vox1-O / E / H (0.98 % EER on Vox1-O with wav2vec2-large-xlsr-53).
VOX2 = {'name': 'oskdft-vox2', 'tags': 'oskdft,vox2'}

# The paper's VoxCeleb1 setting: VoxCeleb1 dev, Vox1-O only (E and H share its speakers).
VOX1 = {'name': 'oskdft-vox1', 'tags': 'oskdft,vox1'}

PRESETS = {'demo': DEMO, 'smoke': SMOKE, 'vox2': VOX2, 'vox1': VOX1}

# The randomly initialised Wav2Vec2 that model_name_or_path='tiny' builds (the demo teacher's shape).
TINY_SSL = {
    'hidden_size': 128,
    'num_hidden_layers': 4,
    'num_attention_heads': 4,
    'intermediate_size': 256,
    'conv_dim': (32, 32, 32, 32, 32, 32, 32),
    'num_conv_pos_embeddings': 32,
    'num_conv_pos_embedding_groups': 4,
}

DATASET_PATHS = ('path_train', 'path_test', 'path_trials', 'path_musan', 'path_rir')

# The settings that take one of a few values, from the tables above: every check of them comes from
# here (and the tests hold the code's own tables to it: the modes, the methods, the best-model lists,
# the precisions, the presets).
CHOICES = {key: setting.choices for key, setting in {**SYSTEM, **EXPERIMENT}.items() if setting.choices}


def describe(keys=()):
    """The settings table as text (`python main.py help [key ...]`): each setting's default, the
    presets' values that differ from it, its choices and its help, in the order above."""
    table = {**SYSTEM, **EXPERIMENT}
    unknown = [key for key in keys if key not in table]
    if unknown:
        raise ArgumentError(f'help {unknown[0]}: no such setting. `python main.py help` lists them all.')
    lines = []
    for key in keys or table:
        setting = table[key]
        presets = ', '.join(f'{name} {values[key]!r}' for name, values in PRESETS.items() if key in values)
        lines.append(f'{key} = {setting.default!r}' + (f'   (presets: {presets})' if presets else ''))
        if setting.choices:
            lines.append(f'    one of: {", ".join(setting.choices)}')
        lines.append(f'    {setting.help}')
    return '\n'.join(lines)


class ArgumentError(ValueError):
    """A key=value on the command line that cannot be used."""


def parse_value(key, text, default):
    """Turns the text of key=text into the type of the key's default."""
    if default is None:
        return None if text.lower() in ('none', 'null', '') else text
    if isinstance(default, bool):
        if text.lower() in ('true', '1', 'yes', 'on'):
            return True
        if text.lower() in ('false', '0', 'no', 'off'):
            return False
        raise ArgumentError(f'{key}={text}: expected true or false')
    try:
        return type(default)(text)
    except ValueError:
        raise ArgumentError(
            f'{key}={text}: expected a value of type {type(default).__name__} (default {default!r})'
        ) from None


def parse_overrides(argv, defaults):
    """Reads `key=value` tokens; an unknown key fails at once, naming the closest real keys."""
    overrides = {}
    for token in argv:
        key, sep, text = token.partition('=')
        if not sep or not key:
            raise ArgumentError(f'{token!r}: arguments are written key=value (e.g. epoch=10)')
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=3, cutoff=0.6)
            hint = f' Did you mean {" or ".join(close)}?' if close else ''
            raise ArgumentError(
                f'unknown argument {key!r}.{hint} Every key is listed in arguments.py (python main.py help).'
            )
        overrides[key] = parse_value(key, text, defaults[key])
    return overrides


class Settings(dict):
    """The run's settings once they are resolved: read like a dict, never changed afterwards (a
    changed copy is a new Settings: settings.replace(key=value))."""

    def _read_only(self, *args, **kwargs):
        raise TypeError('the settings are read-only once resolved: make a changed copy with .replace(key=value)')

    __setitem__ = __delitem__ = update = pop = popitem = setdefault = clear = __ior__ = _read_only

    def replace(self, **changes):
        return Settings({**self, **changes})

    def __reduce__(self):  # pickled (to spawned processes) as its items, not item by item
        return Settings, (dict(self),)


def check_choices(args):
    """Fails for a setting of CHOICES whose value is not one of its choices, naming them."""
    for key, allowed in CHOICES.items():
        if key in args and args[key] not in allowed:
            close = difflib.get_close_matches(str(args[key]), allowed, n=1, cutoff=0.6)
            hint = f' (did you mean {close[0]}?)' if close else ''
            raise ArgumentError(f'{key}={args[key]!r}: expected one of {", ".join(allowed)}{hint}')


def get_args(argv=()):
    """Returns (args, system_args, experiment_args): defaults, then the preset (auto: demo when no
    dataset path is set, else vox2), then the command line."""
    args, _ = parse(argv)
    system_args = {key: args[key] for key in SYSTEM_ARGS}
    experiment_args = {key: args[key] for key in EXPERIMENT_ARGS}
    return args, system_args, experiment_args


def parse(argv=()):
    """The command line read once: (args, the key=values it gave). args: defaults, then the preset
    (auto: demo when no dataset path is set, else vox2), then the command line; the derived values
    (`demo`, `tiny_ssl`) set here."""
    defaults = {**SYSTEM_ARGS, **EXPERIMENT_ARGS}
    overrides = parse_overrides(argv, defaults)
    args = dict(defaults)
    preset = overrides.get('preset', args['preset'])
    if preset == 'auto':
        preset = 'demo' if all(overrides.get(key, args[key]) is None for key in DATASET_PATHS) else 'vox2'
    check_choices({'preset': preset})
    args.update(PRESETS[preset])
    args['demo'] = preset == 'demo'
    args.update(overrides)
    args['preset'] = preset
    args['tiny_ssl'] = dict(TINY_SSL)
    check_choices(args)
    return args, overrides
