"""Keeps tokens, API keys and passwords out of everything a run writes: parameters, the source copy,
the console, log.txt and every tracker."""

import os
import re

REDACTED = 'REDACTED'
SECRET_WORDS = ('token', 'api_key', 'apikey', 'secret', 'password')
MIN_SECRET_LENGTH = 8  # a shorter value is no real token, and replacing it would mangle ordinary text

_KEY = r'[\w.\-]*(?:' + '|'.join(SECRET_WORDS) + r')[\w.\-]*'
_STRING = (
    r'''[rRbBuUfF]{0,2}(?:\'\'\'[\s\S]*?\'\'\'|"""[\s\S]*?"""'''
    r"""|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")"""
)
_SEPARATOR = (
    r'[ \t]*=(?!=)[ \t]*'  # api_key = "...", f(token="...")
    r'|[ \t]*:[ \t]*'  # {'neptune_api_token': '...'}
    r'|[ \t]*:[ \t]*Setting\([ \t]*'  # {'wandb_token': Setting('...', 'help')}
    r'|[ \t]*:[ \t]*[\w.\[\], |]+?[ \t]*=(?!=)[ \t]*'
)  # password: str = '...'
_SECRET_LITERAL = re.compile(
    rf"""(?P<key>(?P<quote>['"]?){_KEY}(?P=quote)\]?(?:{_SEPARATOR}))(?P<literal>{_STRING})""", re.IGNORECASE
)


def is_secret_key(key):
    key = str(key).lower().replace('-', '_')
    return any(word in key for word in SECRET_WORDS)


def secret_values(tokens=(), environ=None):
    """The secrets to look for in free text: the given tokens, and the value of every environment
    variable whose name looks secret (WANDB_API_KEY, NEPTUNE_API_TOKEN, HF_TOKEN, ...). Longest
    first, so a secret that holds another is replaced whole."""
    environ = os.environ if environ is None else environ
    found = {token for token in tokens if token} | {value for name, value in environ.items() if is_secret_key(name)}
    return tuple(sorted((value for value in found if len(value) >= MIN_SECRET_LENGTH), key=len, reverse=True))


def redact_text(text, secrets):
    """text with every occurrence of each secret value replaced by REDACTED."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def redact_value(value, secrets):
    """A parameter's value with the secrets in its strings (in lists, tuples and dicts too) redacted."""
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, dict):
        return redact_parameters(value, secrets)
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(item, secrets) for item in value)
    return value


def redact_parameters(params, secrets=()):
    """A copy of params (nested dicts too) where the value of every secret-looking key is REDACTED,
    and any secret value found in another value's text too."""
    return {key: REDACTED if is_secret_key(key) else redact_value(value, secrets) for key, value in params.items()}


def without_secrets(params):
    """params without its secret-looking keys: what a checkpoint keeps of the arguments, so that a
    resumed run takes its tokens from the command line or the environment again."""
    return {key: value for key, value in params.items() if not is_secret_key(key)}


def redact_source(text, secrets=()):
    """Source text where every string literal assigned or mapped to a secret-looking key is 'REDACTED',
    and every secret value is replaced wherever it stands (e.g. `wandb.login(key='...')`)."""
    text = _SECRET_LITERAL.sub(lambda match: f"{match['key']}'{REDACTED}'", text)
    return redact_text(text, secrets)
