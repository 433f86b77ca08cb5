"""A copy of the project's source in the run folder, so a run can be traced to the code that made it."""

import os

from utils.redact import redact_source

SOURCE_NAMES = ('requirements.txt', 'README.md')


def is_skipped_dir(path, name, skip_paths):
    """Hidden folders (.git, .venv, caches), __pycache__, any virtualenv, the given folders, and
    folders holding no Python file themselves (data, earlier runs), so no large tree is walked."""
    return (
        name.startswith('.')
        or name == '__pycache__'
        or os.path.isfile(os.path.join(path, 'pyvenv.cfg'))
        or os.path.realpath(path) in skip_paths
        or not any(entry.endswith('.py') for entry in os.listdir(path))
    )


def copy_source_files(root, destination, skip=(), secrets=()):
    """Copies *.py, requirements.txt and README.md under root into destination, keeping relative
    paths, with secrets redacted (secret-looking keys' literals, and the given secret values wherever
    they stand). skip: folders left out (the log folder). Returns the files copied."""
    skip_paths = {os.path.realpath(path) for path in skip}
    copied = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(name for name in dirs if not is_skipped_dir(os.path.join(folder, name), name, skip_paths))
        for name in sorted(files):
            if not (name.endswith('.py') or name in SOURCE_NAMES):
                continue
            relative = os.path.relpath(os.path.join(folder, name), root)
            with open(os.path.join(root, relative), encoding='utf-8', errors='replace') as file:
                text = redact_source(file.read(), secrets)
            target = os.path.join(destination, relative)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, 'w', encoding='utf-8') as file:
                file.write(text)
            copied.append(relative)
    return copied
