#!/usr/bin/env python3
"""How well Smart Turn's answers separate true ends from mid-sentence pauses, from
`tern-turn-eval --smart-turn N --dump-pauses` output, and what rules that end a turn later than
the answer could do.

auc DUMP...: the area under the ROC curve of the answer asked 200 and 400 ms into a silence
(1.0: every true end above every pause; 0.5: no better than chance), over the set, by source, by
turn type, for pauses the 1200 ms timer would cut (1000 ms or longer), and for the odd and the
even paused turns (--continuous draws out the last syllable in the odd ones: compare the same
turns of a spliced and a --continuous set).

replay FIT DUMP...: a rule family the fit's grid does not have, replayed on the dumped answers:
asked at 200 or 400 ms, "complete" (p >= c) ends the turn at C ms (not at the answer),
"incomplete" (p < u) waits 3.6 s, anything else waits U <= 1200 ms. The rules that cut fewer
pauses than the 1200 ms timer at a lower p50 on FIT, best first, and what each does on the other
dumps. A replay, not the detector: the answer comes 240 ms after the question, a release is
counted in the silence it falls in, and its timer figures come within one cut-in and a frame of
`tern-turn-eval`'s.
"""
import collections
import re
import sys

ANSWER_MS = 240


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            a = line.split()
            rows.append({
                "file": a[0], "source": a[1], "condition": a[2], "type": a[3],
                "start": int(a[4]), "len": int(a[5]), "label": a[6], "end": int(a[7]),
                200: None if a[8] == "-" else float(a[8]),
                400: None if a[9] == "-" else float(a[9]),
            })
    return rows


def auc(pos, neg):
    if not pos or not neg:
        return None
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def auc_report(path):
    rows = load(path)
    print(f"## {path}\n")
    print("| group | true ends | pauses | AUC at 200 ms | AUC at 400 ms |\n|---|---|---|---|---|")
    every = lambda r: True  # noqa: E731
    # (group, which true ends, which pauses): a source or turn type against its own true ends,
    # a kind of pause against every true end.
    groups = [("all", every, every)]
    for key in ("source", "type"):
        for v in dict.fromkeys(r[key] for r in rows if r["label"].startswith("pause")):
            same = (lambda k, v: lambda r: r[k] == v)(key, v)
            groups.append((f"{key} {v}", same, same))
    groups.append(("pauses of 1000 ms or more", every, lambda r: r["len"] >= 1000))
    paused_index = re.compile(r"(?:^|-)(\d{3})-paused-")
    # --continuous draws out the last syllable in the odd paused turns: compare the same turns
    # (the same texts) between a spliced and a --continuous set.
    for name, odd in (("odd (drawn out in --continuous sets)", 1), ("even", 0)):
        groups.append((f"pauses of paused turns {name}", every,
                       (lambda odd: lambda r: (m := paused_index.search(r["file"])) is not None
                        and int(m.group(1)) % 2 == odd)(odd)))
    for name, end_of, pause_of in groups:
        cells = []
        for ask in (200, 400):
            ends = [r[ask] for r in rows
                    if r["label"] == "end" and r[ask] is not None and end_of(r)]
            pauses = [r[ask] for r in rows
                      if r["label"].startswith("pause") and r[ask] is not None and pause_of(r)]
            cells.append((len(ends), len(pauses), auc(ends, pauses)))
        if cells[0][1] == 0:
            continue
        fmt = " | ".join("-" if a is None else f"{a:.2f}" for _, _, a in cells)
        print(f"| {name} | {cells[0][0]} | {cells[0][1]} | {fmt} |")
    print()


def replay(rows, rule):
    """(cut pauses, delays of released true ends) of `rule` = (ask, c, C, u, U)."""
    ask, c, complete_ms, u, unsure_ms = rule
    by_clip = collections.OrderedDict()
    for r in rows:
        by_clip.setdefault(r["file"], []).append(r)
    cut, delays = 0, []
    for silences in by_clip.values():
        for r in sorted(silences, key=lambda r: r["start"]):
            p = r[ask]
            if p is None or ask >= unsure_ms:
                wait = unsure_ms
            elif p >= c:
                wait = max(complete_ms, ask + ANSWER_MS)
            else:
                wait = 3600 if p < u else unsure_ms
            if wait <= r["len"]:
                cut += r["label"].startswith("pause")
                if r["label"] == "end":
                    delays.append(r["start"] + wait - r["end"])
                    break
    return cut, delays


def p50(v):
    v = sorted(v)
    return v[len(v) // 2] if v else None


def replay_report(fit_path, others):
    sets = [(p, load(p)) for p in [fit_path] + others]
    timer = (200, 2.0, 0, 0.0, 1200)

    def fig(rows, rule):
        cut, d = replay(rows, rule)
        return f"{p50(d)} ms / {cut}"

    fit_rows = sets[0][1]
    t_cut, t_d = replay(fit_rows, timer)
    found = []
    for ask in (200, 400):
        for c in (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99):
            for complete_ms in range(640, 1201, 40):
                for u in (0.0, 0.05, 0.2, 0.5):
                    for unsure_ms in range(1000, 1201, 40):
                        rule = (ask, c, complete_ms, u, unsure_ms)
                        cut, d = replay(fit_rows, rule)
                        if cut < t_cut and p50(d) < p50(t_d):
                            found.append((cut, p50(d), rule))
    found.sort()
    head = " | ".join(p for p, _ in sets)
    print(f"| rule (ask, complete at, complete ends at ms, incomplete below, unsure ms) | {head} |")
    print("|---|" + "---|" * len(sets))
    print("| the 1200 ms timer | " + " | ".join(fig(rows, timer) for _, rows in sets) + " |")
    for _, _, rule in found[:5]:
        print(f"| {rule} | " + " | ".join(fig(rows, rule) for _, rows in sets) + " |")
    print(f"\n{len(found)} rules cut fewer pauses than the timer at a lower p50 on {fit_path}"
          " (cells: p50 / cut pauses).")


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("auc", "replay"):
        sys.exit(__doc__)
    if sys.argv[1] == "auc":
        for path in sys.argv[2:]:
            auc_report(path)
    else:
        replay_report(sys.argv[2], sys.argv[3:])


if __name__ == "__main__":
    main()
