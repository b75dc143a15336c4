"""The ``anomaly-bench-compare`` command: run folders in, one table or report out.

Exit codes: 0 when a table was written (problem folders are listed, never fatal), 1 when no
run folder was found or none matched the filters, 2 for a bad option value or an --out that exists
or lies in a run or sweep folder (one line; see anomaly_bench.claim).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

from anomaly_bench.claim import claim_file
from anomaly_bench.compare.discover import discover
from anomaly_bench.compare.formats import Comparison, Problem, to_csv, to_json, to_markdown
from anomaly_bench.compare.load import load_run
from anomaly_bench.compare.table import (
    ANOMALY_KEY,
    CLASS_KEY,
    MAIN_METRICS,
    MIXED_COLUMN,
    Lookup,
    add_mixed_column,
    apply_filters,
    check_metrics,
    group_table,
    mixed_settings,
    one_class_classes,
    parse_filters,
    per_class_table,
    run_table,
    sort_table,
)
from anomaly_bench.errors import ConfigError, one_line

PROG = "anomaly-bench-compare"
FORMATS = ("md", "csv", "json", "html")
EXIT_NOTHING_FOUND = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
DEFAULT_GROUP = "model.name"


class NothingFound(Exception):
    """No run folder to compare: exit code 1."""


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage + error on two lines; a bad value here gets one line, exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below the minimum {minimum}")
        return value

    return parse


def _metric_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of metric names")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        description="Compare anomaly-bench run folders: one row per run with the config keys that differ, "
        "the main metrics, status and duration; optional grouping and an HTML report. "
        "Folders are only read, never written.",
    )
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="run folders, sweep/output folders (searched recursively) or globs"
    )
    parser.add_argument(
        "--sort", metavar="KEY", help="sort by a column: metrics and counts best-first, config keys ascending"
    )
    parser.add_argument("--reverse", action="store_true", help="reverse the --sort order")
    parser.add_argument(
        "--group-by",
        nargs="+",
        default=[],
        metavar="KEY",
        help="config keys (e.g. model.name): mean ± std and count n over the runs of each group",
    )
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep runs whose KEY equals VALUE (repeatable; the same KEY twice means either value)",
    )
    parser.add_argument(
        "--metrics",
        type=_metric_list,
        default=list(MAIN_METRICS),
        metavar="A,B",
        help=f"metrics.json keys to show (default {','.join(MAIN_METRICS)}; dotted keys such as timings.fit work)",
    )
    parser.add_argument(
        "--per-class",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one-class protocol table: rows = groups, columns = normal class 0-9 and mean, "
        "first numeric metric (in %% for metrics in [0, 1]). Default: on when --group-by "
        "is given and does not include "
        f"{CLASS_KEY}, and every completed run has one normal class in 0-9 with all other "
        "classes anomalous, the class varying between runs",
    )
    parser.add_argument("--format", choices=FORMATS, default="md", help="output format (default md)")
    parser.add_argument("--out", type=Path, metavar="FILE", help="write here instead of standard output")
    parser.add_argument(
        "--max-curves",
        type=_count(1),
        default=20,
        metavar="N",
        help="html: at most N ROC curves and AUROC dots; more runs are averaged per group or cut to the best N (default 20)",
    )
    parser.add_argument(
        "--max-thumbnails",
        type=_count(0),
        default=200,
        metavar="N",
        help="html: histogram thumbnails of the first N runs in table order, 0 = all (default 200)",
    )
    parser.add_argument(
        "--to-mlflow",
        nargs="?",
        const="",
        metavar="URI",
        help="instead of a table, log the completed run folders into MLflow (URI, else $MLFLOW_TRACKING_URI, "
        "else sqlite:///outputs/mlflow.db); a folder already logged is not logged again. Put it after the "
        "paths or write --to-mlflow=URI",
    )
    return parser


def to_mlflow(args: argparse.Namespace) -> int:
    """``--to-mlflow``: past results into MLflow; exit 1 when the store cannot be reached or no run was found."""
    from mlflow.exceptions import MlflowException

    from anomaly_bench.tracking.export import export
    from anomaly_bench.tracking.mlflow_tracker import tracking_uri

    uri = tracking_uri(args.to_mlflow or None, "outputs")
    try:
        done = export(args.paths, uri)
    except (OSError, MlflowException) as exc:  # unreachable server, unwritable store
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_NOTHING_FOUND
    for record in done.not_completed:
        _warn(f"{record.status}: {record.path}: {record.problem}")
    print(f"{PROG}: {done.describe(uri)}", file=sys.stderr)
    return 0 if done.logged or done.already else EXIT_NOTHING_FOUND


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _warn_problems(problems: list[Problem], listed_in_output: bool) -> None:
    """One line per folder, or one summary line when the output itself lists them (md, json, html)."""
    if not problems:
        return
    if not listed_in_output:
        for problem in problems:
            _warn(f"{problem.status}: {problem.path}: {problem.reason}")
        return
    counts = Counter(p.status for p in problems)
    kinds = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    _warn(f"{len(problems)} folders are not completed results ({kinds}); the output lists them under 'Not counted'")


def _per_class(args: argparse.Namespace, records) -> bool:
    if args.per_class is False:
        return False
    protocol = one_class_classes(records) is not None
    if args.per_class:
        if CLASS_KEY in args.group_by:
            raise ConfigError(f"--per-class puts {CLASS_KEY} in the columns; drop it from --group-by")
        if not protocol:
            raise ConfigError(
                f"--per-class needs completed one-class-protocol runs ({CLASS_KEY} one class "
                "in 0-9, every other class anomalous) with at least two different classes"
            )
        return True
    return bool(args.group_by) and CLASS_KEY not in args.group_by and protocol


def _title(n_runs: int, n_done: int, args: argparse.Namespace, per_class: bool, metric: str) -> str:
    title = f"{n_runs} run folders ({n_done} completed)"
    if args.filter:
        title += f", filter {' '.join(args.filter)}"
    if per_class:
        title += f"; {metric} per normal class, by {', '.join(args.group_by)}"
    elif args.group_by:
        title += f"; mean ± std over the completed runs of each group, by {', '.join(args.group_by)}"
    return title


def compare(args: argparse.Namespace) -> str:
    """Everything between argv and the rendered output; raises ConfigError or NothingFound."""
    filters = parse_filters(args.filter)
    found = discover(args.paths)
    foreign = [Problem(path, "foreign", reason) for path, reason in found.foreign]
    if not found.runs:
        for problem in foreign:
            _warn(f"{problem.path}: {problem.reason}")
        raise NothingFound(
            f"no run folder (a folder with metrics.json or .hydra/config.yaml) found under {' '.join(args.paths)}"
        )
    records = [load_run(path) for path in found.runs]
    lookup = Lookup.of(records)
    check_metrics(args.metrics, lookup)
    for key in args.group_by:
        lookup.require(key, "--group-by")
    records = apply_filters(records, filters, lookup)
    if not records:
        raise NothingFound(f"no run matches {' '.join('--filter ' + f for f in args.filter)}")
    per_class = _per_class(args, records)
    if per_class and not args.group_by:
        args.group_by = [DEFAULT_GROUP]
    extra = [*args.group_by, *([args.sort] if args.sort and lookup.knows(args.sort) else [])]
    if args.format == "html":
        extra.append("auroc")
    runs = run_table(records, args.metrics, lookup, extra)
    if per_class:
        metric = next((m for m in args.metrics if runs[m].dtype.kind == "f"), args.metrics[0])
        table = per_class_table(runs, records, args.group_by, metric)
    elif args.group_by:
        metric = args.metrics[0]
        table = group_table(runs, args.group_by, args.metrics)
    else:
        metric, table = args.metrics[0], runs
    if args.group_by:
        mixed = mixed_settings(runs, records, args.group_by, (CLASS_KEY, ANOMALY_KEY) if per_class else ())
        table = add_mixed_column(table, args.group_by, mixed)
        if mixed:
            keys = sorted({k for differing in mixed.values() for k in differing})
            groups = f"{len(mixed)} group{'s' if len(mixed) > 1 else ''}"
            _warn(
                f"--group-by {' '.join(args.group_by)}: {groups} average runs that also differ in "
                f"{', '.join(keys)} (column '{MIXED_COLUMN}'); add them to --group-by to separate those runs"
            )
    if args.sort and table is runs:
        table = runs = sort_table(runs, args.sort, args.metrics, args.reverse)
    elif args.sort:
        table = sort_table(table, args.sort, args.metrics, args.reverse)
        if args.sort in runs.columns:
            runs = sort_table(runs, args.sort, args.metrics, args.reverse)
    problems = [Problem(r.path, r.status, r.problem) for r in records if r.problem] + foreign
    _warn_problems(problems, listed_in_output=args.format != "csv")
    done = sum(r.ok for r in records)
    result = Comparison(table, runs, _title(len(records), done, args, per_class, metric), problems, per_class, metric)
    if args.format == "html":
        from anomaly_bench.compare.report_html import ReportOptions, render

        link_base = args.out.resolve().parent if args.out else None
        return render(result, records, ReportOptions(args.group_by, args.max_curves, args.max_thumbnails, link_base))
    return {"md": to_markdown, "csv": to_csv, "json": to_json}[args.format](result)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    claim = None
    try:
        if args.to_mlflow is not None:  # writes no file: nothing to claim
            return to_mlflow(args)
        # Claimed before any work: two commands never write one file, and a result is never written into.
        claim = claim_file("--out", args.out) if args.out is not None else None
        text = compare(args)
    except ConfigError as exc:
        if claim is not None:
            claim.release()
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None
    except NothingFound as exc:
        if claim is not None:
            claim.release()
        print(f"{PROG}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_NOTHING_FOUND) from None
    except KeyboardInterrupt:
        if claim is not None:
            claim.release()
        print(f"{PROG}: interrupted; nothing written", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except BaseException:
        if claim is not None:
            claim.release()
        raise
    # Folder names that are not UTF-8 come back as their original bytes, whatever the locale.
    data = text.encode("utf-8", "surrogateescape")
    if args.out is None:
        try:
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        except BrokenPipeError:  # `... | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    try:
        args.out.write_bytes(data)
    except OSError as exc:
        if claim is not None:
            claim.release()
        print(f"{PROG}: error: cannot write --out {args.out}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None
    print(f"{PROG}: wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
