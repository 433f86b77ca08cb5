"""The embedded demo corpus: synthetic voices in VoxCeleb layout, made once and cached.

<root>/demo-<hash of every generation parameter>/
    train/idXXXXX/<video>/00001.wav      VoxCeleb2-dev-like training speakers
    test/idXXXXX/<video>/00001.wav       VoxCeleb1-like speakers, none of them in train; beside them
                                         the validation speakers (id3xxxx), in no other list
    trials/veri_test2.txt                Vox1-O style: a subset of the test speakers
    trials/list_test_all2.txt            Vox1-E style: every test speaker
    trials/list_test_hard2.txt           Vox1-H style: same group, similar voices
    trials/demo_val.txt                  the validation list: held-out speakers, where every demo
                                         setting is chosen (and the demo's best epoch)
    musan/{speech,music,noise}/*.wav     MUSAN-like additive noises
    rir/*.wav                            synthetic room impulse responses
    speakers.csv                         every voice's synthesis parameters and split

<root>/population-<hash>/idXXXXX/<video>/00001.wav   the demo teacher's pre-training population
    (prepare_population): hundreds of other voices, sharing none with the corpus above
"""

import csv
import hashlib
import io
import itertools
import json
import os
import shutil
import tempfile

import numpy as np
import soundfile as sf

from data import voices
from data.voices import SAMPLE_RATE

GENERATOR_VERSION = 1  # bump when the synthesis changes, so old caches are not reused
TRAIN_SECONDS = (2.5, 5.0)
TEST_SECONDS = (3.0, 8.0)
VIDEO_ID_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
SIMILAR_NEIGHBOURS = 3  # Vox1-H non-targets: each speaker's nearest voices in its group
VAL_LIST = 'demo_val.txt'
# speaker id ranges of each split: ids never collide, and each split draws its voices from its own stream
ID_BASE = {'train': 0, 'test': 10000, 'musan': 20000, 'val': 30000, 'population': 40000}


def prepare_demo(
    root: str,
    seed: int = 1,
    num_train_speakers: int = 90,
    num_test_speakers: int = 48,
    num_vox1_o_speakers: int = 24,
    num_val_speakers: int = 16,
    videos_per_speaker: int = 4,
    utterances_per_video: int = 3,
    num_musan_per_kind: int = 10,
    num_rirs: int = 20,
) -> dict[str, str]:
    """Make the demo corpus under root once (reused when already complete); return its paths."""
    params = {key: value for key, value in locals().items() if key != 'root'}
    params['version'] = GENERATOR_VERSION
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    folder = os.path.join(root, f'demo-{digest}')
    if not os.path.isdir(folder):
        build_atomically(folder, params)
    return {
        'path_train': os.path.join(folder, 'train'),
        'path_test': os.path.join(folder, 'test'),
        'path_trials': os.path.join(folder, 'trials'),
        'path_musan': os.path.join(folder, 'musan'),
        'path_rir': os.path.join(folder, 'rir'),
    }


def build_atomically(folder, params, write=None):
    """Writes into a private temporary sibling and renames it into place, so a killed run never
    leaves a corpus that looks complete, and concurrent runs (one per process) do not clash."""
    root = os.path.dirname(folder)
    try:
        os.makedirs(root, exist_ok=True)
        scratch = tempfile.mkdtemp(prefix=os.path.basename(folder) + '.tmp-', dir=root)
    except OSError as error:
        raise OSError(
            f'cannot create the demo corpus under {root!r}: {error.strerror}; set path_cache to a writable folder'
        ) from None
    try:
        (write or write_corpus)(scratch, params)
        os.rename(scratch, folder)
    except OSError as error:
        if not os.path.isdir(folder):  # else another process finished the same corpus first
            raise OSError(
                f'cannot write the demo corpus under {root!r}: {error}; set path_cache to a writable folder'
            ) from error
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def write_corpus(folder, params):
    """Every file of the corpus, deterministic given params['seed']."""
    seed = params['seed']
    train = plan_speakers(np.random.default_rng([seed, 0]), params['num_train_speakers'], 'train')
    test = plan_speakers(np.random.default_rng([seed, 1]), params['num_test_speakers'], 'test')
    babblers = plan_speakers(np.random.default_rng([seed, 2]), params['num_musan_per_kind'], 'musan')
    val = plan_speakers(np.random.default_rng([seed, 6]), params['num_val_speakers'], 'val')
    write_speaker_audio(os.path.join(folder, 'train'), train, TRAIN_SECONDS, params, [seed, 10])
    write_speaker_audio(os.path.join(folder, 'test'), test, TEST_SECONDS, params, [seed, 11])
    write_speaker_audio(os.path.join(folder, 'test'), val, TEST_SECONDS, params, [seed, 12])
    write_speakers_csv(os.path.join(folder, 'speakers.csv'), train + test + val + babblers)
    write_trial_lists(os.path.join(folder, 'trials'), test, params, np.random.default_rng([seed, 3]))
    write_list(
        os.path.join(folder, 'trials', VAL_LIST),
        trial_pairs(val, any_other_speaker(val), np.random.default_rng([seed, 7])),
    )
    write_musan(os.path.join(folder, 'musan'), babblers, np.random.default_rng([seed, 4]))
    write_rirs(os.path.join(folder, 'rir'), params['num_rirs'], np.random.default_rng([seed, 5]))


def prepare_population(
    root: str, seed: int = 1, num_speakers: int = 1000, videos_per_speaker: int = 2, utterances_per_video: int = 4
) -> str:
    """The demo teacher's pre-training population under root, made once: num_speakers voices of the
    same generator as the corpus but drawn from their own streams (ids id4xxxx: none of them is a
    training, test, validation or MUSAN voice), each video with its own recording session; the
    folder, in VoxCeleb layout."""
    params = {key: value for key, value in locals().items() if key != 'root'}
    params['version'] = GENERATOR_VERSION
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    folder = os.path.join(root, f'population-{digest}')
    if not os.path.isdir(folder):
        build_atomically(folder, params, write_population)
    return folder


def write_population(folder, params):
    seed = params['seed']
    speakers = plan_speakers(np.random.default_rng([seed, 8]), params['num_speakers'], 'population')
    write_speaker_audio(folder, speakers, TRAIN_SECONDS, params, [seed, 13])
    write_speakers_csv(os.path.join(folder, 'speakers.csv'), speakers)


def plan_speakers(rng, count, split):
    """Voices with distinct VoxCeleb-like ids (id0xxxx train, id1xxxx test, id2xxxx MUSAN
    speech, id3xxxx validation, id4xxxx the teacher's population), half of them per group."""
    numbers = sorted(rng.choice(10000, size=count, replace=False) + ID_BASE[split])
    groups = rng.permutation(['m', 'f'] * (count // 2) + ['m'] * (count % 2))
    return [
        {'id': f'id{number:05d}', 'split': split, **voices.sample_speaker(rng, str(group))}
        for number, group in zip(numbers, groups)
    ]


def video_id(rng):
    return ''.join(rng.choice(list(VIDEO_ID_CHARS), size=11))


def write_speaker_audio(folder, speakers, seconds, params, key):
    """idXXXXX/<video>/0000k.wav for every speaker, listed in speaker['videos']. Each video is
    one session (channel, noise, small voice shift); each utterance has its own random
    generator (key + indices), so it is reproducible alone."""
    for s, speaker in enumerate(speakers):
        rng = np.random.default_rng([*key, s])
        speaker['videos'] = {}
        for v in range(params['videos_per_speaker']):
            video, session = video_id(rng), voices.sample_session(rng)
            os.makedirs(os.path.join(folder, speaker['id'], video))
            speaker['videos'][video] = []
            for u in range(params['utterances_per_video']):
                utterance_rng = np.random.default_rng([*key, s, v, u])
                duration = utterance_rng.uniform(*seconds)
                speech = voices.speak(speaker, session, duration, utterance_rng)
                audio = voices.record(speech, session, utterance_rng)
                name = f'{speaker["id"]}/{video}/{u + 1:05d}.wav'
                write_pcm16(os.path.join(folder, name), audio)
                speaker['videos'][video].append(name)


def write_speakers_csv(path, speakers):
    """One line per voice, like vox1_meta.csv, with the parameters that made it."""
    columns = [
        'id',
        'split',
        'group',
        'f0_hz',
        'f0_range_st',
        'formant_scale',
        'formant_offsets',
        'bandwidth_scale',
        'tilt_db_oct',
        'open_quotient',
        'jitter',
        'shimmer',
        'breathiness',
        'speaking_rate',
    ]
    with open(path, 'w', newline='') as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        for speaker in speakers:
            writer.writerow([csv_text(speaker[column]) for column in columns])


def csv_text(value):
    """4 decimals for numbers, space-separated for lists, as is for text."""
    if isinstance(value, list):
        return ' '.join(csv_text(x) for x in value)
    return f'{value:.4f}' if isinstance(value, float) else value


def write_trial_lists(folder, speakers, params, rng):
    """Vox1-O, E and H style lists: every cross-video target pair of their speakers, and as many
    non-target pairs drawn from the allowed speaker pairs."""
    os.makedirs(folder)
    by_group = {group: [s for s in speakers if s['group'] == group] for group in ('m', 'f')}
    half = params['num_vox1_o_speakers'] // 2
    o_speakers = by_group['m'][: params['num_vox1_o_speakers'] - half] + by_group['f'][:half]
    lists = {
        'veri_test2.txt': (o_speakers, any_other_speaker(o_speakers)),
        'list_test_all2.txt': (speakers, any_other_speaker(speakers)),
        'list_test_hard2.txt': (speakers, similar_voices(speakers)),
    }
    for name, (chosen, speaker_pairs) in lists.items():
        write_list(os.path.join(folder, name), trial_pairs(chosen, speaker_pairs, rng))


def write_list(path, trials):
    with open(path, 'w') as file:
        file.writelines(f'{label} {enroll} {test}\n' for label, enroll, test in trials)


def any_other_speaker(speakers):
    return [(a['id'], b['id']) for a, b in itertools.combinations(speakers, 2)]


def similar_voices(speakers):
    """Pairs of same-group speakers whose f0 and vocal-tract length are close: each speaker
    with its nearest neighbours in (log f0, log formant scale), both scaled by the group spread."""
    pairs = set()
    for group in ('m', 'f'):
        members = [s for s in speakers if s['group'] == group]
        if len(members) < 2:
            continue
        points = np.log([[s['f0_hz'], s['formant_scale']] for s in members])
        points /= points.std(axis=0) + 1e-9
        distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
        np.fill_diagonal(distances, np.inf)
        for i, row in enumerate(distances):
            for j in np.argsort(row)[: min(SIMILAR_NEIGHBOURS, len(members) - 1)]:
                pairs.add(tuple(sorted((members[i]['id'], members[j]['id']))))
    return sorted(pairs)


def trial_pairs(speakers, speaker_pairs, rng):
    """All target pairs from different videos, then an equal number of non-target pairs sampled
    without repetition from the utterances of the allowed speaker pairs; shuffled."""
    utterances = {s['id']: s['videos'] for s in speakers}
    targets = [
        (1, a, b)
        for s in speakers
        for (video_a, names_a), (video_b, names_b) in itertools.combinations(s['videos'].items(), 2)
        for a in names_a
        for b in names_b
    ]
    candidates = [
        (0, a, b)
        for id_a, id_b in speaker_pairs
        for a in itertools.chain(*utterances[id_a].values())
        for b in itertools.chain(*utterances[id_b].values())
    ]
    chosen = rng.choice(len(candidates), size=min(len(targets), len(candidates)), replace=False)
    trials = targets + [candidates[i] for i in sorted(chosen)]
    return [trials[i] for i in rng.permutation(len(trials))]


def write_musan(folder, babblers, rng):
    """speech/ (other voices, near-clean), music/ (notes, chords, drums), noise/ (coloured,
    bursty, tonal): a few seconds each."""
    for kind in ('speech', 'music', 'noise'):
        os.makedirs(os.path.join(folder, kind))
    for i, speaker in enumerate(babblers):
        seconds = rng.uniform(4.0, 8.0)
        session = {**voices.sample_session(rng), 'snr_db': 40.0}
        audio = voices.record(voices.speak(speaker, session, seconds, rng), session, rng)
        write_wav(os.path.join(folder, 'speech', f'speech-{i + 1:04d}.wav'), audio)
        write_wav(os.path.join(folder, 'music', f'music-{i + 1:04d}.wav'), music_clip(rng, seconds))
        noise = [coloured_noise, bursty_noise, tonal_noise][i % 3](rng, seconds)
        write_wav(os.path.join(folder, 'noise', f'noise-{i + 1:04d}.wav'), noise)


def write_rirs(folder, count, rng):
    os.makedirs(folder)
    for i in range(count):
        write_wav(os.path.join(folder, f'rir-{i + 1:04d}.wav'), room_impulse_response(rng), peak=0.9)


def write_wav(path, audio, peak=0.5):
    """Peak-normalised PCM-16 at 16 kHz."""
    write_pcm16(path, audio * peak / (np.abs(audio).max() + 1e-12))


def write_pcm16(path, audio):
    """16 kHz mono PCM-16 wav. Encoded in memory first: closing a file opened by soundfile
    syncs it to disk, which costs more than synthesising it."""
    buffer = io.BytesIO()
    sf.write(buffer, audio, SAMPLE_RATE, format='WAV', subtype='PCM_16')
    with open(path, 'wb') as file:
        file.write(buffer.getvalue())


def note(frequency, seconds, rng):
    """A plucked harmonic tone: a few decaying partials with a random timbre."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    partials = rng.uniform(0.2, 1.0, 8) / np.arange(1, 9)
    tone = sum(a * np.sin(2 * np.pi * (k + 1) * frequency * t) for k, a in enumerate(partials))
    return tone * np.exp(-t * rng.uniform(2.0, 6.0)) * np.minimum(1.0, t * 200)


def drum(rng, hi_hat):
    """A kick (falling sine) or a hi-hat (short noise burst), 0.2 s."""
    t = np.arange(int(0.2 * SAMPLE_RATE)) / SAMPLE_RATE
    if hi_hat:
        return rng.standard_normal(len(t)) * np.exp(-t * 60) * 0.2
    return np.sin(2 * np.pi * np.cumsum(np.linspace(120, 45, len(t))) / SAMPLE_RATE) * np.exp(-t * 15)


def music_clip(rng, seconds):
    """A chord of a random major key every bar, a melody note and a drum on every beat;
    the top melody note (MIDI 86, 587 Hz) keeps all 8 partials below 8 kHz."""
    length = int(seconds * SAMPLE_RATE)
    beat = 60.0 / rng.uniform(70, 150)
    root = rng.integers(45, 58)  # MIDI note of the key
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12, 14, 16, 17])  # major, up to a tenth
    out = np.zeros(length + SAMPLE_RATE * 4)  # room for the last chord's decay
    midi_hz = lambda m: 440.0 * 2.0 ** ((m - 69) / 12.0)
    for k, start in enumerate(np.arange(0.0, seconds, beat)):
        at = int(start * SAMPLE_RATE)
        if k % 4 == 0:
            degree = rng.integers(0, 7)
            for step in (0, 2, 4):
                chord_note = note(midi_hz(root + scale[degree + step]), 4 * beat, rng) * 0.3
                out[at : at + len(chord_note)] += chord_note
        melody = note(midi_hz(root + 12 + rng.choice(scale)), beat, rng) * 0.4
        out[at : at + len(melody)] += melody
        hit = drum(rng, hi_hat=k % 2 == 1)
        out[at : at + len(hit)] += hit
    return out[:length]


def coloured_noise(rng, seconds):
    """White, pink or brown-ish noise with a random spectral slope."""
    return voices.background_noise(int(seconds * SAMPLE_RATE), rng.uniform(-6.0, 0.0), 0.0, rng)


def bursty_noise(rng, seconds):
    """Clatter: noise bursts with sharp onsets and exponential decays over a quiet floor."""
    length = int(seconds * SAMPLE_RATE)
    envelope = np.full(length, 0.02)
    for onset in rng.integers(0, length, size=rng.integers(5, 20)):
        decay = np.exp(-np.arange(length - onset) / SAMPLE_RATE * rng.uniform(10, 60))
        envelope[onset:] += rng.uniform(0.2, 1.0) * decay
    return voices.background_noise(length, rng.uniform(-3.0, 1.0), 0.0, rng) * envelope


def tonal_noise(rng, seconds):
    """Machine-like noise: a hum with harmonics, a slowly sweeping whine and on/off beeps."""
    length = int(seconds * SAMPLE_RATE)
    t = np.arange(length) / SAMPLE_RATE
    hum = voices.background_noise(length, -3.0, rng.choice([50.0, 60.0]), rng)
    whine_hz = rng.uniform(800, 3000) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t))
    whine = np.sin(2 * np.pi * np.cumsum(whine_hz) / SAMPLE_RATE)
    beeping = np.sin(2 * np.pi * rng.uniform(0.5, 2) * t) > 0.6
    beeps = np.sin(2 * np.pi * rng.uniform(500, 2000) * t) * beeping
    return hum + 0.5 * whine + 0.5 * beeps


def room_impulse_response(rng):
    """Direct path, a few early reflections, then a noise tail decaying by 60 dB in RT60
    (0.2-0.9 s), darker as it decays (air and wall absorption)."""
    rt60 = rng.uniform(0.2, 0.9)
    length = int(min(1.2 * rt60, 1.0) * SAMPLE_RATE)
    direct = rng.integers(int(0.002 * SAMPLE_RATE), int(0.01 * SAMPLE_RATE))
    response = np.zeros(length)
    response[direct] = 1.0
    for delay in rng.uniform(0.002, 0.05, size=rng.integers(6, 13)):
        at = direct + int(delay * SAMPLE_RATE)
        response[at] += rng.choice([-1, 1]) * rng.uniform(0.2, 0.7) * np.exp(-6.9 * delay / rt60)
    t = np.arange(length - direct) / SAMPLE_RATE
    tail = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60) * np.minimum(1.0, t / 0.005)
    brightness = np.exp(-t / (0.3 * rt60))
    tail = brightness * tail + (1 - brightness) * voices.smooth(tail, 5)
    response[direct:] += tail * rng.uniform(0.05, 0.3)
    return response
