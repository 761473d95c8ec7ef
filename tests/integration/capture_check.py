#!/usr/bin/env python3
"""Helpers for the capture_*.sh integration tests.

  capture_check.py changes BEFORE AFTER CHANGES [BEFORE AFTER CHANGES]...
      BEFORE and AFTER are table files (the simulator's /_sim/dump at two moments; BEFORE may be
      missing or empty for a first point). CHANGES is `dvsnap changes` of the later point. Exit 0
      when CHANGES lists exactly the records created, updated and deleted between the two, with
      the exact record lines, sorted by key, framed like a table file.
  capture_check.py throttle REQUESTS_JSON
      /_sim/requests output. Exit 0 when no 429 answer is followed by another 429 for the same
      token (with one request in flight at a time, a client that waits the Retry-After it was
      given always gets through next; one that comes back early is throttled again). Prints the
      number of 429s.
"""
import json
import sys


def table_lines(path):
    try:
        data = open(path, 'rb').read()
    except FileNotFoundError:
        return {}
    if data in (b'', b'[\n]\n'):
        return {}
    assert data.startswith(b'[\n') and data.endswith(b'\n]\n'), path + ': not a table file'
    out = {}
    for line in data[2:-3].split(b',\n'):
        obj = json.loads(line)
        key = next(iter(obj.values()))  # the primary key is the first member
        out[key] = line
    return out


def changes(before_path, after_path, changes_path):
    before, after = table_lines(before_path), table_lines(after_path)
    expect = {}
    for k, line in after.items():
        if k not in before:
            expect[k] = ('create', line)
        elif before[k] != line:
            expect[k] = ('update', line)
    for k in before:
        if k not in after:
            expect[k] = ('delete', None)
    data = open(changes_path, 'rb').read()
    want = b'[\n' + b',\n'.join(
        (b'{"op":"%s","id":%s,"record":%s}' % (op.encode(), json.dumps(k).encode(), line))
        if op != 'delete' else (b'{"op":"delete","id":%s}' % json.dumps(k).encode())
        for k, (op, line) in sorted(expect.items(), key=lambda kv: kv[0].encode())
    ) + b'\n]\n' if expect else b'[\n]\n'
    counts = {op: sum(1 for o, _ in expect.values() if o == op) for op in ('create', 'update', 'delete')}
    if data != want:
        got = len(data.split(b',\n')) if data != b'[\n]\n' else 0
        print('%s: changes differ: expected %s (%d bytes), got %d bytes, %d lines' %
              (changes_path, counts, len(want), len(data), got))
        for a, b in zip(want.split(b'\n'), data.split(b'\n')):
            if a != b:
                print('  first difference:\n    want %s\n    got  %s' % (a[:200], b[:200]))
                break
        return 1
    print('changes ok: %s' % counts)
    return 0


def throttle(path):
    reqs = json.load(open(path))['requests']
    last = {}
    n429 = bad = 0
    for r in sorted(reqs, key=lambda r: r['seq']):
        tok = r.get('token') or ''
        if r['status'] == 429:
            n429 += 1
            if last.get(tok) == 429:
                bad += 1
                print('429 followed by another 429 for the same token at seq %d (%s)' % (r['seq'], r['path']))
        last[tok] = r['status']
    print('429 answers: %d, early retries: %d' % (n429, bad))
    return 1 if bad else 0


if __name__ == '__main__':
    if sys.argv[1] == 'changes':  # BEFORE AFTER CHANGES, repeated
        args = sys.argv[2:]
        sys.exit(max(changes(*args[i:i + 3]) for i in range(0, len(args), 3)))
    if sys.argv[1] == 'throttle':
        sys.exit(throttle(sys.argv[2]))
    sys.exit(2)
