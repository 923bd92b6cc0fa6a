"""Execute the book's chapters with papermill and build the static HTML.

    python scripts/build_book.py                                 # every chapter on digits + jb build -W
    python scripts/build_book.py --params params/cifar10.yaml    # the paper's setting
    python scripts/build_book.py --chapter 02_distances -p eot 5 # rerun one chapter, then the HTML
    python scripts/build_book.py --no-html                       # execute only
    python scripts/build_book.py --colab-cells                   # write the Colab cell into book/

The chapters are the notebooks listed in ``_toc.yml`` (``book/NN_name.ipynb``,
output-free, paired with their py:percent text). Each runs from the project root
with ``params_file`` and the ``-p`` overrides injected by papermill, and its executed
copy, widget state included, is written to ``_build/notebooks/``, never over the source
(:mod:`book.execute`, :mod:`book.postprocess`); the HTML is built from ``_build/src/``
(:mod:`book.assemble`) and every page is opened in a headless browser
(:mod:`book.pages`). The build writes under ``_build/`` only; the Colab cell of the
chapters is written on request (``--colab-cells``, :mod:`book.colab`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the build's modules: scripts/book/
from book import EXECUTED, ROOT  # noqa: E402
from book.assemble import assemble, build_html  # noqa: E402
from book.colab import colab_requirements, sync_colab_cells  # noqa: E402
from book.execute import check_parameters, execute  # noqa: E402
from book.pages import check_pages  # noqa: E402
from book.records import record_execution  # noqa: E402
from book.toc import chapters, find_chapter  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params/digits.yaml",
                        help="parameter file (default: params/digits.yaml)")
    parser.add_argument("--chapter", action="append", default=[],
                        help="execute only this chapter (repeatable; default: all of _toc.yml)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("KEY", "VALUE"), help="override one parameter, as papermill -p")
    parser.add_argument("--no-html", action="store_true", help="execute only")
    parser.add_argument("--html-only", action="store_true",
                        help="build the HTML from the notebooks already executed")
    parser.add_argument("--colab-requirements", action="store_true",
                        help="write requirements-colab.txt from the installed versions and stop")
    parser.add_argument("--colab-cells", action="store_true",
                        help="write the Colab cell of _config.yml into every chapter and stop")
    parser.add_argument("--check", action="store_true",
                        help="check the parameters and chapters, say what would run, and stop")
    args = parser.parse_args(argv)
    from papermill.exceptions import PapermillExecutionError
    from diffrob.params import parse_override
    overrides = {k: parse_override(k, v) for k, v in args.parameter}
    try:
        todo = [find_chapter(c) for c in args.chapter] if args.chapter else chapters()
    except ValueError as err:
        parser.error(str(err))
    if args.colab_cells:
        changed = sync_colab_cells()
        print(f"== wrote the Colab cell of {changed} from _config.yml" if changed
              else "== every chapter has the Colab cell of _config.yml")
        return 0
    if not args.html_only:
        check_parameters(args.params, overrides)
    if args.colab_requirements:
        (ROOT / "requirements-colab.txt").write_text(colab_requirements())
        return 0
    if args.check:
        print(f"would execute {[c.stem for c in todo] if not args.html_only else []} on "
              f"{args.params} {overrides or ''}, then "
              f"{'no HTML' if args.no_html else 'the HTML'}")
        return 0
    begin, seconds = time.perf_counter(), {}
    if not args.html_only:
        missing = [c.stem for c in todo if not c.with_suffix(".ipynb").is_file()]
        if missing:
            raise SystemExit(f"chapters listed in _toc.yml without a notebook: {missing}")
        for chapter in todo:
            out = EXECUTED / f"{chapter.stem}.ipynb"
            start = time.perf_counter()
            print(f"== {chapter.stem} ({args.params}{', ' if overrides else ''}"
                  f"{', '.join(f'{k}={v!r}' for k, v in overrides.items())})", flush=True)
            try:
                execute(chapter, out, args.params, overrides)
            except PapermillExecutionError as err:
                print(f"{err}\n== {chapter.stem} failed: the executed copy, with the error, "
                      f"is {out.relative_to(ROOT)}", file=sys.stderr)
                return 1
            seconds[chapter.stem] = time.perf_counter() - start
            record_execution(chapter.stem, args.params, overrides, seconds[chapter.stem])
            print(f"== {chapter.stem}: {seconds[chapter.stem]:.0f} s", flush=True)
    if not args.no_html:
        start = time.perf_counter()
        try:
            src = assemble()
        except FileNotFoundError as err:
            if not args.chapter:
                raise SystemExit(f"no HTML: {err}") from None
            print(f"== no HTML: {err}")
            return 0
        html = build_html(src)
        seconds["jb build"] = time.perf_counter() - start
        print(f"== HTML in {html.relative_to(ROOT)}")
        if check_pages(html) is False:
            return 1
    for name, took in seconds.items():
        print(f"   {name:<20} {took:7.0f} s")
    print(f"   {'total':<20} {time.perf_counter() - begin:7.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
