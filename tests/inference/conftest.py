"""Every mode of a trained model runs from its checkpoint alone: reading a teacher fails the test
(test_model.py lets it for the checkpoints written before they carried the student's config)."""

import pytest

import inference.model


@pytest.fixture(autouse=True)
def teacher_forbidden(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError('the teacher was loaded')

    monkeypatch.setattr(inference.model, 'load_teacher', refuse)
