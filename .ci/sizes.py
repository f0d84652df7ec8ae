"""Fails on a Rust file over 500 lines or a function over 70 lines, in src/, fuzz/src and
tests/ (the project's size rules: small files and functions read in one sitting).

A function is measured from its `fn` line to the closing brace at the same indentation,
so the count includes its doc-less body and signature, as a reader sees it."""
import os, re, sys
bad = 0
os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
for base in ("src", "fuzz/src", "tests"):
    for dp, _, fs in os.walk(base):
        for f in fs:
            if not f.endswith(".rs"):
                continue
            p = os.path.join(dp, f)
            lines = open(p).read().split("\n")
            if len(lines) > 500:
                print(f"{p}: {len(lines)} lines"); bad += 1
            i = 0
            while i < len(lines):
                m = re.match(r"^(\s*)(pub(\([^)]*\))?\s+)?(async\s+)?(const\s+)?(unsafe\s+)?fn\s+(\w+)", lines[i])
                if m and not lines[i].rstrip().endswith(";"):
                    ind = m.group(1)
                    j = i
                    while j < len(lines) and not (lines[j].startswith(ind + "}") and len(lines[j].rstrip()) == len(ind) + 1):
                        j += 1
                    n = j - i + 1
                    if n > 70:
                        print(f"{p}:{i+1}: fn {m.group(7)} {n} lines"); bad += 1
                i += 1
if bad:
    print(f"sizes: {bad} over the limits (files 500 lines, functions 70)", file=sys.stderr)
sys.exit(1 if bad else 0)
