"""A logging backend that keeps every metric in memory, for tests that read what a loop logged."""

from log.backend import LogBackend


class MetricRecorder(LogBackend):
    name = 'recorder'

    def __init__(self):
        self.records = []

    def log_metric(self, name, value, step, at=None):
        self.records.append({'name': name, 'value': value, 'step': step, 'time': at})
