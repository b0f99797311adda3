"""External handwritten ground truth the recogniser is trained and tested on: where each corpus comes from
(repository and exact commit), its licence, and its role in the leave-archive-out design.

`train` corpora join the training mix (a few whole units held out to validate); `test` corpora are whole
archives that no training stage and no choice (checkpoint, LM weight, augmentation) ever sees: their
figures are the ones a user with a new archive can expect. Nothing here is committed into the project:
`make data` (`python -m pipeline.htr.sources DEST`) clones each repository at its commit into DEST.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.errors import UsageError

DEFAULT_DIR = Path("data-external")


@dataclass(frozen=True)
class ExternalCorpus:
    name: str  # the corpus name in caches, weights and reports
    repo: str  # GitHub owner/name
    commit: str
    subdir: str  # the folder of the clone that holds its images and XML
    licence: str
    role: Literal["train", "test"]
    description: str
    holdout_val: int = 0  # units (writers, pages) of a train corpus kept to validate on


TIMEUS = ("HTR-United/timeuscorpus", "df8ee63837dabe79c511e8aa748f465da5e2d5e5")
CORPORA = (
    ExternalCorpus("copiste-d-un-jour", "banq-dcn/Copiste-d-un-jour", "a3636d2e151b4312973cfb88438a0c4ccd1eb523",
                   ".", "CC-BY 4.0", "train",
                   "BAnQ, 2024: Wikipedia summaries copied by hand by 267 volunteers, 333 pages, ALTO", 30),
    ExternalCorpus("cremma-mss-18", "HTR-United/CREMMA-MSS-18", "e4a89141807513b61c1f750d83da820314c777d8",
                   "data", "CC-BY 4.0", "train",
                   "CREMMA: French manuscripts of the 18th century, many hands and collections, ALTO", 8),
    ExternalCorpus("timeus-1858", *TIMEUS, "data/cph_paris_tissage_1858", "CC-BY 4.0", "train",
                   "TIME US: register of the Paris Prud'hommes court for textiles, January-June 1858, 159 pages", 10),
    # the same court's register twenty years on, by other clerks: a whole collection no training step sees
    ExternalCorpus("timeus-1878", *TIMEUS, "data/cph_paris_tissage_1878", "CC-BY 4.0", "test",
                   "TIME US: register of the Paris Prud'hommes court for textiles, January 1878, 89 pages"),
    # a whole archive held out: no training step and no choice sees it
    ExternalCorpus("cremma-mss-20", "HTR-United/CREMMA-MSS-20", "f737d0cb53d28edf1573c5956460bfdd58be6267",
                   "data", "CC-BY 4.0", "test",
                   "CREMMA: French manuscripts of the 20th century (a 1900s letter, 1981 speech drafts), ALTO"),
    # one 18th-century hand over 82 folios, no training step and no choice sees it: a series for `census adapt`
    ExternalCorpus("fondue-aschaffenburg-48", "FoNDUE-HTR/FONDUE-FR-MSS-18", "e07c45a6ca0a5ba6a479d216f6d3eaf17a458d76",
                   "data/Hofbibliothek_Aschaffenburg_48", "CC-BY 4.0 (transcriptions; the images are the library's)",
                   "test", "FoNDUE: Hofbibliothek Aschaffenburg Ms. 48, 18th-century French, one hand, 82 folios, ALTO"),
)


def clone_dir(external_dir: Path, corpus: ExternalCorpus) -> Path:
    return external_dir / corpus.repo.split("/")[1]


def present(external_dir: Path, role: str) -> dict[str, Path]:
    """The corpora of `role` that `make data` has put in `external_dir`: {name: folder of images and XML}."""
    folders = {corpus.name: clone_dir(external_dir, corpus) / corpus.subdir for corpus in CORPORA if corpus.role == role}
    return {name: folder for name, folder in folders.items() if folder.is_dir()}


def fetch(dest: Path, remote: str = "https://github.com/{repo}.git") -> None:
    """Clone every corpus's repository at its commit into `dest/<repository name>` (an existing clone is
    checked out at that commit), only the corpora's folders of it checked out. `remote` may name `{repo}`
    (owner/name), `{owner}` and `{name}`. A repository that fails does not stop the others; all failures
    are reported at the end."""
    dest.mkdir(parents=True, exist_ok=True)
    failed = []
    for corpus in CORPORA:
        clone = clone_dir(dest, corpus)
        owner, name = corpus.repo.split("/")
        try:
            if not clone.exists():
                print(f"cloning {corpus.repo} into {clone}", file=sys.stderr)
                _git("clone", "--quiet", "--no-checkout", remote.format(repo=corpus.repo, owner=owner, name=name),
                     str(clone))
            _sparse_checkout(clone, corpus.repo)
            _git("-C", str(clone), "checkout", "--quiet", corpus.commit)  # a no-op when already there
        except UsageError as error:
            failed.append(f"{corpus.name}: {error}")
            continue
        print(f"{corpus.name}: {corpus.repo}@{corpus.commit[:12]} ({corpus.licence}, {corpus.role})", file=sys.stderr)
    if failed:
        raise UsageError("; ".join(failed))


def _sparse_checkout(clone: Path, repo: str) -> None:
    """Only the folders the corpora of `repo` use (a collection of a large repository, not all of it)."""
    folders = sorted({corpus.subdir for corpus in CORPORA if corpus.repo == repo})
    if "." in folders:
        _git("-C", str(clone), "sparse-checkout", "disable")
    else:
        _git("-C", str(clone), "sparse-checkout", "set", *folders)


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise UsageError(f"git {' '.join(args)}: {result.stderr.strip() or 'failed'}")
    return result.stdout


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Clone every external corpus at its pinned commit (`make data`).")
    parser.add_argument("dest", nargs="?", type=Path, default=DEFAULT_DIR, help=f"default {DEFAULT_DIR}")
    parser.add_argument("remote", nargs="?", default="https://github.com/{repo}.git",
                        help="where to clone from; may name {repo} (owner/name), {owner} and {name}")
    args = parser.parse_args()
    try:
        fetch(args.dest, args.remote)
    except UsageError as error:
        sys.exit(f"make data: {error}")


if __name__ == "__main__":
    main()
