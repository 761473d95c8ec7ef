#!/usr/bin/env python3
# dvsim test helper: follow @odata.nextLink from URL and write each record's exact bytes (as the
# server sent them) one per line to --out; deleted ids to --deleted. Prints a JSON summary with
# pages, records, deleted, nextlinks seen and the final deltaLink. Bounded by --timeout seconds.
import argparse, json, sys, time, urllib.request, urllib.error

ap = argparse.ArgumentParser()
ap.add_argument('url')
ap.add_argument('--token', required=True)
ap.add_argument('--prefer', default='odata.maxpagesize=5000,odata.include-annotations="*"')
ap.add_argument('--out')
ap.add_argument('--deleted')
ap.add_argument('--timeout', type=float, default=120)
a = ap.parse_args()
dec = json.JSONDecoder()
end = time.time() + a.timeout
link, pages, records, deleted, delta = a.url, 0, 0, 0, None
out = open(a.out, 'w') if a.out else None
dout = open(a.deleted, 'w') if a.deleted else None
while link:
    if time.time() > end:
        sys.exit('timeout')
    req = urllib.request.Request(link, headers={'Authorization': 'Bearer ' + a.token, 'Prefer': a.prefer,
                                                'Accept': 'application/json', 'OData-Version': '4.0'})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            raw = r.read().decode('utf-8')
    except urllib.error.HTTPError as e:
        print(json.dumps({'status': e.code, 'body': e.read().decode('utf-8', 'replace')}))
        sys.exit(3)
    doc = json.loads(raw)
    pages += 1
    # exact spans of the value array's elements
    i = raw.index('"value":[') + len('"value":[')
    for v in doc['value']:
        while raw[i] in ' ,\n':
            i += 1
        obj, j = dec.raw_decode(raw, i)
        span = raw[i:j]
        i = j
        if obj.get('reason') == 'deleted':
            deleted += 1
            if dout: dout.write(obj['id'] + '\n')
        else:
            records += 1
            if out: out.write(span + '\n')
    link = doc.get('@odata.nextLink')
    delta = doc.get('@odata.deltaLink', delta)
print(json.dumps({'pages': pages, 'records': records, 'deleted': deleted, 'deltaLink': delta}))
