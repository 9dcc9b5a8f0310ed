"""Real public data sets that ship inside PyPI packages, for ``crm evaluate``.

Nothing is downloaded from anywhere but PyPI: ``pip download --no-deps`` fetches
the wheel, and the data file is read out of it (the package is never installed
or imported).

* CDNOW (Fader & Hardie): 69,659 CD purchases by 23,570 customers, Jan 1997 - Jun
  1998, in ``lifetimes`` 0.11.3 (MIT) as ``lifetimes/datasets/CDNOW_master.txt``.
* MovieLens 100K (GroupLens, University of Minnesota): 100,000 ratings by 943
  users of 1,682 films, in ``recbole`` 1.2.1 (MIT) as
  ``recbole/dataset_example/ml-100k/ml-100k.inter``. The MovieLens licence allows
  research use with acknowledgement and no redistribution for profit.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Source:
    package: str
    member: str
    output: str


CDNOW = Source("lifetimes==0.11.3", "lifetimes/datasets/CDNOW_master.txt", "cdnow.csv")
MOVIELENS = Source(
    "recbole==1.2.1", "recbole/dataset_example/ml-100k/ml-100k.inter", "movielens100k.csv"
)


def _wheel(source: Source, wheels: Path) -> Path:
    name = source.package.split("==")[0].lower()
    found = [w for w in wheels.glob("*.whl") if w.name.lower().startswith(name)]
    if not found:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--dest",
                str(wheels),
                source.package,
            ],
            check=True,
            capture_output=True,
        )
        found = [w for w in wheels.glob("*.whl") if w.name.lower().startswith(name)]
    return found[0]


def _cdnow(lines: list[str], out: Path) -> int:
    rows = 0
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["customer_id", "timestamp", "amount", "quantity"])
        for line in lines:
            parts = line.split()
            if len(parts) != 4 or not parts[1].isdigit():
                continue  # header
            day = datetime.strptime(parts[1], "%Y%m%d").replace(tzinfo=UTC).date().isoformat()
            w.writerow([parts[0], day, parts[3], parts[2]])
            rows += 1
    return rows


def _movielens(lines: list[str], out: Path) -> int:
    rows = 0
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["user_id", "item_id", "timestamp", "rating"])
        for line in lines[1:]:
            user, item, rating, ts = line.split("\t")
            when = datetime.fromtimestamp(int(float(ts)), UTC).isoformat()
            w.writerow([user, item, when, rating])
            rows += 1
    return rows


def fetch(root: Path) -> dict[str, Path]:
    """Both data sets as CSV in the columns ``crm evaluate`` reads; cached under ``root``."""
    wheels = root / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for source, convert in ((CDNOW, _cdnow), (MOVIELENS, _movielens)):
        target = root / source.output
        if not target.exists():
            with zipfile.ZipFile(_wheel(source, wheels)) as zf:
                lines = zf.read(source.member).decode().splitlines()
            tmp = target.with_suffix(".tmp")
            convert(lines, tmp)
            tmp.replace(target)
        out[source.output.removesuffix(".csv")] = target
    return out
