"""The embedded demo's teacher (model_name_or_path=demo-teacher): a small Wav2Vec2 that knows
something about voices, trained once and kept in path_cache.

A randomly initialised Wav2Vec2 of DEMO_TEACHER's shape is trained for speaker verification by the
`ft` method (the SSL model and an ECAPA-TDNN, every weight trained, AAM-softmax) over the DEMO
preset's values, on the training speakers of the standard demo corpus: none of them is in a trial
list. Its last epoch is kept (no list chooses it), then the whole system is scored once on the demo's
Vox1-O / E / H, so that the log can set the teacher's EER beside the student's. The SSL model is
saved with save_pretrained, as any checkpoint a user would give. The folder is named by a hash of the
recipe and of every value its training takes from the DEMO preset and the defaults: a change to any
of them trains a new teacher, an unchanged one is reused.

    <path_cache>/demo-teacher/teacher-<hash>/
        config.json  model.safetensors     the teacher, read as any local checkpoint
        demo_teacher.json                  the recipe, its EERs, the time it took and where
        runs/                              its training run folder (log, metrics, results, plots)
"""

import hashlib
import json
import os
import shutil
import tempfile
import time

import arguments
from arguments import get_args
from data.demo import GENERATOR_VERSION, prepare_demo
from log.controller import LogModuleController
from models.ssl import model_from_config
from trainer.trainer import TRIAL_LISTS, train
from utils import distributed
from utils.checkpoint import load_checkpoint, write_atomic

TEACHER_NAME = 'demo-teacher'  # the model_name_or_path that asks for it
RECIPE_VERSION = 1  # bump when the way it is trained changes, so that old teachers are not reused
INFO_FILE = 'demo_teacher.json'
SSL_PREFIX = 'student.ssl.'  # where a SpeakerNet's state_dict keeps its SSL model (ft: all of it)
# the run's settings the teacher's training takes: how the machine runs it, never what it learns
MACHINE_KEYS = (
    'path_cache',
    'num_workers',
    'eval_batch_seconds',
    'device',
    'usable_gpu',
    'amp',
    'compile',
    'max_bad_files',
    'max_bad_steps',
    'checkpoint_minutes',
)
EXPECTED_TIME = 'about 5 min on 2 CPU cores, far less on a GPU'


def teacher_folder(path_cache, recipe):
    """path_cache/demo-teacher/teacher-<hash of its shape, its corpus, every setting it trains with
    (the recipe's training values over the DEMO preset's) and the code versions that shape it>."""
    key = json.dumps(
        {
            'ssl': recipe['ssl'],
            'corpus': recipe['corpus'],
            'settings': learning_settings(recipe),
            'version': RECIPE_VERSION,
            'corpus_version': GENERATOR_VERSION,
        },
        sort_keys=True,
    )
    return os.path.join(path_cache, TEACHER_NAME, f'teacher-{hashlib.sha1(key.encode()).hexdigest()[:10]}')


def prepare_demo_teacher(args, device, recipe=None):
    """(the folder of the teacher that recipe (None: arguments.DEMO_TEACHER) describes, one line on it
    for the run's log), trained now unless path_cache holds it. Every process of a job calls it:
    they train it together (as they would train anything), rank 0 writes it, and a scratch folder
    renamed into place at the end means that a killed run never leaves a teacher that looks finished."""
    recipe = recipe or arguments.DEMO_TEACHER
    folder = teacher_folder(args['path_cache'], recipe)
    show = distributed.is_main()
    if distributed.broadcast_object(os.path.isfile(os.path.join(folder, INFO_FILE))):
        return folder, f'demo teacher: {folder}, reused; {describe(read_info(folder))}'

    if show:
        print(f'demo teacher: training one into {folder} (first run only; {EXPECTED_TIME})', flush=True)
    started = time.monotonic()
    scratch = distributed.broadcast_object(make_scratch(folder) if show else None)
    try:
        info = build_teacher(recipe, args, device, scratch)
        info['minutes'] = round((time.monotonic() - started) / 60, 1)
        if show:
            write_atomic(os.path.join(scratch, INFO_FILE), lambda file: json.dump(info, file, indent=2), mode='w')
            os.rename(scratch, folder)
    finally:
        if show:
            shutil.rmtree(scratch, ignore_errors=True)
    distributed.barrier()
    return folder, f'demo teacher: {folder}, trained now in {info["minutes"]} min; {describe(info)}'


def build_teacher(recipe, args, device, scratch):
    """Trains the teacher (its run folder under scratch/runs), saves its SSL model into scratch;
    returns what demo_teacher.json records."""
    settings = training_args(recipe, args, scratch)
    logger = (
        LogModuleController.Builder('demo-teacher', 'runs')
        .tags(['demo-teacher'])
        .use_local(scratch)
        .build(rank=distributed.rank())
    )
    logger.log_parameter(settings)
    logger.log_text(f'demo teacher: {describe({"recipe": recipe, "epochs": settings["epoch"], "lists": {}})}')
    failed = True
    try:
        results = train(settings, logger, device)
        failed = False
    finally:
        logger.finish(failed)
    if results is None:
        raise SystemExit('demo teacher: stopped before it was trained; the next run trains it anew')
    run_dir = distributed.broadcast_object(logger.run_dir)
    if distributed.is_main():
        save_ssl(load_checkpoint(os.path.join(run_dir, 'best.pt')), scratch)
    return {
        'recipe': recipe,
        'epochs': settings['epoch'],
        'run': os.path.relpath(run_dir, scratch),
        'device': f'{device.type} x {distributed.world_size()}',
        'lists': {
            name: {key: results[name][key] for key in ('eer', 'min_dcf_0.01', 'trials')}
            for name in TRIAL_LISTS
            if name in results
        },
    }


def training_args(recipe, args, scratch):
    """The teacher's training settings: the DEMO preset's values with the recipe's over them, this
    run's machine settings, the recipe's demo corpus (made here when missing, by rank 0), and a
    random Wav2Vec2 of the recipe's shape."""
    root = os.path.join(args['path_cache'], 'demo')
    if distributed.is_main():
        prepare_demo(root, **recipe['corpus'])
    distributed.barrier()
    settings = get_args(['preset=demo'])[0]
    settings.update({key: args[key] for key in MACHINE_KEYS})
    settings.update(learning_settings(recipe))
    settings.update(prepare_demo(root, **recipe['corpus']))
    settings.update(
        model_name_or_path='tiny',
        tiny_ssl=dict(recipe['ssl']),
        path_log=scratch,
        name='demo-teacher',
        tags='demo-teacher',
        tensorboard=False,
        resume=None,
        mode='train',
    )
    return settings


def learning_settings(recipe):
    """What the teacher learns with: the experiment values of the DEMO preset (over the defaults)
    with the recipe's training values over them."""
    preset = get_args(['preset=demo'])[0]
    return {**{key: preset[key] for key in arguments.EXPERIMENT_ARGS}, **recipe['training']}


def save_ssl(state, folder):
    """The SSL model of a trained SpeakerNet checkpoint (ft: every layer, no adapter), saved with
    save_pretrained; every weight of its config must be there (strict load)."""
    ssl = model_from_config(state['ssl_config'])
    ssl.load_state_dict(
        {name[len(SSL_PREFIX) :]: tensor for name, tensor in state['model'].items() if name.startswith(SSL_PREFIX)}
    )
    ssl.save_pretrained(folder)


def read_info(folder):
    with open(os.path.join(folder, INFO_FILE), encoding='utf-8') as file:
        return json.load(file)


def describe(info):
    """How the teacher is made, and its EER on the lists it was scored on."""
    ssl = info['recipe']['ssl']
    made = (
        f'a {ssl["num_hidden_layers"]}-layer Wav2Vec2 of width {ssl["hidden_size"]} trained from random weights '
        f'for speaker verification (method {info["recipe"]["training"]["method"]}, {info["epochs"]} epochs, the last '
        f"kept) on the demo corpus's training speakers"
    )
    eers = ', '.join(f'{name} EER {result["eer"]:.2f} %' for name, result in info['lists'].items())
    return f'{made}; {eers}' if eers else made


def make_scratch(folder):
    """A private temporary sibling of folder, renamed into place once complete."""
    parent = os.path.dirname(folder)
    try:
        os.makedirs(parent, exist_ok=True)
        return tempfile.mkdtemp(prefix=os.path.basename(folder) + '.tmp-', dir=parent)
    except OSError as error:
        raise OSError(
            f'cannot create the demo teacher under {parent!r}: {error.strerror}; set path_cache to a writable folder'
        ) from None
