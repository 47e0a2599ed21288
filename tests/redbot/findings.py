#!/usr/bin/env python3
"""Read REDbot HAR output (redbot -o har URL) for Arrow and for the origin, print the findings,
and decide (used by scripts/redbot_check.sh).

    findings.py LABEL ARROW_HAR ORIGIN_HAR [LABEL ARROW_HAR ORIGIN_HAR ...]

Policy: a note of level "bad" or "warning" in the Caching, Validation or Partial Content (range)
categories is a problem *of Arrow* unless REDbot gives the same note (same id, same level) for
the origin's own answer to the same URL -- the origin is built to be clean, so anything it
triggers itself is the test fixture's doing, not the cache's. Warnings count: every warning in
these categories (INM_FULL, RANGE_FULL, MISSING_HDRS_304, AGE_LARGE, ...) describes a cache
answering worse than the origin it fronts. Notes in other categories (General, Content
Negotiation, ...) are printed for information and never fail the check.

Exit 0: no problem, 1: problems found, 2: a HAR file is missing/unreadable or REDbot reported
an error instead of a result.
"""
import json
import sys

CHECKED = {"CACHING", "VALIDATION", "RANGE"}
FAILING_LEVELS = {"BAD", "WARN"}
SHOWN_HEADERS = (
    "date", "age", "x-cache", "cache-control", "etag", "last-modified", "content-length",
    "content-encoding", "vary", "accept-ranges", "access-control-allow-origin",
)


def flatten(notes, out, depth=0):
    for n in notes:
        out.append((n["category"], n["level"], n["note_id"], n["summary"], depth))
        flatten(n.get("subnotes") or [], out, depth + 1)
    return out


def load(path):
    """(entry or None, error or None)"""
    try:
        with open(path) as f:
            har = json.load(f)
    except (OSError, ValueError) as e:
        return None, "cannot read %s: %s" % (path, e)
    log = har.get("log", {})
    if log.get("_red_error"):
        return None, "REDbot error: %s" % log["_red_error"]
    entries = log.get("entries") or []
    if not entries:
        return None, "REDbot produced no entry (incomplete response?)"
    return entries[0], None


def main(argv):
    if len(argv) < 3 or len(argv) % 3:
        print(__doc__, file=sys.stderr)
        return 2
    problems, cannot = [], []
    for i in range(0, len(argv), 3):
        label, arrow_har, origin_har = argv[i : i + 3]
        entry, err = load(arrow_har)
        oentry, oerr = load(origin_har)
        print("=== %s" % label)
        if err:
            print("  could not check through Arrow: %s" % err)
            cannot.append("%s: %s" % (label, err))
            continue
        req, resp = entry["request"], entry["response"]
        print("  %s %s -> %s" % (req["method"], req["url"], resp["status"]))
        for h in resp["headers"]:
            if h["name"].lower() in SHOWN_HEADERS:
                print("    %s:%s" % (h["name"], h["value"]))
        origin_notes = set()
        if oerr:
            print("  (origin baseline unavailable: %s)" % oerr)
        else:
            origin_notes = {(c, l, n) for c, l, n, _, _ in flatten(oentry["_red_messages"], [])}
        for cat, level, note_id, summary, depth in flatten(entry["_red_messages"], []):
            counted = (
                cat in CHECKED and level in FAILING_LEVELS and (cat, level, note_id) not in origin_notes
            )
            if counted:
                tag = "PROBLEM"
                problems.append("%s: [%s %s] %s: %s" % (label, cat, level, note_id, summary))
            elif level in FAILING_LEVELS and (cat, level, note_id) in origin_notes:
                tag = "origin "
            else:
                tag = "       "
            print("  %s %s[%s %s] %s: %s" % (tag, "  " * depth, cat, level, note_id, summary))
    print()
    if problems:
        print("REDbot found %d problem(s) in Arrow's answers (caching/validation/range):" % len(problems))
        for p in problems:
            print("  - " + p)
    else:
        print("REDbot: no caching, validation or range problem in Arrow's answers.")
    if cannot:
        print("Could not check: " + "; ".join(cannot), file=sys.stderr)
        return 1 if problems else 2
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
