#!/usr/bin/env python3
"""Summarise a run of the HTTP WG cache-tests suite (https://cache-tests.fyi).

Usage:
    cache_tests_summary.py RESULTS.json --suite SUITE_DIR [--compare] [--verbose]
    cache_tests_summary.py RESULTS.json --tests-json DEFS.json

RESULTS.json is what the suite's CLI prints (`npm run --silent cli --base=...`):
an object mapping test id -> `true` (pass) or `[error_name, message]` (fail).

The test definitions live in the suite's `tests/*.mjs` (ES modules), so unless
--tests-json is given this script asks `node` to import `SUITE_DIR/tests/index.mjs`
and dump them as JSON (stdlib only on the Python side).

Classification is a port of `determineTestResult()` in the suite's
`test-engine/lib/results.mjs` (the code that draws the symbols on
cache-tests.fyi), with dependencies honoured as the web page does:

  * test id not in results                       -> untested ('-'; e.g. browser_only tests)
  * any `depends_on` test not pass/yes            -> dependency_fail (grey circle; NOT counted)
  * result[0] == 'Setup' and result[1] == 'retry' -> retry
  * result[0] == 'Setup'                          -> setup_fail (blue diamond)
  * result[0] == 'AbortError'                     -> harness_fail (request timed out, 10 s)
  * kind 'required' or no kind:  true -> pass, else -> FAIL  (red, "conformance test failed")
  * kind 'optimal':              true -> pass, else -> optional_fail (yellow warning)
  * kind 'check':                true -> yes,  else -> no (informational only)

"Required failures" = results classified FAIL by that rule. Note that a test whose
dependency failed is shown grey, not red, so it is not counted even if it failed;
and setup/harness failures are not counted either. Any other error name
(e.g. 'TypeError' from fetch when the connection is reset) on a required test is
counted as FAIL, exactly like the upstream code does.
"""

import argparse
import json
import os
import subprocess
import sys

DUMP_JS = r"""
import { pathToFileURL } from 'url'
const mod = await import(pathToFileURL(process.argv[1]).href)
const suites = mod.default.map(s => ({
  id: s.id, name: s.name,
  tests: s.tests.map(t => ({
    id: t.id, name: t.name, kind: t.kind, depends_on: t.depends_on,
    browser_only: t.browser_only, cdn_only: t.cdn_only, browser_skip: t.browser_skip
  }))
}))
console.log(JSON.stringify(suites))
"""

PASS_TYPES = ("pass", "yes")


def load_defs(args):
    if args.tests_json:
        with open(args.tests_json) as f:
            return json.load(f)
    index = os.path.join(args.suite, "tests", "index.mjs")
    out = subprocess.run(
        ["node", "--no-warnings", "--input-type=module", "-e", DUMP_JS, "--", index],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


def classify(lookup, test_id, results, honor_deps=True, _seen=None):
    test = lookup[test_id]
    result = results.get(test_id)
    if result is None:
        return "untested"
    if honor_deps and test.get("depends_on"):
        _seen = (_seen or set()) | {test_id}
        for dep in test["depends_on"]:
            if dep in _seen:
                continue
            if classify(lookup, dep, results, True, _seen) not in PASS_TYPES:
                return "dependency_fail"
    if isinstance(result, list) and result and result[0] == "Setup":
        return "retry" if len(result) > 1 and result[1] == "retry" else "setup_fail"
    if isinstance(result, list) and result and result[0] == "AbortError":
        return "harness_fail"
    kind = test.get("kind") or "required"
    if kind == "required":
        return "pass" if result is True else "fail"
    if kind == "optimal":
        return "pass" if result is True else "optional_fail"
    if kind == "check":
        return "yes" if result is True else "no"
    raise ValueError("unrecognised test kind %r for %s" % (kind, test_id))


def summarise(defs, results):
    lookup = {}
    suite_of = {}
    for suite in defs:
        for t in suite["tests"]:
            lookup[t["id"]] = t
            suite_of[t["id"]] = suite
    unknown = sorted(set(results) - set(lookup))
    counts = {}
    by_id = {}
    for tid in lookup:
        c = classify(lookup, tid, results)
        by_id[tid] = c
        counts[c] = counts.get(c, 0) + 1
    return lookup, suite_of, by_id, counts, unknown


def msg_of(result):
    if isinstance(result, list):
        return ": ".join(str(x) for x in result)
    return str(result)


def required_fail_count(defs, results):
    _, _, _, counts, _ = summarise(defs, results)
    return counts.get("fail", 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="?", default="/tmp/cache-tests-results.json")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--suite", help="cache-tests checkout (has tests/index.mjs)")
    g.add_argument("--tests-json", help="test definitions already dumped to JSON")
    ap.add_argument("--compare", action="store_true",
                    help="also count required failures in SUITE/results/*.json (published runs)")
    ap.add_argument("--verbose", "-v", action="store_true",
                    help="also list optional failures, check 'no's and dependency failures")
    args = ap.parse_args()

    defs = load_defs(args)
    with open(args.results) as f:
        results = json.load(f)
    lookup, suite_of, by_id, counts, unknown = summarise(defs, results)

    ran = len(results)
    passed = sum(1 for v in results.values() if v is True)
    print("cache-tests summary for %s" % args.results)
    print("  defined tests:        %d" % len(lookup))
    print("  tests run:            %d  (not run: %d, e.g. browser_only)" % (ran, counts.get("untested", 0)))
    print("  raw passed:           %d" % passed)
    print("  raw failed:           %d" % (ran - passed))
    print("  classified (as cache-tests.fyi draws them):")
    for k in ("pass", "fail", "optional_fail", "yes", "no", "dependency_fail",
              "setup_fail", "harness_fail", "retry", "untested"):
        print("    %-16s %d" % (k, counts.get(k, 0)))
    print("  REQUIRED FAILURES:    %d" % counts.get("fail", 0))
    if unknown:
        print("  results for unknown test ids (suite/version mismatch?): %s" % ", ".join(unknown))

    def section(title, kinds):
        rows = [(suite_of[t]["id"], t) for t in lookup if by_id[t] in kinds]
        if not rows:
            return
        print()
        print("== %s (%d)" % (title, len(rows)))
        last = None
        for sid, tid in rows:
            if sid != last:
                n = sum(1 for s, _ in rows if s == sid)
                print("-- %s: %s (%d)" % (sid, suite_of[tid]["name"], n))
                last = sid
            extra = "" if by_id[tid] in ("fail",) else " [%s]" % by_id[tid]
            print("   %s%s - %s" % (tid, extra, lookup[tid].get("name", "")))
            print("       %s" % msg_of(results.get(tid)))

    section("Failed REQUIRED tests", ("fail",))
    section("Harness problems: setup failures / timeouts / retries",
            ("setup_fail", "harness_fail", "retry"))
    if args.verbose:
        section("Optional (kind: optimal) failures", ("optional_fail",))
        section("Dependency failures (not counted)", ("dependency_fail",))
        section("Checks answered 'no' (informational)", ("no",))

    if args.compare and args.suite:
        rdir = os.path.join(args.suite, "results")
        print()
        print("== Required failures in published results (%s), same rule" % rdir)
        for name in sorted(os.listdir(rdir)):
            if not name.endswith(".json"):
                continue
            with open(os.path.join(rdir, name)) as f:
                pub = json.load(f)
            print("   %-20s %d" % (name[:-5], required_fail_count(defs, pub)))
        print("   %-20s %d" % ("THIS RUN", counts.get("fail", 0)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
