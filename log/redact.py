"""Keeps tokens, API keys and passwords out of everything a run writes."""
import re

REDACTED = 'REDACTED'
SECRET_WORDS = ('token', 'api_key', 'apikey', 'secret', 'password')

_KEY = r'[\w.\-]*(?:' + '|'.join(SECRET_WORDS) + r')[\w.\-]*'
_STRING = (r'''[rRbBuUfF]{0,2}(?:\'\'\'[\s\S]*?\'\'\'|"""[\s\S]*?"""'''
           r'''|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")''')
_SEPARATOR = (r'[ \t]*=(?!=)[ \t]*'                             # api_key = "...", f(token="...")
              r'|[ \t]*:[ \t]*'                                 # {'neptune_api_token': '...'}
              r'|[ \t]*:[ \t]*[\w.\[\], |]+?[ \t]*=(?!=)[ \t]*')  # password: str = '...'
_SECRET_LITERAL = re.compile(
    rf'''(?P<key>(?P<quote>['"]?){_KEY}(?P=quote)\]?(?:{_SEPARATOR}))(?P<literal>{_STRING})''',
    re.IGNORECASE)


def is_secret_key(key):
    key = str(key).lower().replace('-', '_')
    return any(word in key for word in SECRET_WORDS)


def redact_parameters(params):
    """A copy of params (nested dicts too) where the value of every secret-looking key is REDACTED."""
    return {key: REDACTED if is_secret_key(key) else
            redact_parameters(value) if isinstance(value, dict) else value
            for key, value in params.items()}


def redact_source(text):
    """Source text where every string literal assigned or mapped to a secret-looking key is 'REDACTED'."""
    return _SECRET_LITERAL.sub(lambda match: f"{match['key']}'{REDACTED}'", text)
