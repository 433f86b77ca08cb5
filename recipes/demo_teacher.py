"""How the demo's teacher (model_name_or_path=demo-teacher, shipped in models/demo-teacher/) is made.

The real teachers learned from tens of thousands of hours that the student never sees labelled. The
miniature does the same at its scale: a population of POPULATION speakers of the demo's voice
generator, none of them a training, test or validation speaker of the demo (data.demo's
prepare_population), is the teacher's only data. A Wav2Vec2 of SHAPE's size is pre-trained on it
from random weights:

- objective 'ssl' (tried first, as wav2vec 2.0 itself was made): transformers' Wav2Vec2ForPreTraining,
  contrastive loss over masked frames against quantised targets plus the codebook diversity loss, no
  labels at all;
- objective 'speaker' (the fallback): speaker classification of the population's voices (the `ft`
  method: the SSL model and an ECAPA-TDNN, AAM-softmax), then the SSL model alone is kept.

Either way the demo's 90 training speakers stay unseen by the teacher. The teacher is then judged on
the demo's validation list (held-out speakers, in no test list), against a random teacher of the same
shape, two ways: `pooled`, cosine scoring of mean + standard deviation pooled last hidden states
(no training, reproducible to the digit: the tests re-score it); and `probe`, the frozen teacher with
an ECAPA-TDNN trained on the demo's 90 training speakers (method=frozen, the demo's settings), the
validation EER of its last epoch.

    python recipes/demo_teacher.py                       # the shipped recipe, into models/demo-teacher
    python recipes/demo_teacher.py --objective speaker   # the fallback objective
    python recipes/demo_teacher.py --out /tmp/t --population 40 --steps 20 --no-probe   # a quick try

The folder gets config.json + model.safetensors (save_pretrained) and teacher.json: the recipe and
its hash, the population, the code commit, the validation EERs, the time each part took and where.
Same recipe, same machine: the same weights (seeded; data read in the process).
"""

import argparse
import glob
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining, Wav2Vec2Model
from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import arguments  # noqa: E402
from data.audio import SAMPLE_RATE, read_audio  # noqa: E402
from data.datasets import TrainSet  # noqa: E402
from data.demo import VAL_LIST, prepare_demo, prepare_population  # noqa: E402
from data.sampler import GlobalBatchSampler  # noqa: E402
from data.voxceleb import read_trials, scan_voxceleb  # noqa: E402
from models.hf_compat import feature_frames  # noqa: E402
from utils.hardware import describe  # noqa: E402
from utils.metrics import compute_eer  # noqa: E402
from utils.seed import seed_everything  # noqa: E402

TEACHER_NAME = 'demo-teacher'  # the model_name_or_path that asks for the shipped teacher
SHIPPED = ROOT / 'models' / TEACHER_NAME
RECORD = 'teacher.json'
# A Wav2Vec2 twice the demo student's depth; the width of the smallest shape whose step fits the
# demo's time on two cores. Dropouts as wav2vec2-base's config (no dropout inside the feed-forward).
SHAPE = {**arguments.TINY_SSL, 'activation_dropout': 0.0}  # the shape model_name_or_path=tiny builds
# wav2vec 2.0's pre-training, scaled to the shape: two codebooks, masks of 10 frames over 65 % of the
# starts, negatives drawn from the same crop
SSL = {
    'num_codevector_groups': 2,
    'num_codevectors_per_group': 64,
    'codevector_dim': 64,
    'proj_codevector_dim': 64,
    'num_negatives': 20,
    'diversity_loss_weight': 0.1,
    'mask_prob': 0.65,
    'mask_length': 10,
    'gumbel_temperature': (2.0, 0.5, 0.999),  # start, floor, decay per step
}
RECIPE = {
    'objective': 'speaker',  # 'ssl' was tried first: docs/demo.md, the demo teacher
    'shape': SHAPE,
    'population': {'seed': 1, 'num_speakers': 1000, 'videos_per_speaker': 2, 'utterances_per_video': 4},
    'ssl': SSL,
    'steps': 800,
    'batch_size': 32,
    'crop_seconds': 2.0,
    'lr': 5e-4,
    'warmup_steps': 80,
    'seed': 1,
    # objective 'speaker': main.py's `ft` method on the population
    'speaker': {'epoch': 8, 'T_0': 8, 'lr': 1e-3, 'student_warmup_epochs': 2},
}


def describe_teacher(record_path, recipe=None):
    """One line for a run's log: what the shipped teacher is, its validation EERs, and whether it was
    made by the recipe as it stands (recipe: None, this module's RECIPE)."""
    with open(record_path, encoding='utf-8') as file:
        record = json.load(file)
    made = record['recipe']
    population = record['population']
    line = (
        f'demo teacher {os.path.dirname(record_path)}: a {made["shape"]["num_hidden_layers"]}-layer Wav2Vec2 of '
        f'width {made["shape"]["hidden_size"]} pre-trained ({made["objective"]}) on {population["num_speakers"]} '
        f'speakers the student never sees ({population["utterances"]} utterances); validation EER '
        + ', '.join(f'{key} {value:.2f} %' for key, value in record['validation'].items() if key.endswith('eer'))
    )
    expected = recipe_hash(recipe or RECIPE)
    if record['recipe_hash'] != expected:
        line += (
            f'. WARNING: recipes/demo_teacher.py has changed since this teacher was made (recipe hash '
            f"{expected}, the teacher's {record['recipe_hash']}): run it to make the teacher anew"
        )
    return line


def recipe_hash(recipe):
    """What identifies a recipe: the hash of its values (a changed recipe no longer matches the record)."""
    return hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def parse(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('--out', default=str(SHIPPED), help=f'the teacher folder (default {SHIPPED})')
    parser.add_argument('--objective', choices=('ssl', 'speaker'), default=RECIPE['objective'])
    parser.add_argument('--population', type=int, help="speakers of the population (default: the recipe's)")
    parser.add_argument('--steps', type=int, help="pre-training steps of objective ssl (default: the recipe's)")
    parser.add_argument('--epochs', type=int, help="epochs of objective speaker (default: the recipe's)")
    parser.add_argument('--no-probe', action='store_true', help='skip the ECAPA probes (minutes each)')
    parser.add_argument('--cache', default=str(ROOT / '.cache'), help='where the population and corpus go')
    options = parser.parse_args(argv)
    recipe = json.loads(json.dumps(RECIPE))  # a copy, tuples as lists (as the record holds them)
    recipe['objective'] = options.objective
    if options.population:
        recipe['population']['num_speakers'] = options.population
    if options.steps:
        recipe['steps'] = options.steps
        recipe['warmup_steps'] = max(1, options.steps // 10)
    if options.epochs:
        recipe['speaker'].update(epoch=options.epochs, T_0=options.epochs)
    return options, recipe


def crops(manifest, recipe):
    """Endless seeded batches of clean crops from the population, (B, L) float32."""
    dataset = TrainSet(
        manifest.paths, manifest.labels, round(recipe['crop_seconds'] * SAMPLE_RATE), None, recipe['seed']
    )
    sampler = GlobalBatchSampler(len(dataset), recipe['batch_size'], seed=recipe['seed'])
    epoch = 0
    while True:
        epoch += 1
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        for indices in sampler:
            yield torch.stack([torch.as_tensor(dataset[i][0]) for i in indices])


def pretrain_ssl(recipe, manifest, log):
    """Wav2Vec2ForPreTraining from random weights on the population's crops; returns the base model."""
    ssl = recipe['ssl']
    config = Wav2Vec2Config(
        **recipe['shape'],
        num_codevector_groups=ssl['num_codevector_groups'],
        num_codevectors_per_group=ssl['num_codevectors_per_group'],
        codevector_dim=ssl['codevector_dim'],
        proj_codevector_dim=ssl['proj_codevector_dim'],
        num_negatives=ssl['num_negatives'],
        diversity_loss_weight=ssl['diversity_loss_weight'],
        attn_implementation='sdpa',
    )
    model = Wav2Vec2ForPreTraining(config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe['lr'], weight_decay=0.01)
    start, floor, decay = ssl['gumbel_temperature']
    batches = crops(manifest, recipe)
    started = time.monotonic()
    for step in range(1, recipe['steps'] + 1):
        for group in optimizer.param_groups:  # linear warm-up, then linear decay to 0
            group['lr'] = recipe['lr'] * min(
                step / recipe['warmup_steps'], (recipe['steps'] - step + 1) / recipe['steps']
            )
        model.set_gumbel_temperature(max(start * decay**step, floor))
        wave = next(batches)  # (B, L)
        frames = int(feature_frames(model, wave.shape[1]))
        mask = _compute_mask_indices((len(wave), frames), ssl['mask_prob'], ssl['mask_length'], min_masks=2)
        negatives = _sample_negative_indices((len(wave), frames), ssl['num_negatives'], mask)
        out = model(
            wave,
            mask_time_indices=torch.from_numpy(mask),
            sampled_negative_indices=torch.from_numpy(negatives),
        )
        loss = out.loss / mask.sum()  # transformers sums over the masked frames
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        if step % 50 == 0 or step == 1:
            log(
                f'step {step}/{recipe["steps"]}: loss {loss.item():.3f} contrastive '
                f'{out.contrastive_loss.item() / mask.sum():.3f} diversity {out.diversity_loss.item():.3f} '
                f'({(time.monotonic() - started) / step:.2f} s/step)'
            )
    base = Wav2Vec2Model(Wav2Vec2Config(**recipe['shape'], attn_implementation='sdpa'))
    base.load_state_dict(model.wav2vec2.state_dict(), strict=False)  # masked_spec_embed: kept by both
    missing = set(base.state_dict()) - set(model.wav2vec2.state_dict())
    if missing:
        raise RuntimeError(f'pre-trained model lacks {sorted(missing)}')
    return base


def pretrain_speaker(recipe, population, demo, scratch, cache):
    """Speaker classification of the population's voices (method ft: a random Wav2Vec2 of the shape
    and an ECAPA-TDNN of the demo's size, every weight trained, AAM-softmax) with main.py's own loop,
    the demo corpus's augmentation; returns the trained SSL model."""
    import main
    from models.ssl import model_from_config
    from utils.checkpoint import load_checkpoint

    random_folder = os.path.join(scratch, 'random-start')
    seed_everything(recipe['seed'])
    Wav2Vec2Model(Wav2Vec2Config(**recipe['shape'], attn_implementation='sdpa')).save_pretrained(random_folder)
    demo_sizes = {
        key: arguments.DEMO[key] for key in ('ecapa_channels', 'spec_mask_freq', 'batch_size', 'log_interval')
    }
    settings = {
        **demo_sizes,
        **recipe['speaker'],
        'method': 'ft',
        'best_model': 'last',
        'model_name_or_path': random_folder,
        'path_train': population,
        'path_test': demo['path_test'],
        'path_trials': demo['path_trials'],
        'path_musan': demo['path_musan'],
        'path_rir': demo['path_rir'],
        'trials_vox1_o': 'off',
        'trials_vox1_e': 'off',
        'trials_vox1_h': 'off',
        'trials_val': 'off',  # judged below, once: no list is scored in its run
        'path_log': scratch,
        'name': 'teacher-speaker',
        'tensorboard': False,
        'seed': recipe['seed'],
        'num_workers': 0,
        'path_cache': cache,
    }
    main.main([f'{key}={value}' for key, value in settings.items()])
    (best,) = glob.glob(os.path.join(scratch, '*', 'teacher-speaker-*', 'best.pt'))
    state = load_checkpoint(best)
    ssl = model_from_config(state['ssl_config'])
    prefix = 'student.ssl.'
    ssl.load_state_dict({key[len(prefix) :]: value for key, value in state['model'].items() if key.startswith(prefix)})
    return ssl


@torch.no_grad()
def pooled_eer(model, path_test, trials):
    """Validation EER (%) of the frozen model's own features: each whole utterance's last hidden
    state, mean and standard deviation over time, unit length, scored by cosine."""
    model.eval()
    keys = trials.utterances()
    vectors = {}
    for key in keys:
        wave = torch.from_numpy(read_audio(os.path.join(path_test, key))).float()[None]  # (1, L)
        hidden = model(wave).last_hidden_state[0]  # (T, D)
        vector = torch.cat([hidden.mean(0), hidden.std(0)])
        vectors[key] = (vector / vector.norm()).double().numpy()
    scores = np.array([vectors[a] @ vectors[b] for a, b in zip(trials.enroll, trials.test)])
    return round(float(compute_eer(scores, trials.labels)), 4)


def probe_eer(folder, scratch, name, cache):
    """Validation EER (%) of the frozen teacher in `folder` ('tiny': a random one of the shape) with an
    ECAPA-TDNN trained on the demo's training speakers (method frozen, the demo's settings, last epoch)."""
    import main

    path_log = os.path.join(scratch, name)
    main.main(
        [
            'method=frozen',
            f'model_name_or_path={folder}',
            'best_model=last',
            'trials_vox1_o=off',
            'trials_vox1_e=off',
            'trials_vox1_h=off',
            f'path_log={path_log}',
            f'name=probe-{name}',
            'tensorboard=false',
            f'path_cache={cache}',
        ]
    )
    (results,) = glob.glob(os.path.join(path_log, '*', f'probe-{name}-*', 'results.json'))
    with open(results, encoding='utf-8') as file:
        return round(json.load(file)['Val']['eer'], 4)


def commit():
    try:
        out = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(['git', 'status', '--porcelain'], cwd=ROOT, capture_output=True, text=True).stdout
        return out.stdout.strip() + ('+changes' if dirty.strip() else '')
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'


def main_(argv=None):
    options, recipe = parse(argv)
    started = time.monotonic()
    log = lambda text: print(f'demo_teacher: {text}', flush=True)
    seed_everything(recipe['seed'])
    population = prepare_population(os.path.join(options.cache, 'demo'), **recipe['population'])
    demo = prepare_demo(os.path.join(options.cache, 'demo'))
    manifest = scan_voxceleb(population, 'population', os.path.join(options.cache))
    log(f'population {population}: {len(manifest.paths)} utterances of {len(manifest.speakers)} speakers')
    minutes = {'data': round((time.monotonic() - started) / 60, 2)}
    scratch = tempfile.mkdtemp(prefix='demo-teacher-')
    try:
        started = time.monotonic()
        if recipe['objective'] == 'ssl':
            model = pretrain_ssl(recipe, manifest, log)
        else:
            model = pretrain_speaker(recipe, population, demo, scratch, options.cache)
        minutes['training'] = round((time.monotonic() - started) / 60, 2)
        os.makedirs(options.out, exist_ok=True)
        model.save_pretrained(options.out)

        started = time.monotonic()
        trials = read_trials(os.path.join(demo['path_trials'], VAL_LIST))
        seed_everything(recipe['seed'])
        random = Wav2Vec2Model(Wav2Vec2Config(**recipe['shape'], attn_implementation='sdpa'))
        validation = {
            'list': f'{VAL_LIST} of the demo corpus ({len(trials.labels)} trials)',
            'pooled_eer': pooled_eer(model, demo['path_test'], trials),
            'random_pooled_eer': pooled_eer(random, demo['path_test'], trials),
        }
        if not options.no_probe:
            random_folder = os.path.join(scratch, 'random-teacher')
            random.save_pretrained(random_folder)
            validation['probe_eer'] = probe_eer(options.out, scratch, 'trained', options.cache)
            validation['random_probe_eer'] = probe_eer(random_folder, scratch, 'random', options.cache)
        minutes['validation'] = round((time.monotonic() - started) / 60, 2)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    record = {
        'recipe': recipe,
        'recipe_hash': recipe_hash(recipe),
        'population': {
            **recipe['population'],
            'utterances': len(manifest.paths),
            'hours': round(float(np.sum(manifest.lengths)) / SAMPLE_RATE / 3600, 2),
        },
        'commit': commit(),
        'validation': validation,
        'minutes': minutes,
        'machine': describe(),
    }
    with open(os.path.join(options.out, RECORD), 'w', encoding='utf-8') as file:
        json.dump(record, file, indent=2)
    log(f'{options.out}: {json.dumps(validation)}; {json.dumps(minutes)}')
    if not math.isfinite(validation['pooled_eer']):
        raise SystemExit('demo_teacher: the validation EER is not finite')


if __name__ == '__main__':
    main_()
