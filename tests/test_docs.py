"""The README and the pages of docs/: every relative link points at a file that exists and every #anchor
at a heading of that file, every page starts with its title and a link back, and the README links every
page."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, 'docs')
README = os.path.join(ROOT, 'README.md')
BACK_LINK = '[Back to the README](../README.md)'

FENCE = re.compile(r'^\s*(```|~~~)')
INLINE_CODE = re.compile(r'`[^`]*`')
LINK = re.compile(r'!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
HEADING = re.compile(r'^#{1,6}\s+(.*?)\s*#*\s*$')


def prose_lines(text):
    """The lines outside fenced code blocks, with inline code removed (a link shown as code is no link)."""
    inside = False
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            yield INLINE_CODE.sub('', line)


def slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


def anchors(path):
    """Every heading's anchor in a markdown file, a repeated heading numbered as GitHub does (-1, -2)."""
    with open(path, encoding='utf-8') as file:
        text = file.read()
    seen = {}
    found = set()
    for line in prose_lines(text):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(1).replace('`', ''))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f'{base}-{count}')
    return found


def broken_links(path):
    """'target: why' for every link of a markdown file whose file or #anchor does not exist; links to the
    web are not followed."""
    with open(path, encoding='utf-8') as file:
        text = file.read()
    broken = []
    for line in prose_lines(text):
        for target in LINK.findall(line):
            if re.match(r'^[a-z][a-z0-9+.-]*:', target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition('#')
            linked = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
            if not os.path.exists(linked):
                broken.append(f'{target}: no file {os.path.relpath(linked, ROOT)}')
            elif anchor and not linked.endswith('.md'):
                broken.append(f'{target}: an anchor into a file that is not markdown')
            elif anchor and anchor not in anchors(linked):
                broken.append(f'{target}: no heading #{anchor} in {os.path.relpath(linked, ROOT)}')
    return broken


def docs_pages():
    return sorted(os.path.join(DOCS, name) for name in os.listdir(DOCS) if name.endswith('.md'))


def test_every_link_of_the_readme_and_the_docs_resolves():
    broken = {os.path.relpath(path, ROOT): links for path in [README, *docs_pages()] if (links := broken_links(path))}
    assert broken == {}


def test_every_docs_page_has_a_title_a_link_back_and_a_link_from_the_readme():
    with open(README, encoding='utf-8') as file:
        readme = file.read()
    assert docs_pages(), 'docs/ holds no page'
    for path in docs_pages():
        name = os.path.basename(path)
        with open(path, encoding='utf-8') as file:
            lines = file.read().splitlines()
        assert lines[0].startswith('# '), f'{name}: the first line is not a title'
        assert BACK_LINK in lines[1:4], f'{name}: no link back to the README under its title'
        assert f'(docs/{name}' in readme, f'{name}: the README does not link it'


def test_a_missing_file_or_heading_is_reported(tmp_path):
    (tmp_path / 'other.md').write_text('# Other page\n\n## Is it healthy? Throughput, memory\n\n## Notes\n\n## Notes\n')
    page = tmp_path / 'page.md'
    page.write_text(
        '# Page\n\n'
        '[fine](other.md) [fine](other.md#is-it-healthy-throughput-memory) [fine](other.md#notes-1) '
        '[fine](#page) [web](https://example.org/missing) `[code](missing.md)`\n\n'
        '[gone](missing.md) and [no heading](other.md#no-such-heading) and [here](#nowhere)\n\n'
        '```\n[in a code block](missing-too.md)\n```\n'
    )
    assert broken_links(str(page)) == [
        f'missing.md: no file {os.path.relpath(tmp_path / "missing.md", ROOT)}',
        f'other.md#no-such-heading: no heading #no-such-heading in {os.path.relpath(tmp_path / "other.md", ROOT)}',
        f'#nowhere: no heading #nowhere in {os.path.relpath(page, ROOT)}',
    ]
