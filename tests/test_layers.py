"""Imports flow one way: main -> trainer / inference -> evaluation -> models, data -> utils; log is
handed in, never imported by the trainer; inference never imports the trainer. Every import of every
file of these packages (those inside functions too) is read with ast and checked against ALLOWED."""

import ast
import os

from tests.conftest import ROOT

# package -> the project's top-level packages and modules its files may import (itself included);
# main, arguments, recipes, benchmarks and tests may import anything
ALLOWED = {
    'utils': {'utils'},
    'data': {'data', 'utils'},
    'models': {'models', 'utils'},
    'evaluation': {'evaluation', 'models', 'data', 'utils'},
    'trainer': {'trainer', 'evaluation', 'models', 'data', 'utils'},
    'inference': {'inference', 'evaluation', 'models', 'data', 'utils'},
    'log': {'log', 'utils'},
}


def project_names(root):
    """The project's top-level modules and packages: root's *.py files and folders holding any."""
    names = set()
    for entry in os.scandir(root):
        if entry.name.startswith('.'):
            continue
        if entry.is_file() and entry.name.endswith('.py'):
            names.add(entry.name[:-3])
        elif entry.is_dir() and any(name.endswith('.py') for name in os.listdir(entry.path)):
            names.add(entry.name)
    return names


def imported_modules(path, root):
    """(line, module) of every import in the file at path, those inside functions too; a relative
    import is resolved from the file's folder under root."""
    with open(path, encoding='utf-8') as file:
        tree = ast.parse(file.read(), filename=path)
    folder = os.path.relpath(os.path.dirname(path), root).split(os.sep)  # e.g. ['inference']
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = folder[: max(len(folder) - node.level + 1, 0)] if node.level else []
            yield node.lineno, '.'.join(base + ([node.module] if node.module else []))


def python_files(folder):
    for here, dirs, files in os.walk(folder):
        dirs[:] = sorted(name for name in dirs if not name.startswith('.') and name != '__pycache__')
        yield from (os.path.join(here, name) for name in sorted(files) if name.endswith('.py'))


def violations(root, allowed=None):
    """'<file>:<line>: <package> imports <module>' for every import of a project module that
    `allowed` (ALLOWED) does not let the file's package make; and the number of files read."""
    allowed = ALLOWED if allowed is None else allowed
    names = project_names(root)
    found, files = [], 0
    for package, may_import in allowed.items():
        for path in python_files(os.path.join(root, package)):
            files += 1
            for line, module in imported_modules(path, root):
                top = module.split('.')[0]
                if top in names and top not in may_import:
                    found.append(f'{os.path.relpath(path, root)}:{line}: {package} imports {module}')
    return found, files


def test_every_package_imports_only_the_layers_below_it():
    found, files = violations(ROOT)
    assert files >= 30  # the packages were found and read
    assert not found, 'imports against the layers (ALLOWED in tests/test_layers.py):\n' + '\n'.join(found)


def test_a_forbidden_import_is_named_with_its_file_and_line(tmp_path):
    for package, text in {
        'utils': 'import os\n\nimport numpy as np\n',
        'models': 'import torch\n\nfrom utils import distributed\n\n\ndef build():\n'
        '    from trainer.methods import METHODS\n',  # line 7: an import inside a function
        'trainer': 'from evaluation.results import final_evaluation\nimport log.controller\n',
        'inference': 'from . import model\nfrom .model import load_model\n',
        'evaluation': '',
        'log': '',
        'data': '',
    }.items():
        (tmp_path / package).mkdir()
        (tmp_path / package / '__init__.py').write_text('')
        (tmp_path / package / 'code.py').write_text(text)
    (tmp_path / 'main.py').write_text('import trainer\nimport log\n')
    found, files = violations(str(tmp_path))
    assert files == 14
    assert found == [
        f'{os.path.join("models", "code.py")}:7: models imports trainer.methods',
        f'{os.path.join("trainer", "code.py")}:2: trainer imports log.controller',
    ]


def test_a_relative_import_is_checked_as_the_module_it_names(tmp_path):
    (tmp_path / 'trainer').mkdir()
    (tmp_path / 'trainer' / 'loop.py').write_text('')
    (tmp_path / 'inference' / 'sub').mkdir(parents=True)
    (tmp_path / 'inference' / 'sub' / 'deep.py').write_text('from ...trainer import loop\nfrom .. import model\n')
    found, _ = violations(str(tmp_path), {'inference': {'inference'}})
    assert found == [f'{os.path.join("inference", "sub", "deep.py")}:1: inference imports trainer']
